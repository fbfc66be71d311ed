"""Side-by-side sampler benchmark: ``python -m benchmarks.run [--quick] [--device cuda] [--out DIR]``.

Every provider samples the same logits; times are CUDA-event medians from ``triton.testing.do_bench``
with warm-up outside the numbers, rotating input buffers so that L2 does not serve repeated runs,
and CUDA-graph replays for the launch-bound B = 1 and B = 8.  Bandwidth counts one read of the
logits (``B * V * itemsize``) and is also given as a fraction of a device-to-device copy measured in
the same run.  Results: ``<out>/<device>-<date>.json``, a markdown table and PNG plots.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess

import torch

import minp_kernels
from minp_kernels.params import RowParams
from minp_kernels.torch_sampler import sample_torch

VOCABS = [128256, 32000, 151936, 262144]  # the headline vocabulary first: a cut-short run keeps it
BATCHES = [1, 8, 32, 128, 512]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
P_BASE, TEMP = 0.1, 1.0
GRAPH_BATCHES = (1, 8)
ROTATE_BYTES = 256 * 2**20  # > 2x the largest L2 seen here (H200: 60 MB)


# ------------------------------------------------------------------------------------------------
# Providers: each maps (logits, seeds, temperature_first) -> int64 tokens [B]
# ------------------------------------------------------------------------------------------------
def vllm_style(logits, seeds, temperature_first=True, p_base=P_BASE, temp=TEMP):
    """vLLM v1's torch path: fp32, / temp, softmax, amax, mask probs < p * amax, exponential race."""
    probs = torch.softmax(logits.float() / temp, dim=-1)
    probs = probs.masked_fill(probs < p_base * probs.amax(dim=-1, keepdim=True), 0.0)
    return probs.div_(torch.empty_like(probs).exponential_()).argmax(dim=-1)


def gumbel_max(logits, seeds, temperature_first=True, temp=TEMP):
    """Plain Gumbel-max without min-p: the speed of light of fused sampling under torch.compile."""
    x = logits.float() / temp
    return (x - torch.log(-torch.log(torch.rand_like(x)))).argmax(dim=-1)


def reference(logits, seeds, temperature_first=False):
    params = RowParams(P_BASE, TEMP, seeds, 0, False)
    return sample_torch(logits, params, temperature_first)[0]


def fused(logits, seeds, temperature_first=False):
    return minp_kernels.sample(logits, P_BASE, TEMP, seed=seeds, temperature_first=temperature_first)


def flashinfer_provider():
    """softmax(logits, temperature) then min_p_sampling_from_probs, when flashinfer imports."""
    try:
        import flashinfer
    except Exception:
        return None

    def run(logits, seeds, temperature_first=True):
        probs = flashinfer.sampling.softmax(logits.float(), temperature=TEMP)
        return flashinfer.sampling.min_p_sampling_from_probs(probs, P_BASE)

    return run


def providers(device, orders, only=None):
    """Name -> (callable, temperature_first) for every provider available on ``device``
    (restricted to the names in ``only`` when given)."""
    table = {}
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        for tf in orders:
            table[f"minp_kernels{'[tf]' if tf else ''}"] = (fused, tf)
    table["torch_ref"] = (reference, False)
    table["torch_ref_compiled"] = (torch.compile(reference, dynamic=True), False)
    table["vllm_style"] = (vllm_style, True)
    table["gumbel_max_compiled"] = (torch.compile(gumbel_max, dynamic=True), True)
    fi = flashinfer_provider() if device.type == "cuda" else None
    if fi is not None:
        table["flashinfer"] = (fi, True)
    return {k: v for k, v in table.items() if only is None or k.split("[")[0] in only}


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------
def lm_logits(batch, vocab, dtype, device, copies):
    gen = torch.Generator(device).manual_seed(batch * 7 + vocab)
    return [(torch.randn(batch, vocab, device=device, generator=gen) * 3).to(dtype) for _ in range(copies)]


def bench_us(fn, rep=100):
    """(median, p20, p80) microseconds from triton's do_bench (CUDA events; warm-up excluded).

    Triton 3.6 returns a bare float for a single quantile and a list otherwise; ask for three.
    """
    from triton.testing import do_bench

    return tuple(v * 1e3 for v in do_bench(fn, warmup=25, rep=rep, quantiles=[0.5, 0.2, 0.8]))


