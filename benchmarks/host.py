"""Host cost of a ``minp_kernels.sample`` call: the Python work before the kernel launch, on any machine.

    python -m benchmarks.host [--device cpu|cuda] [--out DIR]

Method: ``minp_kernels.launch.launch_kernel`` (every kernel launch goes through it) is replaced by a
no-op, and ``minp_kernels.sample(logits, ..., backend="triton")`` is timed over many back-to-back
calls (median of ``--repeats`` batches of ``--calls`` calls, ``time.perf_counter_ns``): validation,
launch plan, argument packing and output allocation, without the launch itself.  Each argument kind
is timed (int seeds, tensor seeds, per-row p_base / temp tensors, a seed drawn on the device) beside
one ``torch.neg`` on 8 floats on the same device, with the ratio.  On CPU the Triton backend runs
under ``TRITON_INTERPRET=1``, set here before ``minp_kernels`` is imported (the interpreter's
launch is what the no-op replaces; the logits are never read).

On a CUDA machine it also times the eager wall time per call of every provider of
``benchmarks.run`` at each batch size (back-to-back calls, no sync inside, one sync at the end).
Results: ``<out>/host-<device>-<date>[tag].json`` and ``.md``.
"""

import argparse
import contextlib
import functools
import importlib
import os
import sys

import torch

from benchmarks.report import (
    HelpFormatter,
    default_out_dir,
    device_slug,
    environment,
    file_suffix,
    header_lines,
    table,
    write_json,
    write_text,
)
from benchmarks.timing import wall_time

SCHEMA = "minp_kernels.benchmarks.host/1"


def argument_kinds(batch: int, device: torch.device) -> dict[str, dict]:
    """Keyword arguments of ``sample`` per argument kind (tensors made once, as a serving loop holds them)."""
    seeds = torch.arange(batch, device=device)
    offsets = torch.zeros(batch, dtype=torch.int64, device=device)
    return {
        "int seed, int offset": dict(p_base=0.1, temp=1.0, seed=1234, offset=7),
        "tensor seed, tensor offset": dict(p_base=0.1, temp=1.0, seed=seeds, offset=offsets),
        "per-row p_base/temp, tensor seed": dict(p_base=torch.full((batch,), 0.1, device=device),
                                                 temp=torch.full((batch,), 1.0, device=device), seed=seeds,
                                                 offset=offsets),
        "seed=None (drawn on the device)": dict(p_base=0.1, temp=1.0, seed=None),
    }


def _import_minp_kernels(device: torch.device):
    """``minp_kernels`` ready to launch on ``device``: on CPU with the Triton interpreter."""
    if device.type == "cpu":
        already = sys.modules.get("minp_kernels.launch")
        if already is None:
            os.environ["TRITON_INTERPRET"] = "1"  # triton.jit decides when the kernels are decorated
        elif not getattr(already, "INTERPRETED", False):
            raise SystemExit("benchmarks.host: minp_kernels was imported without TRITON_INTERPRET=1 in this process; "
                             "on CPU run `python -m benchmarks.host` in a fresh process (it sets the variable)")
    minp_kernels = importlib.import_module("minp_kernels")
    return minp_kernels, importlib.import_module("minp_kernels.launch")


@contextlib.contextmanager
def launches_disabled(launch_module):
    """Replace ``launch_module.launch_kernel`` with a no-op for the duration (restored afterwards)."""
    if not callable(getattr(launch_module, "launch_kernel", None)):
        raise SystemExit("benchmarks.host: minp_kernels.launch has no launch_kernel(kernel, grid, kwargs); this "
                         "benchmark replaces that function with a no-op to time the Python work before the launch, "
                         "so it needs the launcher that sends every kernel launch through it")
    original = launch_module.launch_kernel
    launch_module.launch_kernel = lambda kernel, grid, kwargs: None
    try:
        yield
    finally:
        launch_module.launch_kernel = original


def check_launches_routed(minp_kernels, launch_module, device: torch.device) -> None:
    """Fail clearly if ``sample`` launches without calling ``launch_kernel`` (the no-op would time nothing)."""
    seen = []
    original = launch_module.launch_kernel
    launch_module.launch_kernel = lambda kernel, grid, kwargs: seen.append(kernel)
    try:
        minp_kernels.sample(torch.zeros(1, 64, device=device), 0.1, 1.0, seed=0, backend="triton")
    finally:
        launch_module.launch_kernel = original
    if not seen:
        raise SystemExit("benchmarks.host: minp_kernels.sample(backend='triton') launched without calling "
                         "minp_kernels.launch.launch_kernel, so a no-op there cannot remove the launch")


def python_before_launch(vocab: int, batches, device: torch.device, calls: int, repeats: int) -> tuple[float, list]:
    """(one torch.neg on 8 floats in us, rows of Python time per call of each batch size and argument kind)."""
    minp_kernels, launch_module = _import_minp_kernels(device)
    timed = dict(min_batch_s=0.0, min_calls=calls, max_calls=calls, repeats=repeats)
    eight = torch.randn(8, device=device)
    neg_us = wall_time([lambda: torch.neg(eight)], **timed).us
    rows = []
    with launches_disabled(launch_module):
        check_launches_routed(minp_kernels, launch_module, device)
        for batch in batches:
            logits = torch.empty(batch, vocab, device=device)  # never read: the launch is a no-op
            for kind, kwargs in argument_kinds(batch, device).items():
                call = functools.partial(minp_kernels.sample, logits, backend="triton", **kwargs)
                timing = wall_time([call], **timed)
                rows.append(dict(batch=batch, vocab=vocab, arguments=kind, python_us=timing.us,
                                 ratio_to_neg=timing.us / neg_us, samples_us=timing.samples_us))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return neg_us, rows


