"""Min-p sampler benchmark: every provider on the same logits, over vocabularies, batch sizes, dtypes
and row families.

    python -m benchmarks.run [--quick] [--device cuda|cpu] [--out DIR]

CUDA: every provider at every point gets its GPU time (``graph_us``: a CUDA graph of back-to-back
calls replayed between CUDA events, at least ``--min-graph-calls`` calls per timed batch; a provider
that cannot be captured is timed with events around as many eager calls, and its ``graph_method``
says so) and its host + GPU wall time of back-to-back eager calls (``eager_us``, one sync per batch).
Inputs rotate over enough copies of the logits (up to 256 MB) that L2 does not serve repeated calls.
CPU: the torch providers' wall time per call on ``--threads`` torch threads (1 by default).

Bandwidth counts one read of the logits (``B * V * itemsize``) per GPU time (CPU: wall time), also
as a fraction of a copy measured in the same run.  Results: ``<out>/<device>-<date>[-quick][-tag]``
``.json`` (rewritten after every point, so a run cut short keeps what it measured), ``.md`` (GPU time
and wall time in separate tables) and one ``-<dtype>-<family>-bandwidth.png`` per dtype and family.
"""

import argparse
import functools
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

import minp_kernels
from benchmarks import baselines
from benchmarks.families import FAMILIES, make_logits
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
from benchmarks.timing import CUDA_GRAPH, copy_gbps, gpu_time, wall_time

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ROTATE_BYTES = 256 * 2**20  # > 2x the largest L2 seen here (H200: 60 MB)
MAX_BUFFERS = 64
SCHEMA = "minp_kernels.benchmarks.run/2"


# ------------------------------------------------------------------------------------------------
# Providers: one declared table.  Each is called as sample(logits, p_base=..., temp=..., seed=...)
# with int64 seeds [B] and returns int64 tokens [B].
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Provider:
    """One sampling path of the comparison."""

    name: str
    sample: Callable[..., torch.Tensor]
    temperature_first: bool  # the order its kept set follows (False: the paper's, min-p before temperature)
    devices: tuple[str, ...]  # device types it is timed on
    summary: str
    graph_safe: bool = True  # False: known to sync with the host, GPU time from events around eager calls
    requires: str | None = None  # a module that must import for the provider to exist

    def missing(self) -> str | None:
        """Why the provider is absent on this machine (None when it is present)."""
        if self.requires is None:
            return None
        try:
            __import__(self.requires)
        except Exception as e:  # ImportError, or a broken install raising anything else
            return f"{self.requires} did not import ({type(e).__name__})"
        return None


def _minp_kernels(backend: str, temperature_first: bool) -> Callable[..., torch.Tensor]:
    def sample(logits, *, p_base, temp, seed):
        return minp_kernels.sample(logits, p_base, temp, seed=seed, temperature_first=temperature_first,
                                   backend=backend)

    return sample


@functools.cache
def _compiled_gumbel_max():
    return torch.compile(baselines.gumbel_max, dynamic=True)


PROVIDERS = (
    Provider("minp_kernels", _minp_kernels("triton", False), False, ("cuda",),
             "minp_kernels.sample, Triton kernel, paper order"),
    Provider("minp_kernels[tf]", _minp_kernels("triton", True), True, ("cuda",),
             "minp_kernels.sample, Triton kernel, temperature_first=True"),
    Provider("minp_kernels_torch", _minp_kernels("torch", False), False, ("cpu",),
             "minp_kernels.sample(backend='torch'), paper order"),
    Provider("minp_kernels_torch[tf]", _minp_kernels("torch", True), True, ("cpu",),
             "minp_kernels.sample(backend='torch'), temperature_first=True"),
    Provider("mrv2_triton", lambda x, *, p_base, temp, seed: baselines.mrv2_triton(x, p_base, temp, seed=seed),
             True, ("cuda",), "vLLM Model Runner V2 style Triton pair (min-p kernel + Gumbel kernel)"),
    Provider("vllm_style", lambda x, *, p_base, temp, seed: baselines.vllm_style(x, p_base, temp),
             True, ("cpu", "cuda"), "vLLM v1 torch path: softmax, amax mask, exponential race"),
    Provider("hf_warpers", lambda x, *, p_base, temp, seed: baselines.hf_warpers(x, p_base, temp),
             True, ("cpu", "cuda"), "Hugging Face Temperature + MinP warpers, softmax, torch.multinomial",
             graph_safe=False, requires="transformers"),  # multinomial checks its input with .item()
    Provider("gumbel_max_compiled", lambda x, *, p_base, temp, seed: _compiled_gumbel_max()(x, temp),
             True, ("cuda",), "plain Gumbel-max without min-p, torch.compile (speed of light of fusion)"),
    Provider("flashinfer", lambda x, *, p_base, temp, seed: baselines.flashinfer_min_p(x, p_base, temp),
             True, ("cuda",), "FlashInfer softmax + min_p_sampling_from_probs", requires="flashinfer"),
)
PROVIDER_NAMES = [p.name for p in PROVIDERS]


