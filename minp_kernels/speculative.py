"""Speculative decoding that keeps min-p: exact verification of draft tokens under the processed
target distribution (temperature, min-p, top-k, top-p), with the sampler's keyed noise.

:func:`verify` implements the rejection scheme of Leviathan et al. (2023) and Chen et al. (2023):
for ``j = 0 .. K-1`` accept the draft ``d_j`` with probability ``min(1, p_j(d_j) / q_j(d_j))``; at
the first rejection draw from ``normalize(max(p_j - q_j, 0))`` and stop; if all drafts are accepted
draw a bonus token from ``p_K``.  Every output position is then distributed as ``p_j`` exactly,
where ``p_j`` is the distribution :func:`minp_kernels.sample` samples at that position.

Random numbers, all from the Philox stream of :mod:`minp_kernels.philox`, keyed by the row's seed
and ``offset + j`` for position ``j`` (so reproducible and batch-invariant, like the sampler's):

* the acceptance uniform of position ``j``: word 0 of the counter of the virtual token id
  ``ACCEPT_TOKEN`` (beyond every vocabulary, so it never shares a word with a token's noise);
* a recovered token at position ``j``: ``argmax of log(max(p_j - q_j, 0)) + G``, ``G`` the Gumbel
  noise of each token at ``offset + j``;
* the bonus token: exactly ``sample(target_logits[:, K], ..., offset=offset + K)`` (a row without
  drafts draws what the plain sampler draws).
"""

import numbers

import torch

from ._validation import _describe, check_values_strict, validate_flag, validate_logits, validate_params
from .api import Backend, sample
from .params import MAX_VOCAB, RowParams
from .philox import gumbel_from_words, token_list_words, uniform_from_words
from .rows import NEG_INF, float_rows, kept_candidates, params_constants, row_noise_keys, row_threshold, tempered

ACCEPT_TOKEN = MAX_VOCAB + 4  # a multiple of 4 above every token id: its own Philox counter


def _expand(value, batch: int, positions: int):
    """A per-row parameter (scalar or ``[B]``) for the ``B * positions`` flattened rows."""
    if isinstance(value, torch.Tensor):
        return value.expand(batch).repeat_interleave(positions)
    return value


def _validate(target_logits, draft_token_ids, draft_probs, num_draft_tokens):
    if not isinstance(target_logits, torch.Tensor) or target_logits.ndim != 3:
        raise ValueError(f"target_logits: expected a [B, K+1, V] tensor, got {_describe(target_logits)}")
    batch, positions, vocab = target_logits.shape
    drafts = positions - 1
    if not isinstance(draft_token_ids, torch.Tensor) or draft_token_ids.dtype != torch.int64:
        raise TypeError(f"draft_token_ids: expected an int64 tensor [{batch}, {drafts}], got "
                        f"{_describe(draft_token_ids)}")
    if tuple(draft_token_ids.shape) != (batch, drafts):
        raise ValueError(f"draft_token_ids: expected shape [{batch}, {drafts}] (target_logits is [B, K+1, V]), got "
                         f"{tuple(draft_token_ids.shape)}")
    if draft_token_ids.device != target_logits.device:
        raise ValueError(f"draft_token_ids: expected a tensor on {target_logits.device}, got {draft_token_ids.device}")
    if draft_probs is not None:
        if not isinstance(draft_probs, torch.Tensor) or not draft_probs.is_floating_point():
            raise TypeError(f"draft_probs: expected None or a float tensor [{batch}, {drafts}, {vocab}], got "
                            f"{_describe(draft_probs)}")
        if tuple(draft_probs.shape) != (batch, drafts, vocab) or draft_probs.device != target_logits.device:
            raise ValueError(f"draft_probs: expected a tensor [{batch}, {drafts}, {vocab}] on {target_logits.device}, "
                             f"got shape {tuple(draft_probs.shape)} on {draft_probs.device}")
    if num_draft_tokens is None:
        return torch.full((batch,), drafts, dtype=torch.int64, device=target_logits.device)
    if isinstance(num_draft_tokens, numbers.Integral) and not isinstance(num_draft_tokens, bool):
        if not 0 <= num_draft_tokens <= drafts:
            raise ValueError(f"num_draft_tokens: expected an int in [0, {drafts}], got {num_draft_tokens}")
        return torch.full((batch,), int(num_draft_tokens), dtype=torch.int64, device=target_logits.device)
    if not isinstance(num_draft_tokens, torch.Tensor) or num_draft_tokens.is_floating_point() \
            or tuple(num_draft_tokens.shape) != (batch,):
        raise ValueError(f"num_draft_tokens: expected None, an int or an integer tensor [{batch}], got "
                         f"{_describe(num_draft_tokens)}")
    # Out-of-range counts are clamped on the device (no host read): a row asks for at most K.
    return num_draft_tokens.to(torch.int64).clamp(0, drafts)


