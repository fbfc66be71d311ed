"""Sweep the kernel's launch parameters (tile size, warps) on a few shapes: ``python -m benchmarks.tune``.

Prints median microseconds and GB/s (one read of the logits) per configuration; the defaults in
``minp_kernels/launch.py`` come from this table (see benchmarks/NOTES.md).
"""

import argparse
import json

import torch

from benchmarks.run import bench_us
from minp_kernels.params import RowParams
from minp_kernels.launch import sample_triton

CONFIGS = [(1024, 4), (2048, 4), (2048, 8), (4096, 8), (4096, 16), (8192, 16)]
SHAPES = [(128, 128256, torch.float32), (128, 128256, torch.bfloat16), (512, 151936, torch.bfloat16),
          (8, 128256, torch.float32), (1, 128256, torch.bfloat16)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'B':>4} {'V':>7} {'dtype':9} {'block':>5} {'warps':>5} {'us':>9} {'GB/s':>7}")
    for batch, vocab, dtype in SHAPES:
        buffers = [(torch.randn(batch, vocab, device="cuda") * 3).to(dtype)
                   for _ in range(max(2, min(16, 2**28 // (batch * vocab * dtype.itemsize))))]
        params = RowParams(0.1, 1.0, torch.arange(batch, device="cuda"), 0, False)
        for block, warps in CONFIGS:
            state = {"i": 0}

            def call():
                state["i"] = (state["i"] + 1) % len(buffers)
                return sample_triton(buffers[state["i"]], params, block=block, num_warps=warps)

            try:
                us = bench_us(call)[0]
            except Exception as e:  # e.g. out of registers or shared memory for this config
                print(f"{batch:4d} {vocab:7d} {str(dtype)[6:]:9} {block:5d} {warps:5d} failed: {type(e).__name__}: {e}"[:160])
                continue
            gbps = batch * vocab * dtype.itemsize / (us * 1e-6) / 1e9
            rows.append(dict(batch=batch, vocab=vocab, dtype=str(dtype)[6:], block=block, warps=warps, us=us, gbps=gbps))
            print(f"{batch:4d} {vocab:7d} {str(dtype)[6:]:9} {block:5d} {warps:5d} {us:9.1f} {gbps:7.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
