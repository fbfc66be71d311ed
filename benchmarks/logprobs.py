"""Log-probs beside the draw on the CPU: ``minp_kernels.sample_with_logprobs`` against sampling then
``log_softmax`` + ``topk`` + ``gather`` (vLLM's way), same rows, same run.

    python -m benchmarks.logprobs [--batches 1 8 64] [--top 20] [--out DIR]

Rows: the benchmark's Gaussian family (std 3), float32, V = 128256, min-p 0.1, temperature 1, one
torch thread, N = 20 top log-probs.  Raw mode against the raw ``log_softmax`` path, processed mode
against the processed one (``log_softmax`` of the warped logits).  Wall time per call, median of
``--repeats`` batches (``benchmarks.timing.wall_time``).  Results: ``<out>/logprobs-cpu-<date>[tag].{json,md}``.
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

P_BASE, TEMP = 0.1, 1.0


def ours(logits, seed, top_n, mode):
    return minp_kernels.sample_with_logprobs(logits, P_BASE, TEMP, seed=seed, top_logprobs=top_n, logprobs_mode=mode,
                                             temperature_first=True)


def main(argv=None):
    parser = cpu_bench_parser("python -m benchmarks.logprobs", __doc__)
    parser.add_argument("--top", type=int, default=20, help="top log-probs N")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    env = environment(torch.device("cpu"))
    rows = []
    for batch in args.batches:
        logits = make_logits("gaussian", batch, args.vocab)
        seed = torch.arange(batch)
        for mode in ("raw", "processed"):
            mine = wall_time([functools.partial(ours, logits, seed, args.top, mode)], repeats=args.repeats).us
            theirs = wall_time([functools.partial(baselines.logprobs_after_sampling, logits, P_BASE, TEMP,
                                                  top_n=args.top, processed=mode == "processed")],
                               repeats=args.repeats).us
            rows.append(dict(batch=batch, mode=mode, minp_kernels_us=mine, log_softmax_topk_gather_us=theirs))
            print(f"B={batch} {mode}: {mine / 1e3:.2f} ms vs {theirs / 1e3:.2f} ms", flush=True)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"logprobs-cpu-{env['date']}{file_suffix(args.tag)}")
    write_json(stem + ".json", dict(environment=env, vocab=args.vocab, top=args.top, rows=rows))
    body = []
    for r in rows:
        theirs = r["log_softmax_topk_gather_us"]
        body.append([str(r["batch"]), r["mode"], f"{r['minp_kernels_us'] / 1e3:.2f}",
                     f"{theirs / 1e3:.2f} ({theirs / r['minp_kernels_us']:.1f}x)"])
    text = "\n".join([f"# Log-probs on the CPU, {env['date']}", "", *header_lines(env), "",
                      f"Wall ms per call, V = {args.vocab}, fp32 Gaussian rows (std 3), min-p {P_BASE}, temperature "
                      f"{TEMP}, N = {args.top}, one torch thread, same run; in brackets the time over "
                      "minp_kernels'.", "",
                      table(["B", "mode", "minp_kernels.sample_with_logprobs",
                             "HF-style sampling + log_softmax + topk + gather"], body), ""])
    write_text(stem + ".md", text)
    print(text)
    print(f"wrote {stem}.json, .md")


if __name__ == "__main__":
    main()
