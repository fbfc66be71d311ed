"""Vocab-parallel min-p sampling for tensor-parallel serving.

Each rank holds ``[B, V_local]`` logits for global ids ``vocab_start .. vocab_start + V_local``
(``vocab_start`` is the shard's ``token_base``: the global id of its column 0).
Instead of all-gathering ``B * V`` logits, :func:`sample` moves ``O(B * world_size)`` bytes:

1. all-reduce (MAX) of the ``B`` local row maxima: the global threshold ``m + delta``;
2. each rank's best kept token under that threshold, its noise keyed by the *global* token id;
3. all-gather of ``B`` (score, logit, normaliser part, global id) records; every rank picks the best.

Because the noise depends only on (seed, offset, stream, global id), the result is exactly what
:func:`minp_kernels.sample` returns on the concatenated logits with the same seed and offset.

With top-k / top-p the ranks agree on the kept set's threshold first (:func:`global_threshold`):
an all-gather of each rank's ``k`` largest values per row for ``tau_k``, and for ``tau_p`` exact
int64 sums (all-reduce) of the top-p mass units and of their log-weight buckets, then an all-gather
of the tokens in each row's boundary bucket only.  Integer sums do not depend on their order, so the
threshold, and the token, are those of the unsharded row.
"""

import dataclasses
import numbers

import torch
import torch.distributed as dist

from ._validation import validate_backend, validate_flag, validate_logits, validate_params
from .params import MAX_VOCAB, RowInt, RowParams, RowValue, invalid_rows
from .rows import (
    NEG_INF,
    boundary_bucket,
    bucket_masses,
    has_filters,
    kept_threshold,
    mass_units,
    pack_rows,
    params_constants,
    row_constants,
    row_tensor,
    sanitize_logits,
    top_k_on,
    top_p_inputs,
    top_p_threshold_of_sorted,
)
from .torch_sampler import shard_candidates_torch


def _all_gather_cat(tensor: torch.Tensor, group) -> torch.Tensor:
    """Every rank's ``[B, n]`` tensor side by side: ``[B, world * n]``."""
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, tensor.contiguous(), group=group)
    return torch.cat(gathered, dim=1)


def _all_reduce(tensor: torch.Tensor, op, group) -> torch.Tensor:
    dist.all_reduce(tensor, op=op, group=group)
    return tensor


def global_threshold(x: torch.Tensor, row_max: torch.Tensor, params: RowParams, temperature_first: bool,
                     group=None) -> torch.Tensor:
    """The kept set's threshold of the unsharded rows with top-k / top-p, from each rank's shard.

    ``x``: this rank's sanitised float32 shard ``[B, V_local]``, ``row_max`` the global row max.
    Collective: every rank calls it with the same parameters.  Reads a few values on the host (the
    largest ``k`` and the widest boundary bucket), as the collectives do anyway.
    """
    batch, local = x.shape
    vocab = int(_all_reduce(torch.tensor([local], dtype=torch.int64, device=x.device), dist.ReduceOp.SUM, group))
    inv_temp, delta, greedy = params_constants(params, batch, x.device, temperature_first)
    minp_threshold = kept_threshold(row_max, delta, invalid_rows(params, batch, x.device))
    threshold, tau_k = minp_threshold, torch.full((batch,), NEG_INF, device=x.device)
    if params.top_k is not None:
        top_k = row_tensor(params.top_k, batch, x.device, torch.int64).clamp_min(0)
        on = top_k_on(top_k, vocab)
        largest = int(torch.where(on, top_k, 1).max())
        mine = torch.full((batch, largest), NEG_INF, device=x.device)
        mine[:, :min(largest, local)] = x.topk(min(largest, local), dim=1).values
        values = _all_gather_cat(mine, group).topk(largest, dim=1).values
        tau_k = torch.where(on, values.gather(1, (torch.where(on, top_k, 1) - 1)[:, None])[:, 0], NEG_INF)
        threshold = torch.maximum(threshold, tau_k)
    if params.top_p is not None:
        a_threshold, scale, top_p = top_p_inputs(params, minp_threshold, tau_k, inv_temp, greedy, temperature_first)
        in_a = x >= a_threshold[:, None]
        units = torch.where(in_a, mass_units(x, row_max[:, None], scale[:, None]), 0)
        total = _all_reduce(units.sum(dim=1), dist.ReduceOp.SUM, group)
        bucket, mass = bucket_masses(x, row_max, units, in_a, scale)
        boundary, base = boundary_bucket(_all_reduce(mass, dist.ReduceOp.SUM, group), total, top_p)
        rows, cols = (bucket == boundary[:, None]).nonzero(as_tuple=True)
        # On the shard's device, even when this rank holds none of the boundary tokens: NCCL takes no CPU tensor.
        width = torch.bincount(rows, minlength=batch).amax().reshape(1) if rows.numel() else torch.ones(
            1, dtype=torch.int64, device=x.device)
        width = max(1, int(_all_reduce(width.to(torch.int64), dist.ReduceOp.MAX, group)))
        values, slice_units = pack_rows(rows, batch, (x[rows, cols], NEG_INF), (units[rows, cols], 0), width=width)
        values, order = _all_gather_cat(values, group).sort(dim=1, descending=True)
        tau_p = top_p_threshold_of_sorted(values, _all_gather_cat(slice_units, group).gather(1, order), total, top_p,
                                          base)
        threshold = torch.maximum(threshold, torch.where(top_p < 1.0, tau_p, NEG_INF))
    return threshold


