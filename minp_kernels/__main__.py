"""``python -m minp_kernels``: sample a batch of LM-like logits on the best device present, check the
draws against the exact reference, and print tokens/s per backend.

Without a GPU the Triton kernel runs under Triton's CPU interpreter (slow: it is a correctness check,
not a speed figure) on a smaller batch.
"""

import argparse
import os
import time

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before minp_kernels imports the kernels

import minp_kernels  # noqa: E402
from minp_kernels.reference import minp_probs  # noqa: E402


def lm_like_logits(batch, vocab, device, seed=0):
    """Gaussian logits with an LM-like spread plus a few dominant tokens per row."""
    gen = torch.Generator(device).manual_seed(seed)
    x = torch.randn(batch, vocab, device=device, generator=gen) * 3
    hot = torch.randint(0, vocab, (batch, 4), device=device, generator=gen)
    return x.scatter_add_(1, hot, torch.rand(batch, 4, device=device, generator=gen) * 10 + 4)


def timed(fn, repeats):
    fn()  # warm-up (compiles the kernel on first use)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, (time.perf_counter() - start) / repeats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="rows (default: 256 on GPU, 8 on CPU)")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary (default: 128256 on GPU, 32000 on CPU)")
    parser.add_argument("--p-base", type=float, default=0.1)
    parser.add_argument("--temp", type=float, default=1.0)
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    batch = args.batch or (256 if cuda else 8)
    vocab = args.vocab or (128256 if cuda else 32000)
    logits = lm_like_logits(batch, vocab, device)
    seed = torch.arange(batch, device=device)
    print(f"minp_kernels {minp_kernels.__version__}: B={batch} V={vocab} p_base={args.p_base} temp={args.temp} "
          f"on {torch.cuda.get_device_name() if cuda else 'CPU (Triton interpreter for the kernel)'}")

    results = {}
    for backend in ("triton", "torch"):
        call = lambda: minp_kernels.sample(logits, args.p_base, args.temp, seed=seed, backend=backend)
        tokens, seconds = timed(call, 20 if cuda else 1)
        results[backend] = tokens
        print(f"  {backend:6s}: {batch / seconds:12,.0f} tokens/s  ({seconds * 1e6:9.1f} us per batch)")

    kept = minp_probs(logits, args.p_base, args.temp).gather(1, results["triton"][:, None]) > 0
    same = torch.equal(results["triton"], results["torch"])
    print(f"  check: backends identical: {same}; every token in the kept set: {bool(kept.all())}")
    if not (same and kept.all()):
        raise SystemExit("minp_kernels: check FAILED")


if __name__ == "__main__":
    main()
