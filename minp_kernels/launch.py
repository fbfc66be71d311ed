"""Launcher of the fused min-p kernels: launch plan, keyword arguments, outputs.

Every batch size is one launch of :func:`~minp_kernels.kernels.minp_sample_kernel`.  The host path
is kept short because serving stacks call the sampler eagerly: the launch plan is plain integer
math cached per (device, shape class), and the only per-call allocations are the outputs and, for
split rows, one zeroed workspace (``benchmarks/NOTES.md``, "Split workspace", argues the design).
Every launch goes through :func:`launch_kernel`.
"""

import functools
import math
import struct
from typing import NamedTuple

import torch

from .kernels import SHARD_RECORD_WORDS, SPLIT_RECORD_WORDS, minp_sample_kernel, minp_shard_kernel
from .params import RowParams
from .rows import float_rows, has_filters, params_constants, row_threshold

try:  # Triton >= 3.0; decided when the kernels are decorated.
    from triton.runtime.interpreter import InterpretedFunction
except ImportError:  # pragma: no cover
    InterpretedFunction = ()

INTERPRETED = isinstance(minp_sample_kernel, InterpretedFunction) if InterpretedFunction else False

TILE_BYTES = 4096  # logits per tile: 256 rows of 16 bytes (1024 fp32 or 2048 fp16 / bf16 tokens)
NUM_WARPS = 1  # a noise group is one 16-byte row per thread (32 x 16 bytes); no block-wide barriers
# Register ceiling handed to ptxas (no spills on sm_80 / sm_90 at this ceiling: `python -m minp_kernels.aot`);
# 16 one-warp programs of 128 registers fill an SM's register file.
MAX_REGISTERS = 128
MAX_TILES_PER_PROGRAM = 64  # bounds the per-program tile records kept in registers
PROGRAMS_PER_SM = 16  # split rows until the grid has about this many programs per SM
# Polls of a row's sync word while a split waits for the others' maxima (each an L2 round trip,
# about 0.5-1 us): enough for splits that started together, short enough that a split whose sibling
# runs a wave later loses little before it goes on without it (the merge then rescans).  Not yet
# measured on a GPU.  The interpreter runs programs one at a time, so it never waits.
SPIN_POLLS = 32
# Split records the merge holds in registers at once (it loops over chunks): fixed, so the registers
# do not grow with the vocabulary (a chunk of 4096 spilled 3.5 KB per thread on sm_90).
MERGE_CHUNK = 128
MAX_SPLITS = 0x7FFF  # the sync word counts arrivals in 16 bits and finished splits above
# Triton's CPU interpreter costs per block operation, not per element: by default it runs 8 KB tiles
# of one noise group each (the same code path; tests pass block / num_warps to cover several
# groups per tile).
INTERPRETER_TILE_BYTES = 8192
INTERPRETER_NUM_WARPS = 8


def launch_kernel(kernel, grid, kwargs):
    """Launch ``kernel`` on ``grid`` with the keyword arguments in the dict ``kwargs`` (the one place
    every launch goes through, so a host-overhead benchmark can replace it with a no-op)."""
    kernel[grid](**kwargs)


def check_device(logits):
    """The kernels run on CUDA tensors, or on CPU tensors under Triton's interpreter only (two
    cheap attribute reads: it runs on every launch)."""
    if not (logits.is_cuda or INTERPRETED):
        raise ValueError(
            f"backend: 'triton' expected CUDA tensors or TRITON_INTERPRET=1 set before importing "
            f"minp_kernels, got tensors on {logits.device} without the interpreter"
        )