def eager_wall_per_provider(vocab: int, batches, device: torch.device, repeats: int,
                            names=None) -> tuple[list, dict]:
    """CUDA: eager wall time per call of the providers of ``benchmarks.run`` (all, or ``names``), one sync
    per batch of back-to-back calls."""
    from benchmarks.families import FAMILIES, make_logits
    from benchmarks.run import select_providers

    providers, absent = select_providers(device, names)
    family = FAMILIES["gaussian"]
    rows = []
    for batch in batches:
        logits = make_logits(family.name, batch, vocab, torch.float32, device)
        seeds = torch.arange(batch, device=device)
        for provider in providers:
            call = functools.partial(provider.sample, logits, p_base=family.p_base, temp=family.temp, seed=seeds)
            row = dict(batch=batch, vocab=vocab, provider=provider.name)
            try:
                call()  # compile / first-call work outside the timing
                timing = wall_time([call], sync=torch.cuda.synchronize, min_batch_s=0.02, min_calls=50,
                                   repeats=repeats)
                row.update(eager_us=timing.us, calls_per_batch=timing.calls_per_batch, samples_us=timing.samples_us)
            except Exception as e:  # reported, not fatal
                row["error"] = f"{type(e).__name__}: {e}"[:300]
                torch.cuda.synchronize()
            rows.append(row)
    return rows, absent


def markdown(payload: dict) -> str:
    env = payload["environment"]
    interpreter = "; Triton interpreter on CPU" if env["device_type"] == "cpu" else ""
    lines = [f"# Host cost of a sample call: {env['device']}, {env['date']}", "", *header_lines(env), "",
             "Python time per `minp_kernels.sample(..., backend=\"triton\")` call before the launch "
             f"(`minp_kernels.launch.launch_kernel` replaced by a no-op{interpreter}), V = {payload['vocab']}, "
             f"median of {payload['repeats']} batches of {payload['calls']} back-to-back calls. "
             f"Ratio: to one `torch.neg` on 8 floats on the same device ({payload['neg_us']:.2f} us).", "",
             table(["B", "arguments", "Python us per call", "x torch.neg"],
                   [[str(r["batch"]), r["arguments"], f"{r['python_us']:.1f}", f"{r['ratio_to_neg']:.1f}"]
                    for r in payload["python_before_launch"]])]
    if payload.get("eager_wall"):
        names = list(dict.fromkeys(r["provider"] for r in payload["eager_wall"]))
        keyed = {(r["batch"], r["provider"]): r for r in payload["eager_wall"]}
        body = [[str(b)] + [f"{keyed[(b, n)]['eager_us']:.1f}" if "eager_us" in keyed.get((b, n), {}) else "error"
                            for n in names] for b in dict.fromkeys(r["batch"] for r in payload["eager_wall"])]
        lines += ["", f"Eager wall time per call, us (host + GPU; V = {payload['vocab']}, float32 gaussian rows, "
                  "back-to-back calls, one sync at the end of each batch):", "", table(["B", *names], body)]
        if payload.get("absent"):
            lines += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in payload["absent"].items()) + "."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.host", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu (Triton interpreter, Python time only) or cuda[:N] (also every provider's eager "
                        "wall time); cuda when torch sees a GPU, else cpu")
    parser.add_argument("--vocab", type=int, default=128256, help="vocabulary size V of the logits")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64], metavar="B", help="batch sizes")
    parser.add_argument("--calls", type=int, default=300, help="back-to-back calls per timed batch")
    parser.add_argument("--repeats", type=int, default=7, help="timed batches; the median is reported")
    parser.add_argument("--providers", nargs="+", metavar="NAME",
                        help="CUDA: time the eager wall time of only these providers of benchmarks.run (default: "
                        "every provider timed on the device; `python -m benchmarks.run --help` lists them)")
    parser.add_argument("--out", default=default_out_dir(), help="folder for the JSON and markdown files")
    parser.add_argument("--tag", default="", help="label appended to the output file names: --tag v3 writes "
                        "...-v3.json (default: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (ignored on CUDA)")
    return parser


def main(argv=None) -> list[str]:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device: expected cpu on this machine (torch sees no CUDA device), got cuda")
        if device.index is not None:  # a bare "cuda" keeps the current device
            torch.cuda.set_device(device)
    else:
        torch.set_num_threads(args.threads)
    env = environment(device)
    neg_us, rows = python_before_launch(args.vocab, args.batches, device, args.calls, args.repeats)
    payload = dict(schema=SCHEMA, environment=env, vocab=args.vocab, calls=args.calls, repeats=args.repeats,
                   neg_us=neg_us, python_before_launch=rows)
    if device.type == "cuda":
        payload["eager_wall"], payload["absent"] = eager_wall_per_provider(args.vocab, args.batches, device,
                                                                           args.repeats, args.providers)
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, f"host-{device_slug(env)}-{env['date']}{file_suffix(args.tag)}")
    write_json(prefix + ".json", payload)
    text = markdown(payload)
    write_text(prefix + ".md", text)
    print(text)
    print("wrote", prefix + ".json", prefix + ".md", sep="\n  ")
    return [prefix + ".json", prefix + ".md"]


if __name__ == "__main__":
    main()
