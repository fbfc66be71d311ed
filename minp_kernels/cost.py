"""Static cost model of the sampling kernel: predicts the fraction of copy bandwidth with no GPU.

Three ingredients (``python -m minp_kernels.aot --cost`` prints them):

1. **Instructions by pipe**, from the sm_90 SASS of small probe kernels built from the kernel's own
   device functions (:mod:`minp_kernels.kernels`): phase 1 per tile (load + max), in phase 2 the
   choice of the next candidate tile, one group check (reload + max) and one noise group (Philox,
   two logs, score, two reductions).  The probes have no loops, so static counts are the dynamic
   counts; a probe's fixed prologue and epilogue (an empty probe) is subtracted.
2. **How often each runs**, from a numpy simulation of each row family (Gaussian, peaked, flat,
   adversarial) with the launch plan's tile, group and split sizes: the share of tiles that reach
   the threshold and the noise groups per tile.  v2 used the running threshold of its single pass;
   v3 thresholds on the row max (splits see each other's published maxima, ``shared``) or, as a
   pessimistic bound, on its own split's max (``own``).  Rescans are left out (v2: a tile reread in
   10-25% of rows, under 1% of the bytes; v3: only split rows whose published maxima lagged).
3. **An H100 SM**: 4 schedulers issuing one warp instruction per clock at an efficiency ``eta``;
   per-clock pipe rates (warp instructions): FMA 4, integer 2, MUFU / conversions 0.5, load-store 1;
   memory 3.0 TB/s over 132 SMs at 1.755 GHz, 12.95 bytes per SM-clock.  Time per tile is the larger
   of memory and compute (they overlap across the programs of an SM).
4. **Where phase 2's rereads come from.**  A program rereads its candidate tiles only after streaming
   its whole segment, while every other resident program streams its own: when the resident
   programs' segments together outgrow L2 (50 MB), the rereads miss it.  The model charges the share
   ``1 - L2 / working set`` of the candidate tiles' bytes to memory a second time
   (:func:`dram_reread_share`); at B = 512 (2,112 resident programs of 128-256 KB) that is nearly all.

``eta`` is the one fitted number: it is set so that the model gives v2's measured fp32 result
(33% of copy at B = 512, Gaussian rows) and then checked against v2's bf16 result (18%), which it
was not fitted to.  v2's probes are built from v2's source, read from git (commit ``V2_COMMIT``).
"""

import importlib.util
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

V2_COMMIT = "f42cd0f"
V2_MEASURED = {"float32": 0.33, "bfloat16": 0.18}  # B = 512, V = 128256, Gaussian rows (benchmarks/results)
SM_COUNT, CLOCK_HZ, READ_BYTES_PER_S = 132, 1.755e9, 3.0e12
ISSUE_PER_CLOCK = 4
PIPE_RATE = {"fma": 4.0, "int": 2.0, "xu": 0.5, "lsu": 1.0, "other": 4.0}
VOCAB, BATCH = 128256, 512
L2_BYTES = 50 * 2**20
FAMILY_NAMES = ("gaussian", "peaked", "flat", "adversarial")

_PIPES = [
    ("xu", r"^(MUFU|I2F|F2I|F2F|FRND|I2I)"),
    ("fma", r"^(FFMA|FADD|FMUL|FMNMX|FSETP|FSEL|FSET|FCHK|HADD2|HFMA2|HMUL2|HMNMX2|HSETP2)"),
    ("lsu", r"^(LDG|STG|LDS|STS|LD|ST|ATOM|ATOMG|ATOMS|RED|SHFL|LDGSTS|LDSM)"),
    ("int", r"^(IMAD|IADD3|IADD|LOP3|LOP|SHF|SHL|SHR|ISETP|IMNMX|LEA|SEL|PRMT|IABS|POPC|FLO|BREV|VIADD|VIMNMX|IDP)"),
]


def pipe_of(opcode):
    """Pipe of a SASS opcode (uniform-datapath ``U*`` and control instructions count as ``other``)."""
    for pipe, pattern in _PIPES:
        if re.match(pattern, opcode):
            return pipe
    return "other"