def _recovered(x, threshold, row_max, scale, log_kept, draft_prob_rows, draft_tokens, seed, offset, stream):
    """One draw per row from ``normalize(max(p - q, 0))``: Gumbel-max over ``log(max(p - q, 0)) + G``,
    lowest id on ties; ``q`` one-hot at ``draft_tokens`` unless ``draft_prob_rows`` is given."""
    values, ids = kept_candidates(x, x >= threshold[:, None])  # p is 0 outside the kept set
    live = ids >= 0
    safe = ids.clamp_min(0)
    p = torch.where(live, torch.exp(tempered(values, row_max[:, None], scale[:, None]) - log_kept[:, None]), 0.0)
    q = (draft_prob_rows.gather(1, safe).float() if draft_prob_rows is not None
         else (safe == draft_tokens[:, None]).float())
    residual = torch.where(live, (p - q).clamp_min(0.0), 0.0)
    count = ids.shape[1]
    words = token_list_words(seed.repeat_interleave(count), safe.flatten(), stream.repeat_interleave(count),
                             offset.repeat_interleave(count)).view(ids.shape)
    scores = torch.where(residual > 0, residual.log() + gumbel_from_words(words), NEG_INF)
    best = scores.argmax(dim=1, keepdim=True)  # first maximal position: ids ascend along a row
    return torch.where(scores.gather(1, best) > NEG_INF, ids.gather(1, best), -1)[:, 0]