def time_provider(fn, buffers, seeds, tf, device, graph=False):
    """(median, p20, p80) microseconds per call, cycling through ``buffers``."""
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + 1) % len(buffers)
        return fn(buffers[state["i"]], seeds, tf)

    if device.type != "cuda":
        import time

        call()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1e6)
        times.sort()
        return times[2], times[1], times[3]
    if graph:
        for _ in range(3):
            call()  # compile and warm up outside the capture
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for buf in buffers:
                fn(buf, seeds, tf)
        return tuple(v / len(buffers) for v in bench_us(g.replay))
    return bench_us(call)


def copy_bandwidth(device):
    """Device-to-device copy GB/s counting bytes read plus written (the ceiling we compare to)."""
    if device.type != "cuda":
        return None
    src = torch.empty(2**30, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    us = bench_us(lambda: dst.copy_(src), rep=200)[0]
    return 2 * src.numel() / (us * 1e-6) / 1e9


def environment(device):
    info = dict(date=datetime.date.today().isoformat(), torch=torch.__version__, python=platform.python_version())
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device=props.name, sm_count=props.multi_processor_count, cuda=torch.version.cuda)
    else:
        info.update(device=platform.processor() or "cpu", sm_count=None, cuda=None)
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        cwd=os.path.dirname(__file__)).stdout.strip() or None
    except OSError:
        info["commit"] = None
    return info


