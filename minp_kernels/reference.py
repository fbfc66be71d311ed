"""Exact torch reference for min-p sampling.

Everything here is plain, dense torch, runs on any device, and defines the semantics the Triton
kernel and the torch backend (:mod:`minp_kernels.torch_sampler`) reproduce bit for bit:

* ``x``: logits in float32, NaN read as ``-inf``, ``+inf`` clamped to the largest float32.
* ``m = max(x)``; kept set ``x >= m + delta`` with ``delta = ln(p_base)`` (paper order) or
  ``temp * ln(p_base)`` (``temperature_first``), and ``x > -inf``.
* draw ``argmax over kept i of max(max(x_i - m, -FLT_MAX) * (1/temp) + G_i, -FLT_MAX)``, lowest
  index on ties, with ``G_i`` from :func:`minp_kernels.philox.gumbel_noise`; ``temp == 0`` (or
  ``1/temp`` overflowing) is greedy: ``argmax x``.  Scoring relative to ``m`` keeps the noise in
  rows of huge or ``+inf`` logits, where ``x * (1/temp)`` would swallow it.
* a row with an empty kept set (no finite logit, or an invalid ``p_base`` / ``temp`` from a per-row
  tensor: NaN, ``p_base`` outside ``[0, 1]``, ``temp < 0``) draws token ``-1`` with log-prob NaN.
"""

import torch

from ._validation import validate_flag, validate_logits, validate_row_float
from .params import RowParams, invalid_rows
from .philox import gumbel_noise

FLT_MAX = torch.finfo(torch.float32).max
NEG_INF = float("-inf")

RowConstants = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
KeptSet = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def sanitize_logits(logits_2d: torch.Tensor) -> torch.Tensor:
    """float32 logits with NaN -> -inf and +inf -> FLT_MAX (so +inf tokens stay comparable)."""
    return torch.nan_to_num(logits_2d.float(), nan=NEG_INF, posinf=FLT_MAX, neginf=NEG_INF)


def row_tensor(value: float | int | torch.Tensor, batch: int, device: torch.device,
               dtype: torch.dtype) -> torch.Tensor:
    """A scalar or ``[B]`` tensor parameter as a ``[B]`` tensor of ``dtype`` (``[1]`` broadcasts).

    A Python float is rounded to a float ``dtype`` as the kernel's launch rounds it (1e39 becomes
    inf, 1e-40 a subnormal) instead of raising on overflow.
    """
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype).expand(batch)
    if isinstance(value, float) and dtype.is_floating_point:
        return torch.full((batch,), value, device=device, dtype=torch.float64).to(dtype)
    return torch.full((batch,), value, device=device, dtype=dtype)


def row_constants(p_base: torch.Tensor, temp: torch.Tensor, temperature_first: bool) -> RowConstants:
    """Per-row ``(inv_temp, delta, greedy)``, float32, exactly as the kernel computes them.

    ``ln(p_base)`` is taken in float64 and rounded once to float32, ``1/temp`` is an IEEE float32
    division (of ``temp + 0.0``, so that a temperature of -0.0 is greedy like 0.0), and ``delta`` is
    the threshold's offset from the row max.
    """
    log_p = torch.log(p_base.double()).float()
    temp = temp.float() + 0.0
    inv_temp = torch.ones_like(temp) / temp
    greedy = inv_temp == float("inf")
    delta = torch.where(log_p == 0, 0.0, temp * log_p) if temperature_first else log_p
    return inv_temp, torch.where(greedy, 0.0, delta), greedy


def kept_threshold(row_max: torch.Tensor, delta: torch.Tensor, invalid: torch.Tensor) -> torch.Tensor:
    """Per-row threshold ``t`` such that ``x >= t`` is the kept set (``x >= m + delta`` and ``x > -inf``).

    Raising ``m + delta`` to ``-FLT_MAX`` folds the ``x > -inf`` test into the one comparison.  An
    ``invalid`` row (:func:`minp_kernels.params.invalid_rows`) gets NaN: no logit compares ``>=``
    to NaN, so it keeps nothing.
    """
    return torch.where(invalid, float("nan"), (row_max + delta).clamp_min(-FLT_MAX))