def count_pipes(sass):
    """Instruction counts by pipe in a SASS listing (``cuobjdump --dump-sass``)."""
    counts = dict.fromkeys(PIPE_RATE, 0)
    for line in sass.splitlines():
        match = re.match(r"\s*/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if match and not match.group(1).startswith("NOP"):
            counts[pipe_of(match.group(1))] += 1
    counts["barrier"] = len(re.findall(r"\bBAR\.", sass))
    return counts


# Probe kernels: each is one piece of the pass, built from the device functions of a kernel module.
_PROBES_V3 = '''
import triton
import triton.language as tl
from minp_kernels.kernels import _group_candidate, _load_raw, _max2d, _sanitize, _tile_columns, _tile_max


@triton.jit
def next_candidate(logits_ptr, out_ptr, lo, hi, thr, inv_temp, seed, offset, ROWS: tl.constexpr,
                   WIDTH: tl.constexpr):
    ids = tl.arange(0, ROWS)
    pending = tl.load(logits_ptr + lo + ids).to(tl.float32) >= thr
    tl.store(out_ptr, tl.max(pending.to(tl.int32), axis=0) + tl.min(tl.where(pending, ids, ROWS), axis=0))


@triton.jit
def empty(logits_ptr, out_ptr, lo, hi, thr, inv_temp, seed, offset, ROWS: tl.constexpr, WIDTH: tl.constexpr):
    tl.store(out_ptr, tl.load(logits_ptr + lo).to(tl.float32) + thr)


@triton.jit
def skip_tile(logits_ptr, out_ptr, lo, hi, thr, inv_temp, seed, offset, ROWS: tl.constexpr, WIDTH: tl.constexpr):
    cols, _ = _tile_columns(lo // WIDTH, 0, ROWS, WIDTH)
    tl.store(out_ptr, _tile_max(_load_raw(logits_ptr, cols, lo, hi)) + thr)


@triton.jit
def group_check(logits_ptr, out_ptr, lo, hi, thr, inv_temp, seed, offset, ROWS: tl.constexpr, WIDTH: tl.constexpr):
    cols, _ = _tile_columns(lo // WIDTH, 0, ROWS, WIDTH)
    tl.store(out_ptr, _max2d(_sanitize(_load_raw(logits_ptr, cols, lo, hi))) + thr)


@triton.jit
def noise_group(logits_ptr, out_ptr, lo, hi, thr, inv_temp, seed, offset, ROWS: tl.constexpr, WIDTH: tl.constexpr):
    cols, groups = _tile_columns(lo // WIDTH, 0, ROWS, WIDTH)
    x = _sanitize(_load_raw(logits_ptr, cols, lo, hi))
    score, col, z = _group_candidate(x, cols, groups, thr, thr, inv_temp, False, seed, offset, (seed * 0).to(tl.uint32),
                                     False)
    tl.store(out_ptr, score + col.to(tl.float32))
'''

# v2 (commit V2_COMMIT): the tile was loaded sanitised and a candidate tile drew noise for every token.
_PROBES_V2 = '''
import triton
import triton.language as tl
from {module} import _load_tile, _max2d, _tile_candidate, _tile_columns


@triton.jit
def empty(logits_ptr, out_ptr, lo, hi, thr, inv_temp, seed, offset, ROWS: tl.constexpr, WIDTH: tl.constexpr):
    tl.store(out_ptr, tl.load(logits_ptr + lo).to(tl.float32) + thr)


@triton.jit
def skip_tile(logits_ptr, out_ptr, lo, hi, thr, inv_temp, seed, offset, ROWS: tl.constexpr, WIDTH: tl.constexpr):
    cols, _ = _tile_columns(lo // WIDTH, 0, ROWS * WIDTH, WIDTH)
    tl.store(out_ptr, _max2d(_load_tile(logits_ptr, cols, lo, hi)) + thr)


@triton.jit
def noise_tile(logits_ptr, out_ptr, lo, hi, thr, inv_temp, seed, offset, ROWS: tl.constexpr, WIDTH: tl.constexpr):
    cols, groups = _tile_columns(lo // WIDTH, 0, ROWS * WIDTH, WIDTH)
    x = _load_tile(logits_ptr, cols, lo, hi)
    score, col, z, min_kept = _tile_candidate(x, cols, groups, thr, thr, inv_temp, False, seed, offset,
                                              (seed * 0).to(tl.uint32), False)
    tl.store(out_ptr, score + col.to(tl.float32))
'''


def _import_source(name, source, tmp):
    path = os.path.join(tmp, f"{name}.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Triton resolves the probes' globals through the module
    spec.loader.exec_module(module)
    return module


def _v2_module(tmp):
    """v2's kernel module, read from git (RowParams imported from its new home)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "show", f"{V2_COMMIT}:minp_kernels/triton_sampler.py"], capture_output=True,
                            text=True, check=True, cwd=root).stdout
    source = source.replace("from ._validation import RowParams", "from minp_kernels.params import RowParams")
    return _import_source("minp_v2_kernels", source, tmp)


def probe_counts(probes, names, rows, width, num_warps, tmp):
    """{probe: pipe counts per thread} for ``[rows, width]`` tiles, the empty probe subtracted."""
    from .sass import compile_for, sass_of

    dtype = torch.float32 if width == 4 else torch.bfloat16
    meta = torch.empty(1, device="meta", dtype=dtype)
    kwargs = dict(logits_ptr=meta, out_ptr=torch.empty(1, device="meta"), lo=0, hi=1 << 20, thr=0.0, inv_temp=1.0,
                  seed=1 << 40, offset=1 << 40, ROWS=rows, WIDTH=width, num_warps=num_warps,
                  enable_fp_fusion=False, maxnreg=128)
    counts = {}
    for name in ("empty", *names):
        # Column bounds aligned as the kernel's (split starts and vocabularies are multiples of 16).
        compiled = compile_for(getattr(probes, name), kwargs, 90, aligned_ints=("lo", "hi"))
        counts[name] = count_pipes(sass_of(compiled, tmp)[1])
    base = counts.pop("empty")
    return {name: {pipe: max(0, c[pipe] - base[pipe]) for pipe in c} for name, c in counts.items()}


# ------------------------------------------------------------------------------------------------
# Simulation of the pass (numpy)
# ------------------------------------------------------------------------------------------------
def family_rows(family, rows, vocab):
    """float32 numpy ``[rows, vocab]`` logits of one of the benchmark's row families and its p_base.

    The families live in ``benchmarks/families.py`` (the model predicts what the benchmark measures),
    so the model runs from a checkout of the repository.
    """
    try:
        from benchmarks.families import FAMILIES, make_logits
    except ImportError as e:  # pragma: no cover - an installed package without its repository
        raise RuntimeError("the cost model needs benchmarks/families.py: run it from the repository root") from e
    return make_logits(family, rows, vocab).numpy(), FAMILIES[family].p_base


@dataclass
class PassStats:
    tiles: int  # tiles per row
    candidate_share: float  # tiles with a token above the running threshold
    noise_groups_per_tile: float  # noise groups per tile (over all tiles)


def simulate_pass(x, delta, block, group, splits):
    """Replay the running-threshold pass over each row's splits; count candidate tiles and noisy groups."""
    rows, vocab = x.shape
    cols_per_split = math.ceil(math.ceil(vocab / block) / splits) * block
    tiles = candidates = noisy = 0
    for start in range(0, vocab, cols_per_split):
        seg = x[:, start:start + cols_per_split]
        pad = (-seg.shape[1]) % block
        seg = np.pad(seg, ((0, 0), (0, pad)), constant_values=-np.inf)
        tile_max = seg.reshape(rows, -1, block).max(-1)
        running = np.maximum.accumulate(tile_max, axis=1)
        thr = running + delta
        cand = tile_max >= thr
        group_max = seg.reshape(rows, -1, block // group, group).max(-1)
        tiles += tile_max.size
        candidates += cand.sum()
        noisy += ((group_max >= thr[..., None]) & cand[..., None]).sum()
    return PassStats(math.ceil(vocab / block), candidates / tiles, noisy / tiles)


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------
def tile_cycles(per_thread, warps, eta):
    """SM clocks of one program's work, given per-thread instruction counts by pipe."""
    issue = sum(per_thread[p] for p in PIPE_RATE) * warps / (ISSUE_PER_CLOCK * eta)
    pipes = max(per_thread[p] * warps / rate for p, rate in PIPE_RATE.items())
    return max(issue, pipes)


def scaled(counts, factor):
    return {p: c * factor for p, c in counts.items()}


def added(*counts):
    return {p: sum(c[p] for c in counts) for p in counts[0]}


def dram_reread_share(batch, vocab, itemsize, block):
    """Share of phase 2's candidate-tile rereads that come from memory rather than L2: the resident
    programs' segments (``PROGRAMS_PER_SM`` per SM, or the whole grid if smaller) against L2."""
    from . import launch

    cols_per_program, splits = launch.plan_splits(batch, vocab, block, SM_COUNT)
    resident = min(batch * splits, launch.PROGRAMS_PER_SM * SM_COUNT)
    working_set = resident * cols_per_program * itemsize
    return max(0.0, 1.0 - L2_BYTES / working_set)


def compute_over_memory(per_tile, tile_bytes, warps, eta, reread_bytes=0.0):
    """Compute clocks of a tile over its memory clocks (below 1: memory-bound); ``reread_bytes``:
    bytes per tile read from memory a second time."""
    memory = (tile_bytes + reread_bytes) / (READ_BYTES_PER_S / SM_COUNT / CLOCK_HZ)
    return tile_cycles(per_tile, warps, eta) / memory


def predict(per_tile, tile_bytes, warps, eta, reread_bytes=0.0):
    """Fraction of copy bandwidth: the copy's memory clocks for a tile (its bytes read once) over the
    kernel's max(memory with rereads, compute) clocks."""
    ratio = compute_over_memory(per_tile, tile_bytes, warps, eta, reread_bytes)
    return tile_bytes / (tile_bytes + reread_bytes) / max(1.0, ratio)


def v2_per_tile(counts, stats):
    return added(counts["skip_tile"], scaled(counts["noise_tile"], stats.candidate_share))


def simulate_two_phase(x, delta, block, group, splits, shared):
    """v3: tiles and groups reaching the threshold of the row max (``shared``) or of each split's max."""
    rows, vocab = x.shape
    cols_per_split = math.ceil(math.ceil(vocab / block) / splits) * block
    row_max = x.max(-1, keepdims=True)
    tiles = candidates = noisy = 0
    for start in range(0, vocab, cols_per_split):
        seg = x[:, start:start + cols_per_split]
        seg = np.pad(seg, ((0, 0), (0, (-seg.shape[1]) % block)), constant_values=-np.inf)
        thr = (row_max if shared else seg.max(-1, keepdims=True)) + delta
        tile_max = seg.reshape(rows, -1, block).max(-1)
        group_max = seg.reshape(rows, -1, block // group, group).max(-1)
        tiles += tile_max.size
        candidates += (tile_max >= thr).sum()
        noisy += (group_max >= thr[..., None]).sum()
    return PassStats(math.ceil(vocab / block), candidates / tiles, noisy / tiles)


def v3_per_tile(counts, stats, groups_per_tile):
    per_candidate = added(counts["next_candidate"], scaled(counts["group_check"], groups_per_tile))
    return added(counts["skip_tile"], scaled(per_candidate, stats.candidate_share),
                 scaled(counts["noise_group"], stats.noise_groups_per_tile))


def fit_eta(per_tile, tile_bytes, warps, measured):
    """The issue efficiency at which the model gives the measured fraction (bisection)."""
    lo, hi = 0.01, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if predict(per_tile, tile_bytes, warps, mid) < measured else (lo, mid)
    return (lo + hi) / 2


def main(rows=16):
    from . import launch

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        v2 = _import_source("minp_v2_probes", _PROBES_V2.format(module=_v2_module(tmp).__name__), tmp)
        v3 = _import_source("minp_v3_probes", _PROBES_V3, tmp)
        for dtype, width in (("float32", 4), ("bfloat16", 8)):
            itemsize = 16 // width
            v2_block, v2_warps = 2048, 8
            v3_block = launch.TILE_BYTES // itemsize
            v3_warps = launch.NUM_WARPS
            v3_group = 32 * v3_warps * width
            v2_counts = probe_counts(v2, ("skip_tile", "noise_tile"), v2_block // width, width, v2_warps, tmp)
            v3_tile = probe_counts(v3, ("skip_tile",), v3_block // width, width, v3_warps, tmp)
            v3_tile.update(probe_counts(v3, ("next_candidate",), launch.MAX_TILES_PER_PROGRAM, width, v3_warps, tmp))
            v3_group_counts = probe_counts(v3, ("group_check", "noise_group"), v3_group // width, width, v3_warps,
                                           tmp)
            v3_counts = {**v3_tile, **v3_group_counts}
            v3_splits = launch.plan_splits(BATCH, VOCAB, v3_block, SM_COUNT)[1]
            out.append(dict(dtype=dtype, itemsize=itemsize, counts_v2=v2_counts, counts_v3=v3_counts,
                            v3_splits=v3_splits, v3_block=v3_block, v3_group=v3_group, v2_block=v2_block,
                            v2_warps=v2_warps, v3_warps=v3_warps))
    # Fitted on v2 fp32 only (v2 at B = 512 ran one program per row: 2 programs per SM, no splits).
    fp32 = out[0]
    gaussian, p_base = family_rows("gaussian", rows, VOCAB)
    v2_stats = simulate_pass(gaussian, math.log(p_base), fp32["v2_block"], 4, 1)
    eta = fit_eta(v2_per_tile(fp32["counts_v2"], v2_stats), fp32["v2_block"] * 4, fp32["v2_warps"],
                  V2_MEASURED["float32"])
    lines = [f"Cost model (sm_90 SASS of probe kernels; H100: {SM_COUNT} SMs, {CLOCK_HZ / 1e9:.3f} GHz, "
             f"{READ_BYTES_PER_S / 1e12:.1f} TB/s; B = {BATCH}, V = {VOCAB}; issue efficiency eta = {eta:.2f}, "
             f"fitted to v2 fp32 = {V2_MEASURED['float32']:.0%} of copy)", ""]
    for r in out:
        lines.append(f"{r['dtype']}: per-thread instructions by pipe (fma/int/xu/lsu/other, barriers)")
        for version, counts in (("v2", r["counts_v2"]), ("v3", r["counts_v3"])):
            for name, c in counts.items():
                total = sum(c[p] for p in PIPE_RATE)
                lines.append(f"  {version} {name:12s} {total:5d} = " + "/".join(str(c[p]) for p in PIPE_RATE)
                             + f", {c['barrier']} BAR")
    lines += ["", "| dtype | family | version | tile / group, splits | threshold | tiles reaching it | noise groups "
              "/ tile | rereads from memory | compute / memory | predicted % of copy | measured (H100) |",
              "|---" * 11 + "|"]
    for r in out:
        itemsize = r["itemsize"]
        for family in FAMILY_NAMES:
            x, p_base = family_rows(family, rows, VOCAB)
            s2 = simulate_pass(x, math.log(p_base), r["v2_block"], 4, 1)
            ratio2 = compute_over_memory(v2_per_tile(r["counts_v2"], s2), r["v2_block"] * itemsize, r["v2_warps"], eta)
            measured = f"{V2_MEASURED[r['dtype']]:.0%}" if family == "gaussian" else "-"
            lines.append(f"| {r['dtype']} | {family} | v2 | {r['v2_block']}, 1 | running | {s2.candidate_share:.1%} | "
                         f"{s2.candidate_share:.2f} (whole tile) | - | {ratio2:.2f} | {1 / max(1, ratio2):.0%} | "
                         f"{measured} |")
            tile_bytes = r["v3_block"] * itemsize
            from_memory = dram_reread_share(BATCH, VOCAB, itemsize, r["v3_block"])
            for shared in (True, False):
                s3 = simulate_two_phase(x, math.log(p_base), r["v3_block"], r["v3_group"], r["v3_splits"], shared)
                reread = s3.candidate_share * tile_bytes * from_memory
                per_tile = v3_per_tile(r["counts_v3"], s3, r["v3_block"] // r["v3_group"])
                ratio3 = compute_over_memory(per_tile, tile_bytes, r["v3_warps"], eta, reread)
                fraction = predict(per_tile, tile_bytes, r["v3_warps"], eta, reread)
                lines.append(f"| {r['dtype']} | {family} | v3 | {r['v3_block']} / {r['v3_group']}, {r['v3_splits']} | "
                             f"{'shared' if shared else 'own'} | {s3.candidate_share:.1%} | "
                             f"{s3.noise_groups_per_tile:.3f} | {reread / tile_bytes:+.1%} of the bytes | "
                             f"{ratio3:.2f} | {fraction:.0%} | pending |")
    print("\n".join(lines))
    return 0
