"""Top-k / top-p beside min-p on the CPU: ``minp_kernels.sample`` against Hugging Face's warpers and
vLLM's torch path, same rows, same run.

    python -m benchmarks.filters [--batches 1 8 64] [--vocab 128256] [--out DIR]

Rows: the benchmark's Gaussian family (std 3), float32, temperature 1, one torch thread.  Each
configuration is one of the issue's: min-p 0.05 + top-k 50 + top-p 0.9, top-p 0.95 alone, top-k 50
alone.  ``minp_kernels`` runs the HF order (``temperature_first=True``, top-p before min-p), so its
kept set is HF's.  Wall time per call, median of ``--repeats`` batches of back-to-back calls
(``benchmarks.timing.wall_time``).  Results: ``<out>/filters-cpu-<date>[tag].{json,md,png}``.
"""

import functools
import os

import torch

import minp_kernels
from benchmarks import baselines
from benchmarks.families import make_logits
from benchmarks.report import (
    cpu_bench_parser,
    environment,
    file_suffix,
    header_lines,
    table,
    write_json,
    write_text,
)
from benchmarks.timing import wall_time

CONFIGS = {
    "min-p 0.05 + top-k 50 + top-p 0.9": dict(p_base=0.05, top_k=50, top_p=0.9),
    "top-p 0.95": dict(p_base=0.0, top_k=None, top_p=0.95),
    "top-k 50": dict(p_base=0.0, top_k=50, top_p=None),
}
PROVIDERS = {
    "minp_kernels": lambda x, seed, p_base, top_k, top_p: minp_kernels.sample(
        x, p_base, 1.0, seed=seed, temperature_first=True, top_k=top_k, top_p=top_p),
    "hf_warpers": lambda x, seed, p_base, top_k, top_p: baselines.hf_filters(x, p_base, 1.0, top_k=top_k, top_p=top_p),
    "vllm_style": lambda x, seed, p_base, top_k, top_p: baselines.vllm_style_filters(x, p_base, 1.0, top_k=top_k,
                                                                                     top_p=top_p),
}


def run(batches, vocab, repeats, progress=True):
    rows = []
    points = [(name, batch) for name in CONFIGS for batch in batches]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(points) * len(PROVIDERS), desc="filters", unit="timing")
    for name, batch in points:
        logits = make_logits("gaussian", batch, vocab)
        seed = torch.arange(batch)
        row = dict(config=name, batch=batch, vocab=vocab)
        for provider, call in PROVIDERS.items():
            timing = wall_time([functools.partial(call, logits, seed, **CONFIGS[name])], repeats=repeats)
            row[f"{provider}_us"] = timing.us
            if bar is not None:
                bar.update(1)
        rows.append(row)
    if bar is not None:
        bar.close()
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(CONFIGS)
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(configs), figsize=(4.2 * len(configs), 3.6), sharey=True)
    for ax, name in zip(axes, configs, strict=True):
        for provider in ("hf_warpers", "vllm_style"):
            speedups = [next(r[f"{provider}_us"] / r["minp_kernels_us"] for r in rows
                             if r["config"] == name and r["batch"] == b) for b in batches]
            ax.plot(batches, speedups, marker="o", label=f"vs {provider}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("batch size B")
    axes[0].set_ylabel("minp_kernels speed-up (x)")
    axes[0].legend(fontsize=8)
    fig.suptitle("CPU, one thread, V = 128256, fp32 Gaussian rows (same run)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = cpu_bench_parser("python -m benchmarks.filters", __doc__)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    env = environment(torch.device("cpu"))
    rows = run(args.batches, args.vocab, args.repeats, progress=not args.no_progress)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"filters-cpu-{env['date']}{file_suffix(args.tag)}")
    write_json(stem + ".json", dict(environment=env, rows=rows))
    body = [[r["config"], str(r["batch"]), f"{r['minp_kernels_us'] / 1e3:.2f}",
             f"{r['hf_warpers_us'] / 1e3:.2f} ({r['hf_warpers_us'] / r['minp_kernels_us']:.1f}x)",
             f"{r['vllm_style_us'] / 1e3:.2f} ({r['vllm_style_us'] / r['minp_kernels_us']:.1f}x)"] for r in rows]
    text = "\n".join([f"# Top-k / top-p on the CPU, {env['date']}", "", *header_lines(env), "",
                      f"Wall ms per call, V = {args.vocab}, fp32 Gaussian rows (std 3), temperature 1, one torch "
                      "thread, same run; in brackets the time over minp_kernels'.", "",
                      table(["configuration", "B", "minp_kernels (torch backend)", "Hugging Face warpers",
                             "vLLM-style torch path"], body), ""])
    write_text(stem + ".md", text)
    plot(rows, stem + ".png")
    print(text)
    print(f"wrote {stem}.json, .md, .png")


if __name__ == "__main__":
    main()
