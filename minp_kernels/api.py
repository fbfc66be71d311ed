"""Public entry point: :func:`sample`."""

import torch

from ._op import call_op, run_backend
from ._validation import check_values_strict, validate_backend, validate_logits, validate_params


def sample(logits, p_base, temp, *, seed=None, offset=0, generator=None, temperature_first=False,
           return_logprobs=False, backend="auto", strict=False):
    """Draw one token per row with min-p sampling, fused in one pass over the logits.

    Keeps the tokens whose probability is at least ``p_base`` times the row's largest
    (``logit >= max + ln(p_base)``), then samples among them at temperature ``temp`` with the
    Gumbel-max trick (Nguyen et al., arXiv 2407.01082).

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]`` or ``[V]``, float32 / float16 / bfloat16, CPU or CUDA, any row stride.
    p_base : float or torch.Tensor
        Min-p base in ``[0, 1]``, a scalar or a float tensor ``[B]`` on the logits' device.
        ``0`` samples from all finite logits; ``1`` keeps only the tokens equal to the max.
    temp : float or torch.Tensor
        Temperature ``>= 0``, scalar or ``[B]``; ``0`` is greedy (lowest index among ties).
    seed, offset : int or torch.Tensor, optional
        Philox key and counter (e.g. request seed and decode step), Python ints or int64 tensors
        ``[B]``.  A row with its own seed draws the same token whatever batch it sits in.  With
        ``seed=None`` one seed is drawn on the device from ``generator`` (no host sync) and the
        row index keeps rows independent.
    generator : torch.Generator, optional
        Source of the seed when ``seed`` is None (default: torch's generator of that device).
    temperature_first : bool
        Threshold on the tempered distribution, ``logit >= max + temp * ln(p_base)``
        (Hugging Face / vLLM / SGLang order), instead of the paper's untempered one.
    return_logprobs : bool
        Also return each token's log-probability under the final (truncated, tempered) distribution.
    backend : {"auto", "triton", "torch"}
        ``"auto"``: Triton on CUDA, torch on CPU.  ``"triton"`` on CPU needs ``TRITON_INTERPRET=1``.
    strict : bool
        Check tensor ``p_base`` / ``temp`` values and raise on rows without a finite logit
        (syncs with the device; the default path never does).

    Returns
    -------
    torch.Tensor or tuple of torch.Tensor
        int64 tokens ``[B]`` (0-d for 1-D logits) on the logits' device, ``-1`` for a row with no
        finite logit; with ``return_logprobs`` also float32 log-probabilities of the same shape
        (NaN where the token is ``-1``, 0 for greedy rows).

    Examples
    --------
    >>> import torch, minp_kernels
    >>> logits = torch.tensor([[2.0, 1.9, -3.0, 0.5]])
    >>> tokens = minp_kernels.sample(logits, p_base=0.1, temp=1.0, seed=1234)
    >>> tokens.shape, tokens.dtype, tokens.item() in (0, 1, 3)
    (torch.Size([1]), torch.int64, True)
    """
    logits_2d, was_1d = validate_logits(logits)
    backend = validate_backend(backend, logits_2d.device)
    params = validate_params(logits_2d, p_base, temp, seed, offset, generator)
    if strict:
        check_values_strict(logits_2d, params)
    if logits_2d.shape[0] == 0:
        tokens, logprobs = (torch.empty(0, dtype=torch.int64, device=logits_2d.device),
                            torch.empty(0, dtype=torch.float32, device=logits_2d.device))
    elif torch.compiler.is_compiling():  # opaque to dynamo / inductor: no graph break, same tokens
        tokens, logprobs = call_op(logits_2d, params, temperature_first, return_logprobs, backend)
    else:
        tokens, logprobs = run_backend(backend, logits_2d, params, temperature_first, return_logprobs)
    if was_1d:
        tokens = tokens[0]
        logprobs = logprobs[0] if logprobs is not None else None
    return (tokens, logprobs) if return_logprobs else tokens