def run_grid(device, vocabs, batches, dtypes, orders, progress=True, checkpoint=None, only=None):
    table = providers(device, orders, only)
    points = [(v, b, d) for v in vocabs for b in batches for d in dtypes]
    try:
        from tqdm import tqdm

        bar = tqdm(points, desc="grid", disable=not progress)
    except ImportError:
        bar = points
    results = []
    for vocab, batch, dname in bar:
        dtype = DTYPES[dname]
        nbytes = batch * vocab * dtype.itemsize
        copies = max(2, min(16, ROTATE_BYTES // max(nbytes, 1))) if device.type == "cuda" else 1
        buffers = lm_logits(batch, vocab, dtype, device, copies)
        seeds = torch.arange(batch, device=device)
        for name, (fn, tf) in table.items():
            if device.type != "cuda" and nbytes > 64 * 2**20:
                continue  # CPU: keep the run short
            row = dict(provider=name, vocab=vocab, batch=batch, dtype=dname, temperature_first=tf, bytes=nbytes)
            try:
                med, p20, p80 = time_provider(fn, buffers, seeds, tf, device)
                row.update(median_us=med, p20_us=p20, p80_us=p80, gbps=nbytes / (med * 1e-6) / 1e9)
                if device.type == "cuda" and batch in GRAPH_BATCHES:
                    row["graph_median_us"] = time_provider(fn, buffers, seeds, tf, device, graph=True)[0]
            except Exception as e:  # a provider that fails at a shape is reported, not fatal
                row["error"] = f"{type(e).__name__}: {e}"[:200]
            results.append(row)
        del buffers
        if checkpoint is not None:
            checkpoint(results)  # a run cut short by a time limit keeps what it measured
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def summarize(results, copy_gbps):
    """Add bandwidth fraction and speed-up of minp_kernels over every other provider at each point."""
    ours = {(r["vocab"], r["batch"], r["dtype"]): r for r in results if r["provider"] == "minp_kernels" and "median_us" in r}
    for r in results:
        if "median_us" not in r:
            continue
        if copy_gbps:
            r["copy_fraction"] = r["gbps"] / copy_gbps
        mine = ours.get((r["vocab"], r["batch"], r["dtype"]))
        if mine is not None:
            r["minp_speedup"] = r["median_us"] / mine["median_us"]
    return results


def markdown(results, env, copy_gbps):
    names = sorted({r["provider"] for r in results}, key=lambda n: (not n.startswith("minp"), n))
    lines = [f"Device: {env['device']} ({env.get('sm_count')} SMs), torch {env['torch']}, triton {env['triton']}, "
             f"CUDA {env.get('cuda')}, {env['date']}, commit {env.get('commit')}.",
             f"Copy bandwidth (read + write): {copy_gbps:.0f} GB/s." if copy_gbps else "No GPU: CPU timings.",
             "p_base 0.1, temp 1.0; cells: median us (minp_kernels: GB/s and fraction of copy bandwidth; others: "
             "speed-up of minp_kernels over them). Graph: CUDA-graph replay us.", "",
             "| V | B | dtype | " + " | ".join(names) + " |", "|" + "---|" * (3 + len(names))]
    keyed = {(r["vocab"], r["batch"], r["dtype"], r["provider"]): r for r in results}
    for vocab, batch, dname in sorted({(r["vocab"], r["batch"], r["dtype"]) for r in results}):
        cells = []
        for n in names:
            r = keyed.get((vocab, batch, dname, n))
            if r is None or "median_us" not in r:
                cells.append("-" if r is None else "err")
                continue
            cell = f"{r['median_us']:.1f}"
            if n.startswith("minp") and "copy_fraction" in r:
                cell += f" ({r['gbps']:.0f} GB/s, {100 * r['copy_fraction']:.0f}%)"
            elif "minp_speedup" in r and not n.startswith("minp"):
                cell += f" ({r['minp_speedup']:.1f}x)"
            if "graph_median_us" in r:
                cell += f" [graph {r['graph_median_us']:.1f}]"
            cells.append(cell)
        lines.append(f"| {vocab} | {batch} | {dname} | " + " | ".join(cells) + " |")
    if not any(n == "flashinfer" for n in names):
        lines.append("\nFlashInfer: absent (flashinfer did not import on this machine).")
    return "\n".join(lines) + "\n"


def plots(results, out_prefix):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    vocabs = sorted({r["vocab"] for r in results})
    paths = []
    for metric, ylabel, suffix in (("copy_fraction", "fraction of copy bandwidth (one logits read)", "bandwidth"),
                                   ("minp_speedup", "speed-up of minp_kernels", "speedup")):
        rows = [r for r in results if metric in r and not (metric == "minp_speedup" and r["provider"] == "minp_kernels")]
        if not rows:
            continue
        fig, axes = plt.subplots(1, len(vocabs), figsize=(4.2 * len(vocabs), 3.6), sharey=True, squeeze=False)
        for ax, vocab in zip(axes[0], vocabs):
            for (prov, dname) in sorted({(r["provider"], r["dtype"]) for r in rows}):
                pts = sorted((r["batch"], r[metric]) for r in rows if r["vocab"] == vocab and r["provider"] == prov
                             and r["dtype"] == dname)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=f"{prov} {dname}")
            ax.set_xscale("log", base=2)
            if metric == "minp_speedup":
                ax.set_yscale("log")
                ax.axhline(1.0, color="grey", lw=0.8)
            ax.set_title(f"V = {vocab}")
            ax.set_xlabel("batch")
        axes[0][0].set_ylabel(ylabel)
        axes[0][-1].legend(fontsize=6)
        fig.tight_layout()
        path = f"{out_prefix}-{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subset of the grid")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--providers", nargs="+", help="only these providers (names as in the table)")
    parser.add_argument("--vocabs", type=int, nargs="+", help="override the grid's vocabularies")
    parser.add_argument("--batches", type=int, nargs="+", help="override the grid's batch sizes")
    parser.add_argument("--tag", default="", help="suffix for the output file names")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cuda":
        print("note: the Triton kernel needs CUDA (or TRITON_INTERPRET=1, far too slow to time); "
              "timing the torch providers on the CPU")
    vocabs, batches = (VOCABS[:2], [1, 8, 128]) if args.quick else (VOCABS, BATCHES)
    vocabs, batches = args.vocabs or vocabs, args.batches or batches
    if device.type != "cuda":
        vocabs, batches = vocabs[:2], [b for b in batches if b <= 32]
    env = environment(device)
    copy_gbps = copy_bandwidth(device)
    os.makedirs(args.out, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in env["device"]).strip("-").lower()
    prefix = os.path.join(args.out, f"{slug}-{env['date']}{'-quick' if args.quick else ''}{args.tag}")

    def save(results):
        with open(prefix + ".json", "w") as f:
            json.dump(dict(environment=env, copy_gbps=copy_gbps, p_base=P_BASE, temp=TEMP, results=results), f,
                      indent=1)

    results = run_grid(device, vocabs, batches, list(DTYPES), (False, True), not args.no_progress, save,
                       args.providers)
    results = summarize(results, copy_gbps)
    save(results)
    table = markdown(results, env, copy_gbps)
    with open(prefix + ".md", "w") as f:
        f.write(table)
    pngs = plots(results, prefix)
    print(table)
    print("wrote", prefix + ".json", prefix + ".md", *pngs)


if __name__ == "__main__":
    main()
