"""Sample a batch of LM-like logits with both backends, check the draws, and time them.

`python -m minp_kernels` runs on the best device present. It checks that the Triton kernel and the
torch backend draw identical tokens and that every token lies in the min-p kept set of the exact
reference, then prints tokens/s per backend as the median of several timed repeats.

On a CPU-only machine the figures are not GPU speed: the torch backend is timed on this CPU, and
the Triton kernel runs once under Triton's CPU interpreter (TRITON_INTERPRET=1), which checks its
correctness but says nothing about its speed.
"""

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before minp_kernels imports the kernels

import minp_kernels  # noqa: E402
from minp_kernels.params import MAX_VOCAB  # noqa: E402
from minp_kernels.reference import minp_probs  # noqa: E402

# Sizes and repeats per device: a GPU gets a serving-sized batch; the CPU a small one, since the
# interpreted kernel takes seconds per call.
GPU_DEFAULTS = dict(batch=256, vocab=128256, repeats=20)
CPU_DEFAULTS = dict(batch=8, vocab=32000, repeats=5)


def lm_like_logits(batch: int, vocab: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Gaussian logits with an LM-like spread plus a few dominant tokens per row."""
    gen = torch.Generator(device).manual_seed(seed)
    x = torch.randn(batch, vocab, device=device, generator=gen) * 3
    hot = torch.randint(0, vocab, (batch, 4), device=device, generator=gen)
    return x.scatter_add_(1, hot, torch.rand(batch, 4, device=device, generator=gen) * 10 + 4)


def median_seconds(fn: Callable[[], torch.Tensor], repeats: int, warm_up: bool = True) -> tuple[torch.Tensor, float]:
    """``(last output, median seconds per call)`` over ``repeats`` synchronised calls."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    if warm_up:
        fn()  # the first call compiles the kernel: not part of the figure
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def _number(kind: type, low: float, high: float, what: str) -> Callable[[str], float]:
    """An argparse type: ``kind(text)`` within ``[low, high]``, else argparse's usage error (exit 2)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:  # NaN fails too
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m minp_kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu, cpu = GPU_DEFAULTS, CPU_DEFAULTS
    positive = _number(int, 1, math.inf, "an integer >= 1")
    parser.add_argument("--batch", type=positive, default=None,
                        help=f"rows sampled per call (default: {gpu['batch']} on a GPU, {cpu['batch']} on the CPU)")
    parser.add_argument("--vocab", type=_number(int, 1, MAX_VOCAB, f"an integer in [1, {MAX_VOCAB}]"), default=None,
                        help=f"vocabulary size V (default: {gpu['vocab']} on a GPU, {cpu['vocab']} on the CPU)")
    parser.add_argument("--p-base", type=_number(float, 0.0, 1.0, "a number in [0, 1]"), default=0.1,
                        help="min-p base in [0, 1] (default: %(default)s)")
    parser.add_argument("--temp", type=_number(float, 0.0, math.inf, "a number >= 0"), default=1.0,
                        help="temperature >= 0 (default: %(default)s)")
    parser.add_argument("--repeats", type=positive, default=None,
                        help=f"timed calls per backend after one warm-up call; the median is printed (default: "
                             f"{gpu['repeats']} on a GPU, {cpu['repeats']} on the CPU, where the interpreted "
                             "kernel runs once)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    defaults = GPU_DEFAULTS if cuda else CPU_DEFAULTS
    batch = defaults["batch"] if args.batch is None else args.batch
    vocab = defaults["vocab"] if args.vocab is None else args.vocab
    repeats = defaults["repeats"] if args.repeats is None else args.repeats
    logits = lm_like_logits(batch, vocab, device)
    seed = torch.arange(batch, device=device)
    print(f"minp_kernels {minp_kernels.__version__}: B={batch} V={vocab} p_base={args.p_base} temp={args.temp} "
          f"on {torch.cuda.get_device_name() if cuda else 'the CPU'}")

    results = {}
    for backend in ("triton", "torch"):
        def call(backend: str = backend) -> torch.Tensor:
            return minp_kernels.sample(logits, args.p_base, args.temp, seed=seed, backend=backend)

        interpreted = backend == "triton" and not cuda
        # The interpreter has nothing to compile and takes seconds per call: one run, no warm-up.
        tokens, seconds = median_seconds(call, 1 if interpreted else repeats, warm_up=not interpreted)
        results[backend] = tokens
        if interpreted:
            print(f"  {backend:6s}: ran once under the Triton interpreter ({seconds:.1f} s): a correctness check, "
                  "not a speed figure")
        else:
            print(f"  {backend:6s}: {batch / seconds:12,.0f} tokens/s  ({seconds * 1e6:11.1f} us per batch, "
                  f"median of {repeats} runs)")
    if not cuda:
        print("  CPU figures: the torch backend on this CPU; they do not predict GPU speed "
              "(run this on a CUDA machine for that)")

    kept = minp_probs(logits, args.p_base, args.temp).gather(1, results["triton"][:, None]) > 0
    same = torch.equal(results["triton"], results["torch"])
    print(f"  check: backends identical: {same}; every token in the kept set: {bool(kept.all())}")
    if not (same and kept.all()):
        raise SystemExit("minp_kernels: check FAILED")


if __name__ == "__main__":
    main()