def sample(local_logits: torch.Tensor, p_base: RowValue, temp: RowValue, *, vocab_start: int,
           group: dist.ProcessGroup | None = None, seed: RowInt | None = None, offset: RowInt = 0,
           temperature_first: bool = False, top_k: RowInt | None = None, top_p: RowValue | None = None,
           top_p_after_min_p: bool = False, return_logprobs: bool = False,
           backend: str = "auto") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Min-p sample rows whose vocabulary is split across the ranks of ``group``.

    Parameters
    ----------
    local_logits : torch.Tensor
        ``[B, V_local]`` (or ``[V_local]``) logits of this rank's shard; shards may be uneven.
    p_base, temp, seed, offset, temperature_first, top_k, top_p, top_p_after_min_p, return_logprobs, backend
        As in :func:`minp_kernels.sample`; every rank must pass the same values (with ``seed=None``
        rank 0's drawn seed is broadcast).  ``top_k`` counts over the whole vocabulary.
    vocab_start : int
        Global id of this shard's column 0.
    group : torch.distributed.ProcessGroup, optional
        Default: the world.

    Returns
    -------
    torch.Tensor or tuple of torch.Tensor
        The same int64 global token ids ``[B]`` on every rank (``-1`` where no rank has a finite
        logit or the row's per-row ``p_base`` / ``temp`` is invalid), and log-probabilities with
        ``return_logprobs`` (NaN where the token is ``-1``).
    """
    logits_2d, was_1d = validate_logits(local_logits)
    backend = validate_backend(backend, logits_2d)
    if isinstance(vocab_start, bool) or not isinstance(vocab_start, numbers.Integral):
        raise TypeError(f"vocab_start: expected an int, got {type(vocab_start).__name__}")
    if vocab_start < 0 or vocab_start + logits_2d.shape[1] > MAX_VOCAB:
        raise ValueError(f"vocab_start: expected an int >= 0 with vocab_start + V_local <= {MAX_VOCAB} (32-bit "
                         f"token ids), got {vocab_start} with V_local = {logits_2d.shape[1]}")
    temperature_first = validate_flag("temperature_first", temperature_first)
    return_logprobs = validate_flag("return_logprobs", return_logprobs)
    params = validate_params(logits_2d, p_base, temp, seed, offset, None, top_k, top_p, top_p_after_min_p)
    if params.top_k is None and top_k is not None and not isinstance(top_k, torch.Tensor) and top_k > 0:
        params = dataclasses.replace(params, top_k=int(top_k))  # >= V_local is not off: V is the whole vocabulary
    if seed is None:
        dist.broadcast(params.seed, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    batch = logits_2d.shape[0]

    x = sanitize_logits(logits_2d)
    row_max = x.amax(dim=-1)
    dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)  # B floats on the wire
    if has_filters(params):
        params = dataclasses.replace(params, threshold=global_threshold(x, row_max, params, temperature_first, group))

    if backend == "triton":
        from .launch import shard_candidates_triton

        fields, col = shard_candidates_triton(logits_2d, row_max, params, temperature_first, vocab_start)
    else:
        fields, col = shard_candidates_torch(logits_2d, row_max, params, temperature_first, vocab_start)
    # Record: score, logit, normaliser part, global id (float64 keeps ids exact up to 2**53).
    record = torch.cat([fields.double(), (col + vocab_start).double()[:, None]], dim=1)
    gathered = [torch.empty_like(record) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, record, group=group)  # world_size * B * 32 bytes
    records = torch.stack(gathered)  # [world, B, 4]

    score, ids = records[..., 0], records[..., 3]
    best = score.max(dim=0).values
    # Lowest global id among equal best scores: the unsharded argmax's tie rule.
    winner_id = torch.where(score == best, ids, float("inf")).min(dim=0).values
    no_token = (row_max == float("-inf")) | invalid_rows(params, batch, logits_2d.device)
    tokens = torch.where(no_token, -1, winner_id.to(torch.int64))
    result = tokens[0] if was_1d else tokens
    if not return_logprobs:
        return result
    logit = torch.where(ids == winner_id, records[..., 1], float("-inf")).max(dim=0).values
    log_norm = torch.log(records[..., 2].sum(dim=0))
    inv_temp, _, greedy = row_constants(row_tensor(params.p_base, batch, logits_2d.device, torch.float64),
                                        row_tensor(params.temp, batch, logits_2d.device, torch.float32),
                                        temperature_first)
    logprobs = torch.where(greedy, 0.0, ((logit - row_max.double()) * inv_temp.double() - log_norm).float())
    logprobs = torch.where(tokens == -1, float("nan"), logprobs)
    return result, (logprobs[0] if was_1d else logprobs)