@dataclass(frozen=True)
class Grid:
    vocabs: tuple[int, ...]
    batches: tuple[int, ...]
    dtypes: tuple[str, ...]
    families: tuple[str, ...]

    def points(self):
        """Most telling first (a run cut short keeps them): family, then dtype, vocabulary, batch."""
        return [(f, d, v, b) for f in self.families for d in self.dtypes for v in self.vocabs for b in self.batches]


ALL_FAMILIES = tuple(FAMILIES)
GRIDS = {
    ("cuda", False): Grid((128256, 32000, 151936, 262144), (1, 8, 32, 64, 128, 512), ("float32", "bfloat16"),
                          ALL_FAMILIES),
    ("cuda", True): Grid((128256,), (1, 8, 32, 64, 128, 512), ("float32", "bfloat16"),
                         ("gaussian", "flat", "adversarial")),
    ("cpu", False): Grid((128256,), (1, 8, 64), ("float32",), ALL_FAMILIES),  # issue 14's CPU row
    ("cpu", True): Grid((128256,), (1, 8), ("float32",), ("gaussian",)),
}


@dataclass(frozen=True)
class Settings:
    repeats: int = 5
    min_graph_calls: int = 100
    min_batch_ms: float = 20.0


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------
def select_providers(device: torch.device, names=None):
    """(providers to time on ``device``, {absent name: reason}) in table order."""
    wanted = [p for p in PROVIDERS if (names is None and device.type in p.devices) or (names and p.name in names)]
    present, absent = [], {}
    for p in wanted:
        if device.type not in p.devices:
            absent[p.name] = f"not timed on {device.type} (devices: {', '.join(p.devices)})"
        elif (why := p.missing()) is not None:
            absent[p.name] = why
        else:
            present.append(p)
    return present, absent


def measure(provider: Provider, buffers, seeds, family, device: torch.device, settings: Settings) -> dict:
    """Timings of one provider at one point (dict of ``graph_*`` / ``eager_*`` fields)."""
    calls = [functools.partial(provider.sample, buf, p_base=family.p_base, temp=family.temp, seed=seeds)
             for buf in buffers]
    if device.type != "cuda":  # wall_time's first, untimed pass is the warm-up
        return wall_time(calls, min_batch_s=settings.min_batch_ms * 1e-3, repeats=settings.repeats).as_dict("eager")
    calls[0]()  # compile / first-call work outside every timing
    torch.cuda.synchronize()
    graph = gpu_time(calls, min_calls=settings.min_graph_calls, repeats=settings.repeats,
                     capturable=provider.graph_safe)
    eager = wall_time(calls, sync=torch.cuda.synchronize, min_batch_s=settings.min_batch_ms * 1e-3, min_calls=10,
                      repeats=settings.repeats)
    return {**graph.as_dict("graph"), **eager.as_dict("eager")}


