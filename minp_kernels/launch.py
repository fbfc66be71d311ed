"""Launcher of the fused min-p kernels: launch plan, kernel arguments, outputs.

One launch samples the whole batch; a second, tiny launch merges row splits when a small batch is
spread over many programs.
"""

import math
import struct

import torch
import triton

from .kernels import _minp_merge_kernel, _minp_sample_kernel, _minp_shard_kernel
from .params import RowParams

try:  # Triton >= 3.0; decided when the kernels are decorated.
    from triton.runtime.interpreter import InterpretedFunction
except ImportError:  # pragma: no cover
    InterpretedFunction = ()

FLT_MAX = 3.4028234663852886e38
BLOCK_DEFAULT = 2048  # columns per tile: 8 per thread keeps Philox under 100 registers, no spills
NUM_WARPS = 8
# Register ceiling handed to ptxas: without it ptxas picked 80 registers and spilled in the merge
# kernel on sm_90 (and at other warp counts on sm_80); 128 x 256 threads still fits 2 programs per SM.
MAX_REGISTERS = 128
MAX_TILES_PER_PROGRAM = 64  # bounds the per-program tile records kept in registers
PROGRAMS_PER_SM = 2  # split rows until the grid has about this many programs per SM

INTERPRETED = isinstance(_minp_sample_kernel, InterpretedFunction) if InterpretedFunction else False


_SM_COUNT = {}


def check_device(device):
    """The kernels run on CUDA tensors, or on CPU tensors under Triton's interpreter only."""
    if device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            f"backend: 'triton' expected CUDA tensors or TRITON_INTERPRET=1 set before importing "
            f"minp_kernels, got tensors on {device} without the interpreter"
        )


def _sm_count(device):
    if device.type != "cuda":
        return 1
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def plan_splits(batch, vocab, block, sm_count, num_splits=None):
    """Columns per program and number of splits per row.

    Small batches split each row so the grid fills the GPU; any row splits so that one program
    never holds more than ``MAX_TILES_PER_PROGRAM`` tile records.
    """
    tiles = triton.cdiv(vocab, block)
    if num_splits is None:
        num_splits = max(1, min(triton.cdiv(PROGRAMS_PER_SM * sm_count, max(batch, 1)), tiles))
    num_splits = max(num_splits, triton.cdiv(tiles, MAX_TILES_PER_PROGRAM))
    cols_per_program = triton.cdiv(tiles, num_splits) * block
    return cols_per_program, triton.cdiv(vocab, cols_per_program)


def _block_for(vocab):
    """Tile columns: the default, or the vocabulary rounded up to a power of two when smaller."""
    return min(BLOCK_DEFAULT, max(16, triton.next_power_of_2(vocab)))


def _width(logits_2d):
    """Tokens per tile row: 16 bytes of logits (4 fp32 or 8 fp16 / bf16)."""
    return 16 // logits_2d.element_size()


def _launch_options(num_warps):
    # No FMA contraction: the score x * (1/T) + G must round exactly as the torch reference does.
    if INTERPRETED:
        return dict(num_warps=num_warps)
    return dict(num_warps=num_warps, enable_fp_fusion=False, maxnreg=MAX_REGISTERS)


def _row_arguments(logits_2d, params: RowParams, temperature_first, return_logprobs, dummy):
    """Kernel arguments and constexpr flags for the per-row parameters (shared by every kernel)."""
    if isinstance(params.p_base, torch.Tensor):
        p_args = (params.p_base, params.p_base.stride(0), 0.0, True)
    else:
        log_p = math.log(params.p_base) if params.p_base > 0 else float("-inf")
        # Round ln(p_base) to float32 on the host (struct rounds to nearest, as torch's cast does).
        p_args = (logits_2d, 0, struct.unpack("f", struct.pack("f", log_p))[0], False)
    t_ptr, t_stride, t_value, t_per_row = _scalar_or_ptr(params.temp, logits_2d)
    s_ptr, s_stride, s_value, s_from_ptr = _scalar_or_ptr(params.seed, dummy)
    o_ptr, o_stride, o_value, o_from_ptr = _scalar_or_ptr(params.offset, dummy)
    row_args = (p_args[0], p_args[1], p_args[2], t_ptr, t_stride, float(t_value),
                s_ptr, s_stride, s_value, o_ptr, o_stride, o_value)
    flags = dict(P_PER_ROW=p_args[3], TEMP_PER_ROW=t_per_row, SEED_FROM_PTR=s_from_ptr,
                 SEED_SHARED=params.seed_shared, OFFSET_FROM_PTR=o_from_ptr,
                 TEMPERATURE_FIRST=bool(temperature_first), RETURN_LOGPROBS=bool(return_logprobs))
    return row_args, flags


