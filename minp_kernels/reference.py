"""Exact torch reference for min-p sampling (with optional top-k / top-p).

Everything here is plain, dense torch, runs on any device, and defines the semantics the Triton
kernel and the torch backend (:mod:`minp_kernels.torch_sampler`) reproduce bit for bit:

* ``x``: logits in float32, NaN read as ``-inf``, ``+inf`` clamped to the largest float32.
* ``m = max(x)``; kept set ``x >= m + delta`` with ``delta = ln(p_base)`` (paper order) or
  ``temp * ln(p_base)`` (``temperature_first``), and ``x > -inf``; with ``top_k`` / ``top_p`` also at
  least their thresholds (:mod:`minp_kernels.rows`, where the row math of every backend lives).
* draw ``argmax over kept i of max(max(x_i - m, -FLT_MAX) * (1/temp) + G_i, -FLT_MAX)``, lowest
  index on ties, with ``G_i`` from :func:`minp_kernels.philox.gumbel_noise`; ``temp == 0`` (or
  ``1/temp`` overflowing) is greedy: ``argmax x``.  Scoring relative to ``m`` keeps the noise in
  rows of huge or ``+inf`` logits, where ``x * (1/temp)`` would swallow it.
* a row with an empty kept set (no finite logit, or an invalid ``p_base`` / ``temp`` from a per-row
  tensor: NaN, ``p_base`` outside ``[0, 1]``, ``temp < 0``) draws token ``-1`` with log-prob NaN.
"""

import torch

from ._validation import validate_filters, validate_flag, validate_logits, validate_row_float
from .params import RowParams
from .philox import gumbel_noise
from .rows import NEG_INF, gumbel_scores, params_constants, row_noise_keys, row_threshold, sanitize_logits, tempered

KeptSet = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _kept_set(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool,
              row_max: torch.Tensor | None = None) -> KeptSet:
    """Sanitised logits, row max (given, for a vocabulary shard), kept mask and row constants."""
    batch, device = logits_2d.shape[0], logits_2d.device
    x = sanitize_logits(logits_2d)
    inv_temp, delta, greedy = params_constants(params, batch, device, temperature_first)
    row_max = x.amax(dim=-1) if row_max is None else row_max
    keep = x >= row_threshold(x, row_max, delta, inv_temp, greedy, params, temperature_first)[:, None]
    return x, row_max, keep, inv_temp, greedy


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
    z = torch.where(keep, torch.exp(tempered(x, row_max[:, None], inv_temp[:, None])), 0.0).sum(-1)
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
    shifted = tempered(x, row_max[:, None], inv_temp[:, None])
    log_norm = torch.logsumexp(torch.where(keep, shifted, NEG_INF), dim=-1)
    picked = shifted.gather(1, token[:, None])[:, 0]
    logprobs = torch.where(greedy, 0.0, picked - log_norm)
    return tokens, torch.where(empty, float("nan"), logprobs)


def _validated_kept_set(logits, p_base, temp, temperature_first, top_k=None, top_p=None,
                        top_p_after_min_p=False) -> tuple[KeptSet, bool]:
    """Validate the public helpers' arguments, then :func:`_kept_set` (and whether the input was 1-D)."""
    logits_2d, was_1d = validate_logits(logits)
    temperature_first = validate_flag("temperature_first", temperature_first)
    batch = logits_2d.shape[0]
    p_base = validate_row_float("p_base", p_base, batch, logits_2d, upper=1.0)
    temp = validate_row_float("temp", temp, batch, logits_2d)
    params = RowParams(p_base, temp, 0, 0, True, *validate_filters(logits_2d, top_k, top_p, top_p_after_min_p))
    return _kept_set(logits_2d, params, temperature_first), was_1d


def kept_mask(logits: torch.Tensor, p_base: float | torch.Tensor, temp: float | torch.Tensor, *,
              temperature_first: bool = False, top_k: int | torch.Tensor | None = None,
              top_p: float | torch.Tensor | None = None, top_p_after_min_p: bool = False) -> torch.Tensor:
    """Boolean ``[B, V]`` mask of the kept set (``x >= m + delta`` and finite, and the top-k / top-p
    thresholds when given, as in :func:`minp_kernels.sample`), before any softmax.

    Unlike ``minp_probs(...) > 0`` it also counts kept tokens whose probability underflows float32.
    A row without a finite logit, or with an invalid per-row ``p_base`` / ``temp`` / ``top_k`` /
    ``top_p``, is all False.
    """
    (_, _, keep, _, _), was_1d = _validated_kept_set(logits, p_base, temp, temperature_first, top_k, top_p,
                                                     top_p_after_min_p)
    return keep[0] if was_1d else keep


def minp_probs(logits: torch.Tensor, p_base: float | torch.Tensor, temp: float | torch.Tensor, *,
               temperature_first: bool = False, top_k: int | torch.Tensor | None = None,
               top_p: float | torch.Tensor | None = None, top_p_after_min_p: bool = False) -> torch.Tensor:
    """Probabilities of the min-p sampler, float32 ``[B, V]``, exactly zero outside the kept set.

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]`` or ``[V]`` float32 / float16 / bfloat16.
    p_base, temp : float or torch.Tensor
        Scalars or per-row ``[B]`` tensors.
    temperature_first : bool
        Threshold on the tempered distribution (HF / vLLM order) instead of the untempered one.
    top_k, top_p, top_p_after_min_p
        The optional filters, as in :func:`minp_kernels.sample`.

    Returns
    -------
    torch.Tensor
        float32 ``[B, V]`` (``[V]`` for 1-D input).  ``temp == 0`` gives a one-hot at the greedy
        argmax; a row without a finite logit, or with an invalid per-row parameter (NaN, ``p_base``
        outside ``[0, 1]``, ``temp < 0``, ``top_k < 0``, ``top_p`` outside ``(0, 1]``), is all zeros.

    Examples
    --------
    >>> import torch
    >>> probs = minp_probs(torch.tensor([0.9, 0.0274, 0.047, 0.0274]).log(), 0.05, 1.0)
    >>> (probs > 0).tolist()
    [True, False, True, False]
    """
    (x, row_max, keep, inv_temp, greedy), was_1d = _validated_kept_set(logits, p_base, temp, temperature_first,
                                                                       top_k, top_p, top_p_after_min_p)
    weights = torch.where(keep, torch.exp(tempered(x, row_max[:, None], inv_temp[:, None])), 0.0)
    probs = weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    one_hot = torch.nn.functional.one_hot(x.argmax(dim=-1), x.shape[-1]).float()
    probs = torch.where(greedy[:, None], one_hot, probs)
    probs = torch.where(keep.any(dim=-1, keepdim=True), probs, 0.0)
    return probs[0] if was_1d else probs