def run_grid(device: torch.device, grid: Grid, providers, settings: Settings = Settings(), *, copy=None,
             checkpoint=None, progress=True, budget_s=None) -> tuple[list[dict], bool]:
    """Time ``providers`` at every point of ``grid``; returns (rows, complete).

    ``checkpoint(rows)`` runs after every point; with ``budget_s`` no point starts after that many seconds.
    """
    points = grid.points()
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(points), desc="benchmark grid", unit="point")
        except ImportError:
            pass
    start, rows, complete = time.monotonic(), [], True
    for index, (family_name, dname, vocab, batch) in enumerate(points):
        if budget_s is not None and time.monotonic() - start > budget_s:
            complete = False
            break
        label = f"{family_name} {dname} V={vocab} B={batch}"
        if bar is not None:
            bar.set_postfix_str(label)
        else:  # one line per point for logs
            print(f"point {index + 1}/{len(points)}: {label} ({time.monotonic() - start:.0f} s)", flush=True)
        family, dtype = FAMILIES[family_name], DTYPES[dname]
        nbytes = batch * vocab * dtype.itemsize
        copies = max(2, min(MAX_BUFFERS, ROTATE_BYTES // nbytes)) if device.type == "cuda" else 1
        buffers = [make_logits(family_name, batch, vocab, dtype, device, copy=i) for i in range(copies)]
        seeds = torch.arange(batch, device=device)
        for provider in providers:
            row = dict(provider=provider.name, family=family_name, vocab=vocab, batch=batch, dtype=dname,
                       temperature_first=provider.temperature_first, p_base=family.p_base, temp=family.temp,
                       bytes=nbytes, buffers=copies)
            try:
                row.update(measure(provider, buffers, seeds, family, device, settings))
            except Exception as e:  # a provider failing at a shape is recorded, not fatal
                row["error"] = f"{type(e).__name__}: {e}"[:300]
                if device.type == "cuda":
                    torch.cuda.synchronize()
            add_bandwidth(row, copy)
            rows.append(row)
        del buffers
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if checkpoint is not None:
            checkpoint(rows)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return rows, complete


def add_bandwidth(row: dict, copy: float | None) -> None:
    """GB/s of one read of the logits per GPU time (CPU: wall time), and the fraction of copy bandwidth."""
    time_key = "graph_us" if "graph_us" in row else "eager_us"
    if time_key not in row:
        return
    row["gbps"] = row["bytes"] / (row[time_key] * 1e-6) / 1e9
    row["bandwidth_from"] = time_key
    if copy:
        row["copy_fraction"] = row["gbps"] / copy


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------
def _us(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"


def _cell(row: dict | None, key: str, with_fraction: bool) -> str:
    if row is None:
        return "-"
    if key not in row:
        return "error" if "error" in row else "-"
    cell = _us(row[key])
    if key == "graph_us" and row.get("graph_method") != CUDA_GRAPH:
        cell += "†"
    if with_fraction and "copy_fraction" in row:
        percent = 100 * row["copy_fraction"]
        cell += f" ({percent:.0f}%)" if percent >= 10 else f" ({percent:.2g}%)"
    return cell


def markdown(payload: dict) -> str:
    """The report of a run: header, providers, families, then per (dtype, family) its time tables."""
    env, rows = payload["environment"], payload["results"]
    cuda = env["device_type"] == "cuda"
    names = [p["name"] for p in payload["providers"] if any(r["provider"] == p["name"] for r in rows)]
    lines = [f"# Min-p sampler benchmark: {env['device']}, {env['date']}", "", *header_lines(env, payload["copy_gbps"])]
    if not payload.get("complete", True):
        lines.append(f"- Cut short: {payload.get('points_measured')} of {payload.get('points_planned')} grid points "
                     "measured")
    lines += ["", "Providers (temperature first: the threshold is on the tempered distribution, as in Hugging Face "
              "and vLLM; paper: min-p before temperature):", "",
              table(["provider", "order", "what"], [[p["name"], "temperature first" if p["temperature_first"]
                                                     else "paper", p["summary"]] for p in payload["providers"]
                                                    if p["name"] in names])]
    if payload.get("absent"):
        lines += ["", "Not measured here: " + "; ".join(f"{k}: {v}" for k, v in payload["absent"].items()) + "."]
    lines += ["", "Row families:", "", table(["family", "p_base", "temp", "rows"], [
        [f["name"], f"{f['p_base']:g}", f"{f['temp']:g}", f["summary"]] for f in payload["families"]])]
    if cuda:
        tables = [("graph_us", "GPU time per call, us: CUDA-graph replay of back-to-back calls (in brackets: one "
                   "read of the logits as a share of copy bandwidth; † not capturable, CUDA events around "
                   "back-to-back eager calls instead)", True),
                  ("eager_us", "Host + GPU wall time per eager call, us: back-to-back calls, one sync per batch",
                   False)]
    else:
        threads = f"{env['torch_threads']} torch thread" + ("s" if env["torch_threads"] != 1 else "")
        tables = [("eager_us", f"Wall time per call, us, on {threads}: back-to-back calls (in brackets: one read of "
                   "the logits as a share of copy bandwidth)", True)]
    keyed = {(r["dtype"], r["family"], r["vocab"], r["batch"], r["provider"]): r for r in rows}
    sections = dict.fromkeys((r["dtype"], r["family"]) for r in rows)
    families = {f["name"]: f for f in payload["families"]}
    for dname, fname in sections:
        shape_keys = sorted({(r["vocab"], r["batch"]) for r in rows if (r["dtype"], r["family"]) == (dname, fname)})
        lines += ["", f"## {dname}, {fname} (p_base {families[fname]['p_base']:g}, temp {families[fname]['temp']:g})"]
        for key, caption, with_fraction in tables:
            body = [[str(v), str(b)] + [_cell(keyed.get((dname, fname, v, b, n)), key, with_fraction) for n in names]
                    for v, b in shape_keys]
            lines += ["", caption, "", table(["V", "B", *names], body)]
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Errors (first of each provider):", ""]
        for name in dict.fromkeys(r["provider"] for r in errors):
            r = next(r for r in errors if r["provider"] == name)
            lines.append(f"- {name} at V={r['vocab']}, B={r['batch']}, {r['dtype']}, {r['family']}: {r['error']}")
    return "\n".join(lines) + "\n"


def plots(payload: dict, prefix: str) -> list[str]:
    """One PNG per (dtype, family): fraction of copy bandwidth vs batch size, a line per provider,
    a panel per vocabulary.  Returns the paths ([] without matplotlib or without a copy figure)."""
    rows = [r for r in payload["results"] if "copy_fraction" in r]
    if not rows:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plots")
        return []
    cuda = payload["environment"]["device_type"] == "cuda"
    order = [p["name"] for p in payload["providers"]]
    paths = []
    for dname, fname in dict.fromkeys((r["dtype"], r["family"]) for r in rows):
        section = [r for r in rows if (r["dtype"], r["family"]) == (dname, fname)]
        vocabs = sorted({r["vocab"] for r in section})
        fig, axes = plt.subplots(1, len(vocabs), figsize=(4.2 * len(vocabs), 3.6), sharey=True, squeeze=False)
        for ax, vocab in zip(axes[0], vocabs, strict=True):
            for name in order:
                points = sorted((r["batch"], r["copy_fraction"]) for r in section
                                if r["vocab"] == vocab and r["provider"] == name)
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=name)
            ax.set_xscale("log", base=2)
            if not cuda:  # CPU providers differ by orders of magnitude
                ax.set_yscale("log")
            ax.set_title(f"V = {vocab}")
            ax.set_xlabel("batch size B")
        axes[0][0].set_ylabel("one logits read / copy bandwidth\n(" + ("GPU time" if cuda else "CPU wall time") + ")")
        axes[0][-1].legend(fontsize=6)
        fig.suptitle(f"{payload['environment']['device']}: {dname}, {fname}", fontsize=9)
        fig.tight_layout()
        path = f"{prefix}-{dname}-{fname}-bandwidth.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_outputs(payload: dict, prefix: str, with_plots: bool = True) -> list[str]:
    """JSON, markdown and (optionally) plots of ``payload``; returns the paths written."""
    write_json(prefix + ".json", payload)
    write_text(prefix + ".md", markdown(payload))
    return [prefix + ".json", prefix + ".md"] + (plots(payload, prefix) if with_plots else [])


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def _epilog() -> str:
    lines = ["providers (in table order; order = kept-set order, devices = where they are timed):"]
    for p in PROVIDERS:
        order = "temperature first" if p.temperature_first else "paper"
        extra = f"; needs {p.requires}" if p.requires else ""
        lines.append(f"  {p.name:24} {order:17} {'/'.join(p.devices):9} {p.summary}{extra}")
    lines.append("\nrow families (each with its own p_base and temp):")
    for f in FAMILIES.values():
        lines.append(f"  {f.name:12} p_base {f.p_base:<5g} temp {f.temp:<4g} {f.summary}")
    lines.append("\ngrids (--vocabs/--batches/--dtypes/--families override):")
    for (dev, quick), g in GRIDS.items():
        lines.append(f"  {dev:4} {'--quick' if quick else 'full':7} V {list(g.vocabs)}, B {list(g.batches)}, "
                     f"{list(g.dtypes)}, {list(g.families)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__, epilog=_epilog(),
                                     formatter_class=HelpFormatter)
    add = parser.add_argument
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu",
        help="where to run: cuda[:N] (GPU time and eager wall time) or cpu (torch providers' wall time); "
        "cuda when torch sees a GPU, else cpu")
    add("--quick", action="store_true", help="the small grid of the device (see grids below) instead of the full one")
    add("--providers", nargs="+", metavar="NAME", choices=PROVIDER_NAMES,
        help="time only these providers (default: every provider timed on the device)")
    add("--families", nargs="+", choices=list(FAMILIES), help="override the grid's row families (default: the grid's)")
    add("--dtypes", nargs="+", choices=list(DTYPES), help="override the grid's dtypes (default: the grid's)")
    add("--vocabs", type=int, nargs="+", metavar="V", help="override the grid's vocabularies (default: the grid's)")
    add("--batches", type=int, nargs="+", metavar="B", help="override the grid's batch sizes (default: the grid's)")
    add("--out", default=default_out_dir(), help="folder for the JSON, markdown and PNG files")
    add("--tag", default="", help="label appended to the output file names: --tag v3 writes ...-v3.json "
        "(default: none)")
    add("--threads", type=int, default=1, help="torch threads for a CPU run (ignored on CUDA)")
    add("--repeats", type=int, default=Settings.repeats, help="timed batches per measurement; the median is reported")
    add("--min-graph-calls", type=int, default=Settings.min_graph_calls,
        help="CUDA: calls between the two events of one GPU-time batch")
    add("--min-batch-ms", type=float, default=Settings.min_batch_ms,
        help="shortest wall-time batch of back-to-back calls (at least 1 call on CPU, 10 on CUDA)")
    add("--budget", type=float, metavar="SECONDS",
        help="start no grid point after this many seconds, then write what was measured (default: no limit)")
    add("--no-progress", action="store_true", help="no progress bar, for logs (default: a tqdm bar over the points)")
    add("--no-plots", action="store_true", help="skip the PNG plots (default: one per dtype and family)")
    add("--render", metavar="JSON", help="measure nothing: rewrite the markdown and plots of an earlier run's JSON "
        "(e.g. one cut short) next to it")
    return parser


def main(argv=None) -> list[str]:
    args = build_parser().parse_args(argv)
    if args.render:
        import json

        with open(args.render) as f:
            payload = json.load(f)
        prefix = args.render.removesuffix(".json")
        paths = write_outputs(payload, prefix, not args.no_plots)
        print("wrote", *paths, sep="\n  ")
        return paths

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device: expected cpu on this machine (torch sees no CUDA device), got cuda")
    if device.type not in ("cuda", "cpu"):
        raise SystemExit(f"--device: expected cuda[:N] or cpu, got {args.device}")
    if device.type == "cuda":
        if device.index is not None:  # a bare "cuda" keeps the current device
            torch.cuda.set_device(device)
    else:
        torch.set_num_threads(args.threads)
    base = GRIDS[(device.type, args.quick)]
    grid = Grid(tuple(args.vocabs or base.vocabs), tuple(args.batches or base.batches),
                tuple(args.dtypes or base.dtypes), tuple(args.families or base.families))
    providers, absent = select_providers(device, args.providers)
    if not providers:
        raise SystemExit(f"--providers: none of them is timed on {device.type}: {absent}")
    settings = Settings(args.repeats, args.min_graph_calls, args.min_batch_ms)

    env = environment(device)
    copy = copy_gbps(device)
    os.makedirs(args.out, exist_ok=True)
    name = f"{device_slug(env)}-{env['date']}{'-quick' if args.quick else ''}{file_suffix(args.tag)}"
    prefix = os.path.join(args.out, name)
    payload = dict(schema=SCHEMA, environment=env, copy_gbps=copy, grid=asdict(grid), settings=asdict(settings),
                   providers=[dict(name=p.name, temperature_first=p.temperature_first, summary=p.summary,
                                   graph_safe=p.graph_safe) for p in providers],
                   absent=absent, families=[dict(name=f, p_base=FAMILIES[f].p_base, temp=FAMILIES[f].temp,
                                                 summary=FAMILIES[f].summary) for f in grid.families],
                   points_planned=len(grid.points()), complete=False, results=[])
    print(f"{len(grid.points())} points x {len(providers)} providers on {env['device']}; checkpoints: {prefix}.json")

    def checkpoint(rows):
        payload.update(results=rows, points_measured=len({(r['family'], r['dtype'], r['vocab'], r['batch'])
                                                          for r in rows}))
        write_outputs(payload, prefix, with_plots=False)

    rows, complete = run_grid(device, grid, providers, settings, copy=copy, checkpoint=checkpoint,
                              progress=not args.no_progress, budget_s=args.budget)
    checkpoint(rows)
    payload["complete"] = complete
    paths = write_outputs(payload, prefix, not args.no_plots)
    print(markdown(payload))
    if not complete:
        print(f"note: time budget of {args.budget:g} s reached after {payload['points_measured']} of "
              f"{payload['points_planned']} points")
    print("wrote", *paths, sep="\n  ")
    return paths


if __name__ == "__main__":
    main()
