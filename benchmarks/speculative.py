"""Speculative verification on the CPU: ``minp_kernels.speculative.verify`` against the direct torch
implementation with full min-p softmaxes (``benchmarks.baselines.speculative_full_softmax``), same
rows, same run.

    python -m benchmarks.speculative [--batches 1 8 64] [--drafts 4] [--out DIR]

Target rows: the benchmark's Gaussian family (std 3), float32, ``[B, K+1, V]``, min-p 0.1,
temperature 1, one-hot drafts (the target's argmax at even positions, a random token at odd ones),
one torch thread.  Wall time per call, median of ``--repeats`` batches.  Results:
``<out>/speculative-cpu-<date>[tag].{json,md}``.
"""

import functools
import os

import torch

from benchmarks import baselines
from benchmarks.families import make_logits
from benchmarks.report import cpu_bench_parser, environment, file_suffix, header_lines, table, write_json, write_text
from benchmarks.timing import wall_time
from minp_kernels.speculative import verify

P_BASE, TEMP = 0.1, 1.0


def main(argv=None):
    parser = cpu_bench_parser("python -m benchmarks.speculative", __doc__)
    parser.add_argument("--drafts", type=int, default=4, help="draft tokens K per row")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    env = environment(torch.device("cpu"))
    rows = []
    for batch in args.batches:
        logits = make_logits("gaussian", batch * (args.drafts + 1), args.vocab).view(batch, args.drafts + 1, -1)
        drafts = logits[:, :args.drafts].argmax(dim=-1)
        odd = drafts[:, 1::2]
        drafts[:, 1::2] = torch.randint(0, args.vocab, odd.shape, generator=torch.Generator().manual_seed(0))
        seed = torch.arange(batch)
        mine = wall_time([functools.partial(verify, logits, drafts, P_BASE, TEMP, seed=seed)], repeats=args.repeats).us
        theirs = wall_time([functools.partial(baselines.speculative_full_softmax, logits, drafts, P_BASE, TEMP)],
                           repeats=args.repeats).us
        rows.append(dict(batch=batch, drafts=args.drafts, minp_kernels_us=mine, full_softmax_us=theirs))
        print(f"B={batch}: {mine / 1e3:.2f} ms vs {theirs / 1e3:.2f} ms", flush=True)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"speculative-cpu-{env['date']}{file_suffix(args.tag)}")
    write_json(stem + ".json", dict(environment=env, vocab=args.vocab, rows=rows))
    body = [[str(r["batch"]), str(r["drafts"]), f"{r['minp_kernels_us'] / 1e3:.2f}",
             f"{r['full_softmax_us'] / 1e3:.2f} ({r['full_softmax_us'] / r['minp_kernels_us']:.1f}x)"] for r in rows]
    text = "\n".join([f"# Speculative verification on the CPU, {env['date']}", "", *header_lines(env), "",
                      f"Wall ms per call, V = {args.vocab}, fp32 Gaussian rows (std 3), min-p {P_BASE}, temperature "
                      f"{TEMP}, one torch thread, same run; in brackets the time over minp_kernels'.", "",
                      table(["B", "K", "minp_kernels.speculative.verify", "full softmaxes (torch)"], body), ""])
    write_text(stem + ".md", text)
    print(text)
    print(f"wrote {stem}.json, .md")


if __name__ == "__main__":
    main()