def verify(target_logits: torch.Tensor, draft_token_ids: torch.Tensor, p_base: float | torch.Tensor,
           temp: float | torch.Tensor, *, draft_probs: torch.Tensor | None = None,
           num_draft_tokens: int | torch.Tensor | None = None, top_k: int | torch.Tensor | None = None,
           top_p: float | torch.Tensor | None = None, temperature_first: bool = True,
           top_p_after_min_p: bool = True, seed: int | torch.Tensor | None = None, offset: int | torch.Tensor = 0,
           backend: Backend = "auto", strict: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Verify ``K`` draft tokens per row against the processed target distribution, exactly.

    Parameters
    ----------
    target_logits : torch.Tensor
        ``[B, K+1, V]`` target logits at the ``K`` draft positions and the bonus position.
    draft_token_ids : torch.Tensor
        int64 ``[B, K]`` draft tokens (in ``[0, V)``; an id outside it is never accepted).
    p_base, temp, top_k, top_p, temperature_first, top_p_after_min_p, seed, offset, backend, strict
        As in :func:`minp_kernels.sample`, per row (the same at every position); the defaults follow
        vLLM's order.  Position ``j`` draws with ``offset + j``: advance ``offset`` by ``K + 1`` per step.
    draft_probs : torch.Tensor, optional
        ``[B, K, V]`` draft distributions ``q_j``; None: one-hot at the draft token (n-gram and
        greedy drafts).
    num_draft_tokens : int or torch.Tensor, optional
        ``[B]`` drafts per row (rows with fewer drafts; the rest of their positions are ignored).

    Returns
    -------
    tuple of torch.Tensor
        ``output_token_ids`` int64 ``[B, K+1]`` (the accepted drafts, then the recovered or bonus
        token, then -1) and ``num_accepted`` int64 ``[B]``.  Greedy rows (``temp == 0``) accept while
        the draft is the target's argmax, then output the argmax.  An invalid row (parameters, or
        no finite logit where a token is drawn) gets -1 everywhere and 0 accepted.

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]]])    # B = 1, K = 1, V = 3
    >>> out, accepted = verify(logits, torch.tensor([[0]]), 0.1, 0.0)  # greedy: the draft is the argmax
    >>> out.tolist(), accepted.tolist()
    ([[0, 1]], [1])
    """
    count = _validate(target_logits, draft_token_ids, draft_probs, num_draft_tokens)
    temperature_first = validate_flag("temperature_first", temperature_first)
    batch, positions, vocab = target_logits.shape
    device = target_logits.device
    flat, _ = validate_logits(target_logits.reshape(batch * positions, vocab))
    row_params = validate_params(flat[:batch], p_base, temp, 0 if seed is None else seed, offset, None, top_k,
                                 top_p, top_p_after_min_p)
    if seed is None:  # one seed drawn on the device for the whole call, shared like an int seed
        row_params.seed = torch.randint(-(2**63), 2**63 - 1, (1,), device=device, dtype=torch.int64)
        row_params.seed_shared = True
    seeds, offsets, streams = row_noise_keys(row_params, batch, device)
    if validate_flag("strict", strict):  # the parameters, and a finite logit at the first position of each row
        check_values_strict(target_logits[:, 0], row_params)

    # Per flattened row (b, j): the kept set's threshold and normaliser, the draft's probability.
    expanded = RowParams(*(_expand(v, batch, positions) for v in (row_params.p_base, row_params.temp)), 0, 0, True,
                         _expand(row_params.top_k, batch, positions), _expand(row_params.top_p, batch, positions),
                         row_params.top_p_after_min_p)
    x, row_max = float_rows(flat)
    inv_temp, delta, greedy = params_constants(expanded, batch * positions, device, temperature_first)
    threshold = row_threshold(x, row_max, delta, inv_temp, greedy, expanded, temperature_first)
    scale = torch.where(greedy, 0.0, inv_temp)
    kept_values, kept_ids = kept_candidates(x, x >= threshold[:, None])
    kept_weights = tempered(kept_values, row_max[:, None], scale[:, None])
    log_kept = torch.logsumexp(torch.where(kept_values > NEG_INF, kept_weights, NEG_INF), dim=1)
    greedy_rows = greedy.view(batch, positions)[:, 0]
    # The greedy token: the lowest id holding the row max, found among the kept candidates.
    argmax = kept_ids.gather(1, kept_values.argmax(dim=1, keepdim=True))[:, 0].view(batch, positions)

    drafts = torch.cat([draft_token_ids, draft_token_ids.new_zeros(batch, 1)], dim=1)  # a dummy at the bonus
    in_vocab = (drafts >= 0) & (drafts < vocab)
    x_draft = x.view(batch, positions, vocab).gather(2, drafts.clamp(0, vocab - 1)[..., None])[..., 0]
    kept_draft = in_vocab & (x_draft >= threshold.view(batch, positions))
    log_p_draft = (tempered(x_draft, row_max.view(batch, positions), scale.view(batch, positions))
                   - log_kept.view(batch, positions))
    p_draft = torch.where(kept_draft, torch.exp(log_p_draft), 0.0)[:, :-1]
    q_draft = (draft_probs.gather(2, draft_token_ids.clamp(0, vocab - 1)[..., None])[..., 0].float()
               if draft_probs is not None else torch.ones_like(p_draft))
    position = torch.arange(positions - 1, device=device)
    accept_words = token_list_words(seeds.repeat_interleave(positions - 1),
                                    torch.full((batch * (positions - 1),), ACCEPT_TOKEN, device=device),
                                    streams.repeat_interleave(positions - 1),
                                    (offsets[:, None] + position[None, :]).flatten())
    uniform = uniform_from_words(accept_words).view(batch, positions - 1)
    accepted = torch.where(greedy_rows[:, None], drafts[:, :-1] == argmax[:, :-1], uniform * q_draft < p_draft)
    accepted &= in_vocab[:, :-1] & (position[None, :] < count[:, None])
    num_accepted = accepted.long().cumprod(dim=1).sum(dim=1)

    # The one drawn token per row: recovered at the first rejection, or the bonus past the last draft.
    final = num_accepted  # its position
    rows = torch.arange(batch, device=device)
    at_final = rows * positions + final
    bonus = final == count
    final_logits = flat.index_select(0, at_final)
    # The plain sampler's draw at position `final`: a shared seed (an int, or the drawn one as a 0-d
    # tensor) keeps the batch row as its stream, since the gathered rows are in batch order.
    shared = row_params.seed_shared and isinstance(row_params.seed, torch.Tensor)
    bonus_tokens = sample(final_logits, row_params.p_base, row_params.temp,
                          seed=row_params.seed.reshape(()) if shared else row_params.seed, offset=offsets + final,
                          temperature_first=temperature_first, top_k=row_params.top_k, top_p=row_params.top_p,
                          top_p_after_min_p=top_p_after_min_p, backend=backend)
    draft_at_final = drafts.gather(1, final[:, None])[:, 0]
    q_rows = draft_probs[rows, final.clamp_max(positions - 2)] if draft_probs is not None and positions > 1 else None
    recovered = _recovered(x.index_select(0, at_final), threshold[at_final], row_max[at_final], scale[at_final],
                           log_kept[at_final], q_rows, draft_at_final, seeds, offsets + final, streams)
    recovered = torch.where(greedy_rows, argmax[rows, final], recovered)
    final_token = torch.where(bonus, bonus_tokens, recovered)

    out = torch.where(position[None, :] < num_accepted[:, None], draft_token_ids, -1)
    out = torch.cat([out, out.new_full((batch, 1), -1)], dim=1).scatter_(1, final[:, None], final_token[:, None])
    invalid = (final_token < 0) | threshold.view(batch, positions).isnan().any(dim=1)
    out = torch.where(invalid[:, None], -1, out)
    return out, torch.where(invalid, 0, num_accepted)