def _cdiv(a, b):
    return -(-a // b)


def _next_power_of_2(n):
    # Plain integer math: triton.cdiv / next_power_of_2 are ConstexprFunctions, ~5 us per host call.
    return 1 << max(n - 1, 0).bit_length()


@functools.cache
def _sm_count(device):
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def plan_splits(batch, vocab, block, sm_count, num_splits=None):
    """(columns per program, number of splits per row).

    Small batches split each row so that the grid fills the GPU in one wave (rounding the split count
    down: 2,560 programs for 2,112 slots would take two waves); any row splits so that one program
    never holds more than ``MAX_TILES_PER_PROGRAM`` tile records.
    """
    tiles = _cdiv(vocab, block)
    if num_splits is None:
        num_splits = max(1, min(PROGRAMS_PER_SM * sm_count // max(batch, 1), tiles))
    num_splits = max(num_splits, _cdiv(tiles, MAX_TILES_PER_PROGRAM))
    cols_per_program = _cdiv(tiles, num_splits) * block
    splits = _cdiv(vocab, cols_per_program)
    if splits > MAX_SPLITS:  # only an explicit num_splits gets here (MAX_VOCAB needs 32764 at most)
        raise ValueError(f"num_splits: expected at most {MAX_SPLITS} splits per row, got {splits}")
    return cols_per_program, splits


class LaunchPlan(NamedTuple):
    grid: tuple
    cols_per_program: int
    num_splits: int
    constexprs: dict  # tile shape and record sizes
    options: dict  # num_warps and compiler options
    workspace_words: int  # int32 words of the zeroed split workspace of a launch (0: rows are not split)
    constant_arguments: dict  # (argument kinds) -> the kernel arguments that do not change per call


def _compile_options(num_warps):
    # No FMA contraction: the score x * (1/T) + G must round exactly as the torch reference does.
    if INTERPRETED:
        return dict(num_warps=num_warps)
    return dict(num_warps=num_warps, enable_fp_fusion=False, maxnreg=MAX_REGISTERS)


def _tile_shape(vocab, itemsize, block, num_warps):
    """(TILE_ROWS, GROUP_ROWS, WIDTH): tile and noise-group rows of WIDTH tokens (16 bytes)."""
    width = 16 // itemsize
    if block is None:
        tile_bytes = INTERPRETER_TILE_BYTES if INTERPRETED else TILE_BYTES
        block = min(tile_bytes // itemsize, max(16, _next_power_of_2(vocab)))
    tile_rows = max(1, block // width)
    return tile_rows, min(tile_rows, 32 * num_warps), width


def _default_num_warps():
    return INTERPRETER_NUM_WARPS if INTERPRETED else NUM_WARPS


@functools.lru_cache(maxsize=4096)
def launch_plan(device, batch, vocab, itemsize, num_splits=None, block=None, num_warps=None, sm_count=None):
    """The sample kernel's grid, constexprs and options for one (device, shape class); cached.

    The constexprs depend on the vocabulary, the dtype and whether rows are split, not on the batch
    size: the tile records are sized for the most tiles a program may get and the merge for the most
    splits a row may get, so a server meets at most two compiled variants per vocabulary and dtype
    (a few registers more than the batch's own maxima would take).  ``sm_count`` overrides the
    device's (``aot.py`` plans for an H100 without one).
    """
    num_warps = num_warps or _default_num_warps()
    tile_rows, group_rows, width = _tile_shape(vocab, itemsize, block, num_warps)
    block = tile_rows * width
    sm_count = sm_count or _sm_count(device)
    cols_per_program, splits = plan_splits(batch, vocab, block, sm_count, num_splits)
    most_splits = max(splits, min(_cdiv(vocab, block), PROGRAMS_PER_SM * sm_count))
    constexprs = dict(HAS_SPLITS=splits > 1, MAX_TILES=MAX_TILES_PER_PROGRAM,
                      MERGE_CHUNK=min(_next_power_of_2(most_splits), MERGE_CHUNK),
                      SPIN_POLLS=0 if INTERPRETED else SPIN_POLLS, TILE_ROWS=tile_rows, GROUP_ROWS=group_rows,
                      WIDTH=width)
    # Per row a sync word and a published-max key, then the records (kernels.py, "Split workspace").
    workspace_words = batch * (2 + splits * SPLIT_RECORD_WORDS.value) if splits > 1 else 0
    return LaunchPlan((batch * splits,), cols_per_program, splits, constexprs, _compile_options(num_warps),
                      workspace_words, {})


def plan_class(plan: LaunchPlan):
    """What selects a compiled variant of the sample kernel besides the dtype, the argument kinds and
    the flags: its constexprs."""
    return tuple(sorted(plan.constexprs.items()))


def plan_classes(device, vocab, itemsize, max_batch, sm_count=None):
    """``{plan class: smallest batch size in 1..max_batch with that class}``: the variants a server
    meets for this vocabulary and dtype (:func:`minp_kernels.warmup` compiles one launch of each)."""
    classes = {}
    for batch in range(1, max_batch + 1):
        classes.setdefault(plan_class(launch_plan(device, batch, vocab, itemsize, sm_count=sm_count)), batch)
    return classes


@functools.cache
def unused_pointer(device):
    """An int64 stand-in for the pointer arguments a launch does not read (never written)."""
    return torch.zeros(1, device=device, dtype=torch.int64)


@functools.lru_cache(maxsize=1024)
def _log_p_base(p_base):
    """ln(p_base) rounded once to float32 (struct rounds to nearest even, as torch's cast)."""
    return struct.unpack("f", struct.pack("f", math.log(p_base) if p_base > 0 else -math.inf))[0]


# Per-row parameters: (field of RowParams, pointer, stride, scalar arguments, flag) kernel argument names.
# A scalar seed or offset is two int32 words (low, high): one argument type whatever its value.
ROW_PARAMETERS = (("p_base", "p_base_ptr", "p_base_stride", ("log_p_base",), "P_BASE_FROM_PTR"),
                  ("temp", "temp_ptr", "temp_stride", ("temp",), "TEMP_FROM_PTR"),
                  ("seed", "seed_ptr", "seed_stride", ("seed_lo", "seed_hi"), "SEED_FROM_PTR"),
                  ("offset", "offset_ptr", "offset_stride", ("offset_lo", "offset_hi"), "OFFSET_FROM_PTR"))


def _argument_kinds(params: RowParams):
    """Which per-row parameters are tensors (the constexpr flags), whether rows share a seed, and
    whether top-k / top-p cut the kept set (a per-row threshold)."""
    return (isinstance(params.p_base, torch.Tensor), isinstance(params.temp, torch.Tensor),
            isinstance(params.seed, torch.Tensor), isinstance(params.offset, torch.Tensor), params.seed_shared,
            has_filters(params))


def _row_constant_arguments(kinds, float_dummy, int_dummy):
    """Per-row parameter arguments that depend only on their kinds: the flags, and stand-ins for the
    pointer (scalar parameter) or the scalars (tensor parameter) that the kernel does not read."""
    args = {"SEED_SHARED": kinds[4]}
    for (field, ptr, stride, scalars, flag), from_ptr in zip(ROW_PARAMETERS, kinds[:4], strict=True):
        args[flag] = from_ptr
        args[ptr], args[stride] = float_dummy if field in ("p_base", "temp") else int_dummy, 0
        for scalar in scalars:
            args[scalar] = 0 if field in ("seed", "offset") else 0.0
    return args


def _words(value):
    """(low, high) int32 words of a signed 64-bit int, each as a signed Python int."""
    low = value & 0xFFFFFFFF
    return low - (1 << 32) if low >= 1 << 31 else low, value >> 32


def _row_stride(value, batch):
    """Stride of a per-row tensor: 0 broadcasts a 1-element tensor over a batch; a batch of one row
    passes 1 (any stride reads row 0), so that B = 1 runs the variant the JIT compiled for B > 1."""
    return value.stride(0) if value.shape[0] > 1 else (0 if batch > 1 else 1)


def _fill_row_values(args, params: RowParams, kinds, batch):
    """Write the per-call per-row values into ``args``: a tensor's pointer and stride, or the scalar
    (``p_base`` as ``log_p_base``, seeds and offsets as words).  Unrolled: it runs per call."""
    p_base, temp, seed, offset = params.p_base, params.temp, params.seed, params.offset
    if kinds[0]:
        args["p_base_ptr"], args["p_base_stride"] = p_base, _row_stride(p_base, batch)
    else:
        args["log_p_base"] = _log_p_base(p_base)
    if kinds[1]:
        args["temp_ptr"], args["temp_stride"] = temp, _row_stride(temp, batch)
    else:
        args["temp"] = float(temp)
    if kinds[2]:
        args["seed_ptr"], args["seed_stride"] = seed, _row_stride(seed, batch)
    else:
        args["seed_lo"], args["seed_hi"] = _words(seed)
    if kinds[3]:
        args["offset_ptr"], args["offset_stride"] = offset, _row_stride(offset, batch)
    else:
        args["offset_lo"], args["offset_hi"] = _words(offset)


def row_arguments(params: RowParams, batch, float_dummy, int_dummy):
    """Kernel arguments of the per-row parameters, shared by every kernel (see ``ROW_PARAMETERS``)."""
    kinds = _argument_kinds(params)
    args = _row_constant_arguments(kinds, float_dummy, int_dummy)
    _fill_row_values(args, params, kinds, batch)
    return args


def _launch_on(logits, kernel, grid, kwargs):
    """Launch on the logits' device, making it current only when it is not (a tensor-parallel
    worker's logits on ``cuda:1`` while ``cuda:0`` is current); no context switch otherwise."""
    if logits.is_cuda and logits.get_device() != torch.cuda.current_device():
        with torch.cuda.device(logits.get_device()):
            launch_kernel(kernel, grid, kwargs)
    else:
        launch_kernel(kernel, grid, kwargs)


def sample_kernel_arguments(logits_2d, params: RowParams, temperature_first, return_logprobs, plan: LaunchPlan,
                            tokens, logprobs, workspace, threshold=None):
    """Keyword arguments of :func:`minp_sample_kernel` (also what ``aot.py`` compiles from).

    What depends only on the plan and the argument kinds is built once and cached in the plan; a
    call copies it and writes the tensors and per-row values.  ``workspace``: the launch's zeroed
    int32 split workspace of ``plan.workspace_words`` words, or None when rows are not split;
    ``threshold``: the rows' top-k / top-p thresholds (float32 ``[B]``), when ``params`` has filters.
    """
    kinds = _argument_kinds(params)
    key = (kinds, temperature_first, return_logprobs)
    constant = plan.constant_arguments.get(key)
    if constant is None:
        int_dummy = unused_pointer(logits_2d.device)
        float_dummy = int_dummy.view(torch.float32)
        constant = dict(
            vocab_size=logits_2d.shape[1], cols_per_program=plan.cols_per_program,
            **_row_constant_arguments(kinds, float_dummy, int_dummy), logprobs_ptr=float_dummy,
            THRESHOLD_FROM_PTR=kinds[5], threshold_ptr=float_dummy,
            split_workspace_ptr=int_dummy.view(torch.int32), TEMPERATURE_FIRST=bool(temperature_first),
            RETURN_LOGPROBS=bool(return_logprobs), **plan.constexprs, **plan.options)
        plan.constant_arguments[key] = constant
    args = dict(constant)
    args["logits_ptr"], args["logits_row_stride"], args["tokens_ptr"] = logits_2d, logits_2d.stride(0), tokens
    if return_logprobs:
        args["logprobs_ptr"] = logprobs
    if workspace is not None:
        args["split_workspace_ptr"] = workspace
    if threshold is not None:
        args["threshold_ptr"] = threshold
    _fill_row_values(args, params, kinds, logits_2d.shape[0])
    return args


def filter_floor(logits_2d, params: RowParams, temperature_first):
    """The rows' whole kept-set thresholds with top-k / top-p (:func:`minp_kernels.rows.row_threshold`,
    the torch backend's own), ``+inf`` on invalid rows, for the kernel's ``threshold_ptr``.

    Computed with torch on the logits' device before the launch (a row max, and a sort of the
    candidates on CUDA): the kernel then draws exactly the torch backend's token.  Folding this
    selection into the kernel's own pass is the next step (``benchmarks/NOTES.md``).
    """
    x, row_max = float_rows(logits_2d)
    inv_temp, delta, greedy = params_constants(params, x.shape[0], x.device, temperature_first)
    threshold = row_threshold(x, row_max, delta, inv_temp, greedy, params, temperature_first)
    return threshold.nan_to_num(nan=float("inf")).contiguous()


def sample_triton(logits_2d, params: RowParams, temperature_first=False, return_logprobs=False, *,
                  num_splits=None, block=None, num_warps=None):
    """Launch the fused kernel; see :func:`minp_kernels.sample` for the contract.

    ``num_splits``, ``block`` (columns per tile) and ``num_warps`` override the launch plan (tests
    use them to cover every path, the benchmark to tune).
    """
    batch, vocab = logits_2d.shape
    device = logits_2d.device
    check_device(logits_2d)
    plan = launch_plan(device, batch, vocab, logits_2d.element_size(), num_splits, block, num_warps)
    tokens = torch.empty(batch, device=device, dtype=torch.int64)
    logprobs = torch.empty(batch, device=device, dtype=torch.float32) if return_logprobs else tokens
    # Zeroed per launch on the current stream, from the caching allocator: under CUDA-graph capture
    # the memset is captured with the graph and the memory belongs to the graph's pool.
    workspace = torch.zeros(plan.workspace_words, device=device, dtype=torch.int32) if plan.workspace_words else None
    threshold = filter_floor(logits_2d, params, temperature_first) if has_filters(params) else None
    kwargs = sample_kernel_arguments(logits_2d, params, temperature_first, return_logprobs, plan, tokens, logprobs,
                                     workspace, threshold)
    _launch_on(logits_2d, minp_sample_kernel, plan.grid, kwargs)
    return tokens, (logprobs if return_logprobs else None)


def shard_kernel_arguments(logits_2d, row_max, params: RowParams, temperature_first, token_base, records,
                           num_warps=None):
    """Keyword arguments of :func:`minp_shard_kernel` (also what ``aot.py`` compiles from)."""
    num_warps = num_warps or _default_num_warps()
    tile_rows, group_rows, width = _tile_shape(logits_2d.shape[1], logits_2d.element_size(), None, num_warps)
    threshold = params.threshold if has_filters(params) else None
    return dict(
        logits_ptr=logits_2d, logits_row_stride=logits_2d.stride(0), vocab_size=logits_2d.shape[1],
        token_base=token_base, row_max_ptr=row_max,
        **row_arguments(params, logits_2d.shape[0], records, unused_pointer(logits_2d.device)),
        threshold_ptr=(threshold.nan_to_num(nan=float("inf")).float().contiguous() if threshold is not None
                       else records), THRESHOLD_FROM_PTR=threshold is not None,
        shard_records_ptr=records, shard_columns_ptr=records.view(torch.int32),
        TEMPERATURE_FIRST=bool(temperature_first), TILE_ROWS=tile_rows, GROUP_ROWS=group_rows, WIDTH=width,
        **_compile_options(num_warps))


def shard_candidates_triton(logits_2d, row_max, params: RowParams, temperature_first, token_base, num_warps=None):
    """Per-row (score, logit, normaliser part) float32 ``[B, 3]`` and local column ``[B]`` of a shard."""
    batch = logits_2d.shape[0]
    check_device(logits_2d)
    records = torch.empty((batch, SHARD_RECORD_WORDS.value), device=logits_2d.device, dtype=torch.float32)
    kwargs = shard_kernel_arguments(logits_2d, row_max.float().contiguous(), params, temperature_first, token_base,
                                    records, num_warps)
    _launch_on(logits_2d, minp_shard_kernel, (batch,), kwargs)
    return records[:, :3], records.view(torch.int32)[:, 3].to(torch.int64)
