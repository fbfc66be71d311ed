"""Exact torch reference for min-p sampling.

Everything here is plain torch, runs on any device, and defines the semantics the Triton kernel
must reproduce bit for bit:

* ``x``: logits in float32, NaN read as ``-inf``, ``+inf`` clamped to the largest float32.
* ``m = max(x)``; kept set ``x >= m + delta`` with ``delta = ln(p_base)`` (paper order) or
  ``temp * ln(p_base)`` (``temperature_first``), and ``x > -inf``.
* draw ``argmax over kept i of max(x_i * (1/temp) + G_i, -FLT_MAX)``, lowest index on ties, with
  ``G_i`` from :func:`minp_kernels.philox.gumbel_noise`; ``temp == 0`` (or ``1/temp`` overflowing)
  is greedy: ``argmax x``.
"""

import torch

from .params import RowParams
from .philox import gumbel_noise

FLT_MAX = torch.finfo(torch.float32).max
NEG_INF = float("-inf")


def sanitize_logits(logits_2d):
    """float32 copy with NaN -> -inf and +inf -> FLT_MAX (so +inf tokens stay comparable)."""
    x = logits_2d.float()
    return torch.where(torch.isnan(x), NEG_INF, x).clamp_max(FLT_MAX)


def row_tensor(value, batch, device, dtype):
    """A scalar or ``[B]`` tensor parameter as a ``[B]`` tensor of ``dtype`` (``[1]`` broadcasts)."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype).expand(batch)
    return torch.full((batch,), value, device=device, dtype=dtype)


def row_constants(p_base, temp, temperature_first):
    """Per-row ``(inv_temp, delta, greedy)``, float32, exactly as the kernel computes them.

    ``ln(p_base)`` is taken in float64 and rounded once to float32, ``1/temp`` is an IEEE float32
    division, and ``delta`` is the threshold's offset from the row max.
    """
    log_p = torch.log(p_base.double()).float()
    temp = temp.float()
    inv_temp = torch.ones_like(temp) / temp
    greedy = inv_temp == float("inf")
    delta = torch.where(log_p == 0, 0.0, temp * log_p) if temperature_first else log_p
    return inv_temp, torch.where(greedy, 0.0, delta), greedy


def _prepare(logits_2d, params: RowParams, temperature_first, row_max=None):
    """Sanitised logits, row max (given, for a vocabulary shard), kept mask and row constants."""
    batch, device = logits_2d.shape[0], logits_2d.device
    x = sanitize_logits(logits_2d)
    p_base = row_tensor(params.p_base, batch, device, torch.float64)
    temp = row_tensor(params.temp, batch, device, torch.float32)
    inv_temp, delta, greedy = row_constants(p_base, temp, temperature_first)
    row_max = x.amax(dim=-1) if row_max is None else row_max
    keep = (x >= (row_max + delta)[:, None]) & (x > NEG_INF)
    return x, row_max, keep, inv_temp, greedy


def _scores(x, keep, inv_temp, greedy, params: RowParams, first_token=0):
    """Draw scores: ``max(x / T + G, -FLT_MAX)`` on kept tokens (``x`` for greedy rows), else -inf."""
    batch, vocab = x.shape
    device = x.device
    seed = row_tensor(params.seed, batch, device, torch.int64)
    offset = row_tensor(params.offset, batch, device, torch.int64)
    stream = torch.arange(batch, device=device) if params.seed_shared else torch.zeros(batch, device=device, dtype=torch.int64)
    noisy = (x * inv_temp[:, None] + gumbel_noise(seed, offset, stream, vocab, first_token)).clamp_min(-FLT_MAX)
    return torch.where(keep, torch.where(greedy[:, None], x, noisy), NEG_INF)


def shard_candidates_torch(logits_2d, row_max, params: RowParams, temperature_first, first_token):
    """Best kept token of a vocabulary shard given the global row max; twin of the shard kernel.

    Returns float32 ``[B, 3]`` (score, logit, sum of ``exp((x - m) / T)`` over kept) and the local
    column ``[B]`` (int64).
    """
    x, row_max, keep, inv_temp, greedy = _prepare(logits_2d, params, temperature_first, row_max)
    scores = _scores(x, keep, inv_temp, greedy, params, first_token)
    col = scores.argmax(dim=-1)  # first maximal index on ties, as the kernel
    best = scores.gather(1, col[:, None])[:, 0]
    z = torch.where(keep, torch.exp((x - row_max[:, None]) * inv_temp[:, None]), 0.0).sum(-1)
    return torch.stack([best, x.gather(1, col[:, None])[:, 0], z], dim=1), col


def _prepare_public(logits, p_base, temp, temperature_first):
    from ._validation import validate_logits, validate_row_float

    logits_2d, was_1d = validate_logits(logits)
    batch, device = logits_2d.shape[0], logits_2d.device
    p_base = validate_row_float("p_base", p_base, batch, device, upper=1.0)
    temp = validate_row_float("temp", temp, batch, device)
    return _prepare(logits_2d, RowParams(p_base, temp, 0, 0, True), temperature_first), was_1d


def kept_mask(logits, p_base, temp, *, temperature_first=False):
    """Boolean ``[B, V]`` mask of the kept set (``x >= m + delta`` and finite), before any softmax.

    Unlike ``minp_probs(...) > 0`` it also counts kept tokens whose probability underflows float32.
    """
    (x, row_max, keep, inv_temp, greedy), was_1d = _prepare_public(logits, p_base, temp, temperature_first)
    return keep[0] if was_1d else keep


def minp_probs(logits, p_base, temp, *, temperature_first=False):
    """Probabilities of the min-p sampler, float32 ``[B, V]``, exactly zero outside the kept set.

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]`` or ``[V]`` float32 / float16 / bfloat16.
    p_base, temp : float or torch.Tensor
        Scalars or per-row ``[B]`` tensors.
    temperature_first : bool
        Threshold on the tempered distribution (HF / vLLM order) instead of the untempered one.

    Returns
    -------
    torch.Tensor
        float32 ``[B, V]`` (``[V]`` for 1-D input).  ``temp == 0`` gives a one-hot at the greedy
        argmax; a row without a finite logit is all zeros.

    Examples
    --------
    >>> import torch
    >>> probs = minp_probs(torch.tensor([0.9, 0.0274, 0.047, 0.0274]).log(), 0.05, 1.0)
    >>> (probs > 0).tolist()
    [True, False, True, False]
    """
    (x, row_max, keep, inv_temp, greedy), was_1d = _prepare_public(logits, p_base, temp, temperature_first)
    weights = torch.where(keep, torch.exp((x - row_max[:, None]) * inv_temp[:, None]), 0.0)
    probs = weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    one_hot = torch.nn.functional.one_hot(x.argmax(dim=-1), x.shape[-1]).float()
    probs = torch.where(greedy[:, None], one_hot, probs)
    probs = torch.where((row_max == NEG_INF)[:, None], 0.0, probs)
    return probs[0] if was_1d else probs


def sample_torch(logits_2d, params: RowParams, temperature_first=False, return_logprobs=False):
    """The torch sampler behind ``backend="torch"``: same noise, same tokens as the Triton kernel.

    Parameters
    ----------
    logits_2d : torch.Tensor
        ``[B, V]``, validated.
    params : RowParams
        Validated per-row parameters.

    Returns
    -------
    tuple of torch.Tensor
        int64 tokens ``[B]`` (``-1`` for rows without a finite logit) and float32 log-probabilities
        ``[B]`` (``None`` unless ``return_logprobs``).
    """
    x, row_max, keep, inv_temp, greedy = _prepare(logits_2d, params, temperature_first)
    scores = _scores(x, keep, inv_temp, greedy, params)
    empty = row_max == NEG_INF
    tokens = torch.where(empty, -1, scores.argmax(dim=-1))
    if not return_logprobs:
        return tokens, None
    shifted = (x - row_max[:, None]) * inv_temp[:, None]
    log_norm = torch.logsumexp(torch.where(keep, shifted, NEG_INF), dim=-1)
    picked = shifted.gather(1, tokens.clamp_min(0)[:, None])[:, 0]
    logprobs = torch.where(greedy, 0.0, picked - log_norm)
    return tokens, torch.where(empty, float("nan"), logprobs)
