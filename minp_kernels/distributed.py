"""Vocab-parallel min-p sampling for tensor-parallel serving.

Each rank holds ``[B, V_local]`` logits for global ids ``vocab_start .. vocab_start + V_local``
(``vocab_start`` is the shard's ``token_base``: the global id of its column 0).
Instead of all-gathering ``B * V`` logits, :func:`sample` moves ``O(B * world_size)`` bytes:

1. all-reduce (MAX) of the ``B`` local row maxima: the global threshold ``m + delta``;
2. each rank's best kept token under that threshold, its noise keyed by the *global* token id;
3. all-gather of ``B`` (score, logit, normaliser part, global id) records; every rank picks the best.

Because the noise depends only on (seed, offset, stream, global id), the result is exactly what
:func:`minp_kernels.sample` returns on the concatenated logits with the same seed and offset.
"""

import numbers

import torch
import torch.distributed as dist

from ._validation import validate_backend, validate_flag, validate_logits, validate_params
from .params import MAX_VOCAB, RowInt, RowValue, invalid_rows
from .rows import row_constants, row_tensor, sanitize_logits
from .torch_sampler import shard_candidates_torch


def sample(local_logits: torch.Tensor, p_base: RowValue, temp: RowValue, *, vocab_start: int,
           group: dist.ProcessGroup | None = None, seed: RowInt | None = None, offset: RowInt = 0,
           temperature_first: bool = False, return_logprobs: bool = False,
           backend: str = "auto") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Min-p sample rows whose vocabulary is split across the ranks of ``group``.

    Parameters
    ----------
    local_logits : torch.Tensor
        ``[B, V_local]`` (or ``[V_local]``) logits of this rank's shard; shards may be uneven.
    p_base, temp, seed, offset, temperature_first, return_logprobs, backend
        As in :func:`minp_kernels.sample`; every rank must pass the same values (with ``seed=None``
        rank 0's drawn seed is broadcast).
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
    params = validate_params(logits_2d, p_base, temp, seed, offset, None)
    if seed is None:
        dist.broadcast(params.seed, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    batch = logits_2d.shape[0]

    row_max = sanitize_logits(logits_2d).amax(dim=-1)
    dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)  # B floats on the wire

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