def shard_candidates_triton(logits_2d, row_max, params: RowParams, temperature_first, token_base, num_warps=NUM_WARPS):
    """Per-row (score, logit, normaliser part) float32 ``[B, 3]`` and local column ``[B]`` of a shard."""
    batch, vocab = logits_2d.shape
    check_device(logits_2d.device)
    out = torch.empty((batch, 4), device=logits_2d.device, dtype=torch.float32)
    row_args, flags = _row_arguments(logits_2d, params, temperature_first, True, out)
    block = _block_for(vocab)
    _minp_shard_kernel[(batch,)](logits_2d, logits_2d.stride(0), vocab, token_base, row_max.float().contiguous(),
                                 *row_args, out, out.view(torch.int32), **flags, BLOCK=block,
                                 WIDTH=_width(logits_2d), **_launch_options(num_warps))
    return out[:, :3], out.view(torch.int32)[:, 3].to(torch.int64)


def _scalar_or_ptr(value, dummy):
    """(pointer, stride, scalar, from_pointer) kernel arguments for a scalar-or-tensor parameter."""
    if isinstance(value, torch.Tensor):
        return value, value.stride(0) if value.shape[0] > 1 else 0, 0, True
    return dummy, 0, value, False


def sample_triton(logits_2d, params: RowParams, temperature_first=False, return_logprobs=False,
                  num_splits=None, block=None, num_warps=NUM_WARPS):
    """Launch the fused kernel; see :func:`minp_kernels.sample` for the contract.

    ``num_splits``, ``block`` and ``num_warps`` override the launch plan (tests use them to cover
    every path, the benchmark to tune).
    """
    batch, vocab = logits_2d.shape
    device = logits_2d.device
    check_device(device)
    block = block or _block_for(vocab)
    cols_per_program, splits = plan_splits(batch, vocab, block, _sm_count(device), num_splits)
    max_tiles = triton.next_power_of_2(cols_per_program // block)

    tokens = torch.empty(batch, device=device, dtype=torch.int64)
    logprobs = torch.empty(batch, device=device, dtype=torch.float32) if return_logprobs else tokens
    row_args, flags = _row_arguments(logits_2d, params, temperature_first, return_logprobs, tokens)
    launch = _launch_options(num_warps)

    split = splits > 1
    # One allocation holds the split records: 5 float32 words and the column as int32.
    partial = torch.empty((batch, splits, 6) if split else (1,), device=device, dtype=torch.float32)
    partial_col = partial.view(torch.int32)
    _minp_sample_kernel[(batch, splits)](
        logits_2d, logits_2d.stride(0), vocab, cols_per_program, *row_args,
        tokens, logprobs, partial, partial_col, **flags, SPLIT=split, BLOCK=block, MAX_TILES=max_tiles,
        WIDTH=_width(logits_2d), **launch)
    if split:
        _minp_merge_kernel[(batch,)](
            logits_2d, logits_2d.stride(0), vocab, cols_per_program, splits, *row_args,
            tokens, logprobs, partial, partial_col, **flags, BLOCK=block,
            MAX_SPLITS=triton.next_power_of_2(splits), WIDTH=_width(logits_2d), **launch)
    return tokens, (logprobs if return_logprobs else None)
