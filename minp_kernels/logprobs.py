"""Log-probabilities beside the draw: :func:`sample_with_logprobs`.

What OpenAI-style APIs and RL trainers ask for with a sampled token: its log-prob and rank, the
top-N alternatives, the log-probs of given ids, and the probability mass the truncation kept.  The
fields are computed once per row from the same kept set as the draw (:mod:`minp_kernels.rows`), by
the same torch code whichever backend drew the token, so both backends return identical fields.
"""

import numbers
from typing import Literal, NamedTuple

import torch

from ._validation import _describe, short_repr, validate_flag, validate_logits, validate_params
from .api import Backend, sample
from .rows import NEG_INF, float_rows, kept_candidates, params_constants, row_threshold, tempered

MAX_TOP_LOGPROBS = 64
LOGPROBS_MODES = ("processed", "raw")


class SampleOutput(NamedTuple):
    """The result of :func:`sample_with_logprobs` (each ``[B]`` field is 0-d for 1-D logits)."""

    tokens: torch.Tensor  # int64 [B], identical to sample()
    logprobs: torch.Tensor  # float32 [B], the drawn token's log-prob in the chosen mode
    ranks: torch.Tensor  # int64 [B], 1 + the tokens with a strictly larger (exact) log-prob
    top_token_ids: torch.Tensor  # int64 [B, N], most likely first, lowest id first on ties
    top_logprobs: torch.Tensor  # float32 [B, N]
    token_logprobs: torch.Tensor  # float32 [B, M], of the given token_ids
    kept_mass: torch.Tensor  # float32 [B], the kept set's share of softmax(x / temp)


def _validate_request(logits_2d: torch.Tensor, top_logprobs: object, token_ids: object, logprobs_mode: object,
                      was_1d: bool) -> tuple[int, torch.Tensor | None, str]:
    batch, vocab = logits_2d.shape
    if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, numbers.Integral):
        raise TypeError(f"top_logprobs: expected an int in [0, {MAX_TOP_LOGPROBS}], got {_describe(top_logprobs)}")
    if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
        raise ValueError(f"top_logprobs: expected an int in [0, {MAX_TOP_LOGPROBS}], got {short_repr(top_logprobs)}")
    if logprobs_mode not in LOGPROBS_MODES:
        raise ValueError(f"logprobs_mode: expected one of {LOGPROBS_MODES}, got {short_repr(logprobs_mode)}")
    if token_ids is None:
        return int(top_logprobs), None, logprobs_mode
    if not isinstance(token_ids, torch.Tensor) or token_ids.is_floating_point() or token_ids.is_complex() \
            or token_ids.dtype == torch.bool:
        raise TypeError(f"token_ids: expected an integer tensor, got {_describe(token_ids)}")
    expected = "[M]" if was_1d else f"[{batch}, M]"
    if token_ids.ndim != (1 if was_1d else 2) or (not was_1d and token_ids.shape[0] != batch):
        raise ValueError(f"token_ids: expected a tensor of shape {expected}, got shape {tuple(token_ids.shape)}")
    if token_ids.device != logits_2d.device:
        raise ValueError(f"token_ids: expected a tensor on {logits_2d.device} (the logits' device), got one on "
                         f"{token_ids.device}")
    token_ids = token_ids.reshape(batch, -1).to(torch.int64)
    # A host read (a sync on CUDA): an id out of range has no log-prob to return.
    if token_ids.numel() and bool(((token_ids < 0) | (token_ids >= vocab)).any()):
        bad = token_ids[(token_ids < 0) | (token_ids >= vocab)]
        raise ValueError(f"token_ids: expected ids in [0, {vocab}), got {short_repr(bad.tolist())}")
    return int(top_logprobs), token_ids, logprobs_mode


