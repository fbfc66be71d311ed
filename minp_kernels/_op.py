"""``torch.ops.minp_kernels.sample``: the sampler as a torch.library custom op with a fake
implementation, so ``torch.compile(fullgraph=True)`` traces a decode step that calls
:func:`minp_kernels.sample` without a graph break (and CUDA graphs capture it like any op).

Scalars reach the op as tensors; ``seed_shared`` keeps the scalar-seed stream layout (row index in
the Philox counter), so the op draws exactly what the eager call draws.
"""

import functools

import torch

from .params import RowParams
from .rows import row_tensor
from .torch_sampler import sample_torch


@functools.cache
def _sample_triton():
    # Imported on first use (triton is heavy to import), then looked up for free on every call.
    from .launch import sample_triton

    return sample_triton


def run_backend(backend, logits_2d, params: RowParams, temperature_first, return_logprobs):
    """(tokens, logprobs or None) from the Triton kernel or the torch sampler."""
    if backend == "triton":
        return _sample_triton()(logits_2d, params, temperature_first, return_logprobs)
    return sample_torch(logits_2d, params, temperature_first, return_logprobs)


@torch.library.custom_op("minp_kernels::sample", mutates_args=())
def sample_op(logits: torch.Tensor, p_base: torch.Tensor, temp: torch.Tensor, seed: torch.Tensor,
              offset: torch.Tensor, seed_shared: bool, temperature_first: bool, return_logprobs: bool,
              backend: str, top_k: torch.Tensor | None = None, top_p: torch.Tensor | None = None,
              top_p_after_min_p: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    batch = logits.shape[0]
    params = RowParams(p_base.expand(batch), temp.expand(batch), seed.expand(batch) if not seed_shared else seed,
                       offset.expand(batch), seed_shared, top_k.expand(batch) if top_k is not None else None,
                       top_p.expand(batch) if top_p is not None else None, top_p_after_min_p)
    tokens, logprobs = run_backend(backend, logits, params, temperature_first, return_logprobs)
    return tokens, logprobs if logprobs is not None else logits.new_empty(0, dtype=torch.float32)


@sample_op.register_fake
def _(logits, p_base, temp, seed, offset, seed_shared, temperature_first, return_logprobs, backend, top_k=None,
      top_p=None, top_p_after_min_p=False):
    batch = logits.shape[0]
    return (logits.new_empty(batch, dtype=torch.int64),
            logits.new_empty(batch if return_logprobs else 0, dtype=torch.float32))


def as_tensor(value, device, dtype):
    """A scalar or tensor parameter as a 1-D tensor the op accepts (``[1]`` broadcasts over rows)."""
    if isinstance(value, torch.Tensor):
        return value
    return row_tensor(value, 1, device, dtype)  # floats rounded as the eager launch rounds them


def call_op(logits_2d, params: RowParams, temperature_first, return_logprobs, backend):
    device = logits_2d.device
    seed = params.seed
    if isinstance(seed, torch.Tensor) and params.seed_shared:
        seed = seed.reshape(1)
    tokens, logprobs = torch.ops.minp_kernels.sample(
        logits_2d, as_tensor(params.p_base, device, torch.float64), as_tensor(params.temp, device, torch.float32),
        as_tensor(seed, device, torch.int64), as_tensor(params.offset, device, torch.int64), params.seed_shared,
        temperature_first, return_logprobs, backend,
        as_tensor(params.top_k, device, torch.int64) if params.top_k is not None else None,
        as_tensor(params.top_p, device, torch.float64) if params.top_p is not None else None,
        params.top_p_after_min_p)
    return tokens, (logprobs if return_logprobs else None)
