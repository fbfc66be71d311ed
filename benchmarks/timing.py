"""Timers shared by the benchmarks: GPU time, host + GPU wall time, copy bandwidth.

Two quantities, never mixed:

- GPU time (:func:`gpu_time`): one CUDA graph holding back-to-back calls (one per rotating input
  buffer), replayed until at least ``min_calls`` calls ran between two CUDA events.  A callable that
  cannot be captured (it syncs with the host, say) is timed with events around the same number of
  eager calls instead, and the :class:`Timing` says so (``method``).
- Wall time (:func:`wall_time`): ``perf_counter_ns`` around back-to-back eager calls with one sync at
  the end, what a serving loop that calls the sampler eagerly pays (host work plus GPU time).

Each figure is the median over ``repeats`` timed batches; the per-batch values are kept.
"""

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

CUDA_GRAPH = "cuda_graph"
EVENTS_AROUND_EAGER_CALLS = "events_around_eager_calls"


@dataclass
class Timing:
    """Median microseconds per call over ``repeats`` batches, how they were taken, and the batches."""

    us: float
    method: str
    calls_per_batch: int
    samples_us: list[float] = field(default_factory=list)
    note: str | None = None

    def as_dict(self, prefix: str) -> dict:
        out = {f"{prefix}_us": self.us, f"{prefix}_method": self.method,
               f"{prefix}_calls_per_batch": self.calls_per_batch, f"{prefix}_samples_us": self.samples_us}
        if self.note:
            out[f"{prefix}_note"] = self.note
        return out


def _cycle(calls: Sequence[Callable[[], object]], count: int) -> None:
    """``count`` calls back to back, cycling through ``calls`` (one per input buffer)."""
    n = len(calls)
    for i in range(count):
        calls[i % n]()


def _events_us(run: Callable[[], None], calls: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / calls


def gpu_time(calls: Sequence[Callable[[], object]], *, min_calls: int = 100, repeats: int = 5,
             capturable: bool = True) -> Timing:
    """GPU microseconds per call: CUDA-graph replay of ``calls`` back to back, CUDA events around.

    Parameters
    ----------
    calls : sequence of callables
        Warmed-up calls (compiled, autotuned), typically one per rotating input buffer.
    min_calls : int
        Calls between the two events of one timed batch (whole graph replays, rounded up).
    repeats : int
        Timed batches; the median is reported.
    capturable : bool
        False for a callable known to sync with the host: skip the capture attempt and time
        ``min_calls`` eager calls between events (host-bound where the host is the slower side).

    Returns
    -------
    Timing
        ``method`` is :data:`CUDA_GRAPH`, or :data:`EVENTS_AROUND_EAGER_CALLS` with a ``note`` saying why.
    """
    note = None if capturable else "not capturable (declared: syncs with the host)"
    if capturable:
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                _cycle(calls, len(calls))
            graph.replay()
            torch.cuda.synchronize()
        except Exception as e:  # e.g. a host sync inside the call: fall back to an eager stream
            torch.cuda.synchronize()
            note = f"capture failed: {type(e).__name__}: {e}"[:200]
        else:
            replays = math.ceil(min_calls / len(calls))
            samples = [_events_us(lambda: [graph.replay() for _ in range(replays)], replays * len(calls))
                       for _ in range(repeats)]
            del graph
            return Timing(statistics.median(samples), CUDA_GRAPH, replays * len(calls), samples)
    count = math.ceil(min_calls / len(calls)) * len(calls)
    samples = [_events_us(lambda: _cycle(calls, count), count) for _ in range(repeats)]
    return Timing(statistics.median(samples), EVENTS_AROUND_EAGER_CALLS, count, samples, note)


def wall_time(calls: Sequence[Callable[[], object]], *, sync: Callable[[], None] | None = None,
              min_batch_s: float = 0.02, min_calls: int = 1, max_calls: int = 10_000, repeats: int = 5) -> Timing:
    """Wall-clock microseconds per call of back-to-back eager calls, ``sync`` once after each batch.

    The calls per batch are sized from one untimed pass over ``calls`` (the warm-up): enough for the
    batch to last ``min_batch_s``, at least ``min_calls``, at most ``max_calls``.
    """
    sync = sync or (lambda: None)
    sync()
    t0 = time.perf_counter_ns()
    _cycle(calls, len(calls))
    sync()
    estimate_s = (time.perf_counter_ns() - t0) * 1e-9 / len(calls)
    count = max(min_calls, min(max_calls, math.ceil(min_batch_s / max(estimate_s, 1e-9))))
    samples = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter_ns()
        _cycle(calls, count)
        sync()
        samples.append((time.perf_counter_ns() - t0) * 1e-3 / count)
    return Timing(statistics.median(samples), "wall_clock", count, samples)


def copy_gbps(device: torch.device, nbytes: int | None = None, repeats: int = 5) -> float:
    """Copy bandwidth of ``device`` in GB/s, counting bytes read plus written (the ceiling we compare to).

    CUDA: a 1 GiB device-to-device copy between CUDA events.  CPU: a 128 MiB ``copy_`` with torch's
    current thread count (the CPU benchmarks run one thread).
    """
    device = torch.device(device)
    nbytes = nbytes or (2**30 if device.type == "cuda" else 2**27)
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    if device.type == "cuda":
        us = statistics.median(_events_us(lambda: [dst.copy_(src) for _ in range(10)], 10) for _ in range(repeats))
    else:
        us = wall_time([lambda: dst.copy_(src)], repeats=repeats).us
    return 2 * nbytes / (us * 1e-6) / 1e9


def do_bench_us(fn: Callable[[], object], rep: int = 100) -> tuple[float, float, float]:
    """(median, p20, p80) microseconds from ``triton.testing.do_bench`` (CUDA events, warm-up excluded).

    Triton 3.6 returns a bare float for a single quantile and a list otherwise; ask for three.
    """
    from triton.testing import do_bench

    return tuple(v * 1e3 for v in do_bench(fn, warmup=25, rep=rep, quantiles=[0.5, 0.2, 0.8]))