def _sorted_top(values: torch.Tensor, ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` largest ``values`` of each row with their ``ids`` (padded with id -1 and ``-inf``),
    descending; ids must ascend along each row, so a stable sort puts the lowest id first in a tie."""
    batch = values.shape[0]
    if values.shape[1] < n:
        values = torch.cat([values, values.new_full((batch, n - values.shape[1]), NEG_INF)], dim=1)
        ids = torch.cat([ids, ids.new_full((batch, n - ids.shape[1]), -1)], dim=1)
    values, order = values.sort(dim=1, descending=True, stable=True)
    return ids.gather(1, order[:, :n]), values[:, :n]


def _top_by_value(x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` largest values of each row and their ids, descending, lowest id first on ties: the
    candidates are every token at least the ``n``-th largest value (all of a tie)."""
    if n == 0:
        return x.new_empty(x.shape[0], 0, dtype=torch.int64), x.new_empty(x.shape[0], 0)
    nth = x.topk(min(n, x.shape[1]), dim=1).values[:, -1:]  # N above V: all of them, then padding
    values, ids = kept_candidates(x, x >= nth)
    ids, values = _sorted_top(values, ids, n)
    return ids, values


def log_prob_fields(logits_2d: torch.Tensor, params, temperature_first: bool, tokens: torch.Tensor, top_n: int,
                    token_ids: torch.Tensor | None, mode: str) -> SampleOutput:
    """Every field of :class:`SampleOutput` for validated inputs and the drawn ``tokens`` ``[B]``.

    ``"processed"``: the log of the distribution that was sampled, ``(x - m) / temp - log Z_kept`` on
    the kept set, ``-inf`` elsewhere (greedy rows: 0 at the token, ``-inf`` elsewhere), computed on
    the kept tokens only.  ``"raw"``: ``log_softmax`` of the logits as given (NaN read as ``-inf``,
    ``+inf`` as the largest float32), before temperature.  ``kept_mass`` = ``Z_kept / Z_all`` under
    ``softmax((x - m) / temp)``.  Ranks and the top-N order are those of the exact log-probs, which
    is the order of the logits (ties: equal logits, lowest id first), so float32 rounding of the
    returned log-probs never reorders them.
    """
    batch = logits_2d.shape[0]
    x, row_max = float_rows(logits_2d)
    inv_temp, delta, greedy = params_constants(params, batch, x.device, temperature_first)
    threshold = row_threshold(x, row_max, delta, inv_temp, greedy, params, temperature_first)
    invalid = tokens < 0
    token = tokens.clamp_min(0)[:, None]
    token_value = x.gather(1, token)
    # Weights under the tempered softmax, from the row max; greedy rows weigh only their token.
    scale = torch.where(greedy, 0.0, inv_temp)[:, None]

    def shifted(values):
        return torch.where(values > NEG_INF, tempered(values, row_max[:, None], scale), NEG_INF)

    kept_values, kept_ids = kept_candidates(x, x >= threshold[:, None])
    log_kept = torch.logsumexp(shifted(kept_values), dim=1, keepdim=True)
    # (x - m) * s is -inf on -inf logits when s > 0; rows with s = 0 (temp = inf, greedy) are NaN
    # there and take their mass from the counts (or are greedy: 1).
    # log sum exp((x - m) * s): every term is at most 1 (m is the max), so no max shift is needed.
    log_all = (x - row_max[:, None]).mul_(scale).exp_().sum(dim=1).log_()
    kept_mass = torch.exp(log_kept[:, 0] - log_all)
    if x.device.type != "cpu" or bool((scale == 0).any()):  # a host read on the CPU only
        uniform = (kept_values > NEG_INF).count_nonzero(dim=1) / (x > NEG_INF).count_nonzero(dim=1).clamp_min(1)
        kept_mass = torch.where(scale[:, 0] == 0, uniform.float(), kept_mass)
    kept_mass = torch.where(greedy, 1.0, kept_mass)

    def processed(values, ids):  # log-probs of (values, ids) under the sampled distribution
        lp = torch.where(values >= threshold[:, None], shifted(values) - log_kept, NEG_INF)
        return torch.where(greedy[:, None], torch.where(ids == token, 0.0, NEG_INF), lp)

    if mode == "processed":
        token_logprob = processed(token_value, token)
        # The order of the processed log-probs: the logits', except at temp = inf, where every kept
        # token has the same log-prob (all tie: rank 1, lowest ids first).
        order_key = torch.where(scale == 0, torch.where(kept_values > NEG_INF, 0.0, NEG_INF), kept_values)
        token_key = torch.where(scale == 0, 0.0, token_value)
        ranks = torch.where(greedy, 1, 1 + (order_key > token_key).count_nonzero(dim=1))  # the larger are kept
        top_ids, _ = _sorted_top(order_key, kept_ids, top_n)
        top_values = torch.where(top_ids >= 0, processed(x.gather(1, top_ids.clamp_min(0)), top_ids), NEG_INF)
        top_ids = torch.where(top_values > NEG_INF, top_ids, -1)
        given = processed(x.gather(1, token_ids), token_ids) if token_ids is not None else x.new_empty(batch, 0)
    else:
        # log_softmax(x) = x - (m + log sum exp(x - m)): with temp = 1 everywhere that sum is log_all's.
        unit_scale = x.device.type == "cpu" and bool((scale == 1).all())
        log_norm = (log_all + row_max if unit_scale else torch.logsumexp(x, dim=1))[:, None]
        token_logprob = token_value - log_norm
        # The token is kept and the kept set is an upper set: every larger logit is a kept candidate.
        ranks = 1 + (kept_values > token_value).count_nonzero(dim=1)
        top_ids, top_values = _top_by_value(x, top_n)
        top_values = top_values - log_norm
        given = x.gather(1, token_ids) - log_norm if token_ids is not None else x.new_empty(batch, 0)
    nan = float("nan")
    return SampleOutput(
        tokens, torch.where(invalid, nan, token_logprob[:, 0]), torch.where(invalid, -1, ranks),
        torch.where(invalid[:, None], -1, top_ids), torch.where(invalid[:, None], nan, top_values),
        torch.where(invalid[:, None], nan, given), torch.where(invalid, nan, kept_mass))


def sample_with_logprobs(logits: torch.Tensor, p_base: float | torch.Tensor, temp: float | torch.Tensor, *,
                         top_logprobs: int = 0, token_ids: torch.Tensor | None = None,
                         logprobs_mode: Literal["processed", "raw"] = "processed",
                         seed: int | torch.Tensor | None = None, offset: int | torch.Tensor = 0,
                         generator: torch.Generator | None = None, temperature_first: bool = False,
                         top_k: int | torch.Tensor | None = None, top_p: float | torch.Tensor | None = None,
                         top_p_after_min_p: bool = False, backend: Backend = "auto",
                         strict: bool = False) -> SampleOutput:
    """Draw one token per row as :func:`minp_kernels.sample` does, with the log-probs serving stacks
    and RL trainers ask for.

    Parameters
    ----------
    logits, p_base, temp, seed, offset, generator, temperature_first, top_k, top_p, top_p_after_min_p, backend, strict
        As in :func:`minp_kernels.sample`; ``tokens`` is exactly its result.
    top_logprobs : int
        ``N`` in ``[0, 64]``: also return the ``N`` most likely tokens and their log-probs.
    token_ids : torch.Tensor, optional
        ``[B, M]`` (``[M]`` for 1-D logits) integer ids whose log-probs to return, in ``[0, V)``
        (checked on the host: a sync on CUDA).
    logprobs_mode : {"processed", "raw"}
        ``"processed"``: the log of the final distribution that was sampled (after temperature,
        min-p, top-k, top-p; ``-inf`` outside the kept set), vLLM's ``processed_logprobs``.
        ``"raw"``: ``log_softmax`` of the logits as given, before temperature, vLLM's
        ``raw_logprobs``.

    Returns
    -------
    SampleOutput
        ``tokens`` int64 ``[B]``; ``logprobs`` float32 ``[B]``; ``ranks`` int64 ``[B]`` (1 + the
        tokens with a strictly larger log-prob); ``top_token_ids`` / ``top_logprobs`` ``[B, N]``
        (descending, lowest id first on ties; in processed mode id -1 and ``-inf`` past the kept
        set); ``token_logprobs`` float32 ``[B, M]``; ``kept_mass`` float32 ``[B]``: the kept set's
        share of ``softmax(x / temp)``, untruncated (1.0 when nothing is cut, and for greedy rows).
        A row whose token is -1 (invalid parameters, no finite logit) has NaN log-probs and mass,
        rank -1 and top ids -1.

    Raises
    ------
    TypeError, ValueError
        As :func:`minp_kernels.sample`, and for a ``top_logprobs`` outside ``[0, 64]``, an unknown
        ``logprobs_mode``, ``token_ids`` of the wrong kind, shape, device or range.

    Examples
    --------
    >>> import torch, minp_kernels
    >>> out = minp_kernels.sample_with_logprobs(torch.tensor([2.0, 1.9, -3.0, 0.5]), 0.1, 1.0, seed=7,
    ...                                          top_logprobs=2)
    >>> out.top_token_ids.tolist(), round(float(out.kept_mass), 4)
    ([0, 1], 0.9968)
    """
    logits_2d, was_1d = validate_logits(logits)
    top_n, token_ids, mode = _validate_request(logits_2d, top_logprobs, token_ids, logprobs_mode, was_1d)
    temperature_first = validate_flag("temperature_first", temperature_first)
    tokens = sample(logits_2d, p_base, temp, seed=seed, offset=offset, generator=generator,
                    temperature_first=temperature_first, top_k=top_k, top_p=top_p,
                    top_p_after_min_p=top_p_after_min_p, backend=backend, strict=strict)
    params = validate_params(logits_2d, p_base, temp, 0, 0, None, top_k, top_p, top_p_after_min_p)
    out = log_prob_fields(logits_2d, params, temperature_first, tokens, top_n, token_ids, mode)
    return SampleOutput(*(field[0] for field in out)) if was_1d else out