def row_noise_keys(params: RowParams, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
    """Per-row int64 ``(seed, offset, stream)`` of the Philox stream (see :mod:`minp_kernels.philox`)."""
    seed = row_tensor(params.seed, batch, device, torch.int64)
    offset = row_tensor(params.offset, batch, device, torch.int64)
    if params.seed_shared:
        stream = torch.arange(batch, device=device)
    else:
        stream = torch.zeros(batch, device=device, dtype=torch.int64)
    return seed, offset, stream


def _kept_set(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool,
              row_max: torch.Tensor | None = None) -> KeptSet:
    """Sanitised logits, row max (given, for a vocabulary shard), kept mask and row constants."""
    batch, device = logits_2d.shape[0], logits_2d.device
    x = sanitize_logits(logits_2d)
    p_base = row_tensor(params.p_base, batch, device, torch.float64)
    temp = row_tensor(params.temp, batch, device, torch.float32)
    inv_temp, delta, greedy = row_constants(p_base, temp, temperature_first)
    row_max = x.amax(dim=-1) if row_max is None else row_max
    keep = x >= kept_threshold(row_max, delta, invalid_rows(params, batch, device))[:, None]
    return x, row_max, keep, inv_temp, greedy


def gumbel_scores(x: torch.Tensor, row_max: torch.Tensor, inv_temp: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``max(max(x - m, -FLT_MAX) * inv_temp + G, -FLT_MAX)``, rounded after each operation as the
    kernel computes it (no fused multiply-add); every argument broadcasts against ``x``."""
    return ((x - row_max).clamp_min_(-FLT_MAX) * inv_temp + noise).clamp_min_(-FLT_MAX)


def _scores(x, row_max, keep, inv_temp, greedy, params: RowParams, token_base=0):
    """Draw scores (:func:`gumbel_scores`) on kept tokens (``x`` for greedy rows), else -inf."""
    batch, vocab = x.shape
    seed, offset, stream = row_noise_keys(params, batch, x.device)
    noisy = gumbel_scores(x, row_max[:, None], inv_temp[:, None], gumbel_noise(seed, offset, stream, vocab, token_base))
    return torch.where(keep, torch.where(greedy[:, None], x, noisy), NEG_INF)


def shard_candidates_reference(logits_2d: torch.Tensor, row_max: torch.Tensor, params: RowParams,
                               temperature_first: bool, token_base: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best kept token of a vocabulary shard given the global row max; twin of the shard kernel.

    Parameters
    ----------
    logits_2d : torch.Tensor
        ``[B, V_local]``, validated; column ``j`` is the global token ``token_base + j``.
    row_max : torch.Tensor
        float32 ``[B]``, the sanitised row max over the whole vocabulary.
    params : RowParams
        Validated per-row parameters.
    temperature_first : bool
        Threshold on the tempered distribution.
    token_base : int
        Global id of column 0 (keys the noise).

    Returns
    -------
    tuple of torch.Tensor
        float32 ``[B, 3]`` (score, logit, sum of ``exp((x - m) / T)`` over kept) and the local
        column ``[B]`` (int64).  A row with no kept token in the shard has score ``-inf``, column 0
        and normaliser 0.
    """
    x, row_max, keep, inv_temp, greedy = _kept_set(logits_2d, params, temperature_first, row_max)
    scores = _scores(x, row_max, keep, inv_temp, greedy, params, token_base)
    best, col = scores.max(dim=-1)  # first maximal index on ties, as the kernel
    z = torch.where(keep, torch.exp((x - row_max[:, None]) * inv_temp[:, None]), 0.0).sum(-1)
    return torch.stack([best, x.gather(1, col[:, None])[:, 0], z], dim=1), col


def sample_reference(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool = False,
                     return_logprobs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The dense sampler: scores every token of every row, then takes each row's argmax.

    Parameters
    ----------
    logits_2d : torch.Tensor
        ``[B, V]``, validated.
    params : RowParams
        Validated per-row parameters.
    temperature_first : bool
        Threshold on the tempered distribution (HF / vLLM order) instead of the untempered one.
    return_logprobs : bool
        Also return the log-probability of each token under the truncated, tempered distribution.

    Returns
    -------
    tuple of torch.Tensor
        int64 tokens ``[B]`` (``-1`` for rows with an empty kept set) and float32 log-probabilities
        ``[B]`` (NaN on ``-1`` rows; ``None`` unless ``return_logprobs``).
    """
    x, row_max, keep, inv_temp, greedy = _kept_set(logits_2d, params, temperature_first)
    best, token = _scores(x, row_max, keep, inv_temp, greedy, params).max(dim=-1)  # lowest index on ties
    empty = best == NEG_INF  # kept scores are >= -FLT_MAX
    tokens = torch.where(empty, -1, token)
    if not return_logprobs:
        return tokens, None
    shifted = (x - row_max[:, None]) * inv_temp[:, None]
    log_norm = torch.logsumexp(torch.where(keep, shifted, NEG_INF), dim=-1)
    picked = shifted.gather(1, token[:, None])[:, 0]
    logprobs = torch.where(greedy, 0.0, picked - log_norm)
    return tokens, torch.where(empty, float("nan"), logprobs)


def _validated_kept_set(logits, p_base, temp, temperature_first) -> tuple[KeptSet, bool]:
    """Validate the public helpers' arguments, then :func:`_kept_set` (and whether the input was 1-D)."""
    logits_2d, was_1d = validate_logits(logits)
    temperature_first = validate_flag("temperature_first", temperature_first)
    batch = logits_2d.shape[0]
    p_base = validate_row_float("p_base", p_base, batch, logits_2d, upper=1.0)
    temp = validate_row_float("temp", temp, batch, logits_2d)
    return _kept_set(logits_2d, RowParams(p_base, temp, 0, 0, True), temperature_first), was_1d


def kept_mask(logits: torch.Tensor, p_base: float | torch.Tensor, temp: float | torch.Tensor, *,
              temperature_first: bool = False) -> torch.Tensor:
    """Boolean ``[B, V]`` mask of the kept set (``x >= m + delta`` and finite), before any softmax.

    Unlike ``minp_probs(...) > 0`` it also counts kept tokens whose probability underflows float32.
    A row without a finite logit, or with an invalid per-row ``p_base`` / ``temp``, is all False.
    """
    (_, _, keep, _, _), was_1d = _validated_kept_set(logits, p_base, temp, temperature_first)
    return keep[0] if was_1d else keep


def minp_probs(logits: torch.Tensor, p_base: float | torch.Tensor, temp: float | torch.Tensor, *,
               temperature_first: bool = False) -> torch.Tensor:
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
        argmax; a row without a finite logit, or with an invalid per-row ``p_base`` / ``temp``
        (NaN, ``p_base`` outside ``[0, 1]``, ``temp < 0``), is all zeros.

    Examples
    --------
    >>> import torch
    >>> probs = minp_probs(torch.tensor([0.9, 0.0274, 0.047, 0.0274]).log(), 0.05, 1.0)
    >>> (probs > 0).tolist()
    [True, False, True, False]
    """
    (x, row_max, keep, inv_temp, greedy), was_1d = _validated_kept_set(logits, p_base, temp, temperature_first)
    weights = torch.where(keep, torch.exp((x - row_max[:, None]) * inv_temp[:, None]), 0.0)
    probs = weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    one_hot = torch.nn.functional.one_hot(x.argmax(dim=-1), x.shape[-1]).float()
    probs = torch.where(greedy[:, None], one_hot, probs)
    probs = torch.where(keep.any(dim=-1, keepdim=True), probs, 0.0)
    return probs[0] if was_1d else probs
