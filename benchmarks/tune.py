"""Sweep the kernel's launch parameters (tile size, warps) on a few shapes: ``python -m benchmarks.tune``.

Prints median microseconds and GB/s (one read of the logits) per configuration, timed with
``triton.testing.do_bench`` (CUDA events, host launch included); the defaults in
``minp_kernels/launch.py`` come from this table (see benchmarks/NOTES.md).  Needs CUDA.
"""

import argparse
import functools
import itertools
import json

import torch

from benchmarks.report import HelpFormatter
from benchmarks.timing import do_bench_us
from minp_kernels.launch import sample_triton
from minp_kernels.params import RowParams

CONFIGS = [(1024, 4), (2048, 4), (2048, 8), (4096, 8), (4096, 16), (8192, 16)]  # (block, num_warps)
SHAPES = [(128, 128256, torch.float32), (128, 128256, torch.bfloat16), (512, 151936, torch.bfloat16),
          (8, 128256, torch.float32), (1, 128256, torch.bfloat16)]
QUICK_CONFIGS = [(2048, 8), (4096, 8), (4096, 16)]
QUICK_SHAPES = [(128, 128256, torch.float32), (512, 151936, torch.bfloat16), (1, 128256, torch.bfloat16)]


def _rotating(calls):
    """One callable that runs the next of ``calls`` each time (inputs rotate so L2 does not serve them)."""
    cycle = itertools.cycle(calls)
    return lambda: next(cycle)()


def sweep(shapes, configs, rep=100):
    """Rows of (batch, vocab, dtype, block, warps, us, gbps); a failing configuration is printed and skipped."""
    rows = []
    print(f"{'B':>4} {'V':>7} {'dtype':9} {'block':>5} {'warps':>5} {'us':>9} {'GB/s':>7}")
    for batch, vocab, dtype in shapes:
        nbytes = batch * vocab * dtype.itemsize
        buffers = [(torch.randn(batch, vocab, device="cuda") * 3).to(dtype)
                   for _ in range(max(2, min(16, 2**28 // nbytes)))]
        params = RowParams(p_base=0.1, temp=1.0, seed=torch.arange(batch, device="cuda"), offset=0, seed_shared=False)
        dname = str(dtype).removeprefix("torch.")
        for block, warps in configs:
            call = _rotating([functools.partial(sample_triton, buf, params, block=block, num_warps=warps)
                              for buf in buffers])
            label = f"{batch:4d} {vocab:7d} {dname:9} {block:5d} {warps:5d}"
            try:
                us = do_bench_us(call, rep=rep)[0]
            except Exception as e:  # e.g. out of registers or shared memory for this config
                print(f"{label} failed: {type(e).__name__}: {e}"[:160])
                continue
            gbps = nbytes / (us * 1e-6) / 1e9
            rows.append(dict(batch=batch, vocab=vocab, dtype=dname, block=block, warps=warps, us=us, gbps=gbps))
            print(f"{label} {us:9.1f} {gbps:7.0f}", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tune", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"{len(QUICK_SHAPES)} shapes x {len(QUICK_CONFIGS)} configurations instead of "
                        f"{len(SHAPES)} x {len(CONFIGS)}")
    parser.add_argument("--rep", type=int, default=100, help="milliseconds of timed calls per configuration")
    parser.add_argument("--json", help="also write the rows to this file (default: print only)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.tune: needs a CUDA device (torch sees none)")
    rows = sweep(QUICK_SHAPES if args.quick else SHAPES, QUICK_CONFIGS if args.quick else CONFIGS, args.rep)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
