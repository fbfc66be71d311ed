"""The torch backend (``backend="torch"``): same noise, same tokens as the Triton kernel.

Which path runs where:

* **CPU: the kept-token path.**  Only kept tokens can be drawn, and an LM-like row keeps tens of its
  128k tokens, so the row max, the threshold and the kept set come first (two passes over the
  logits plus a ``nonzero``); Philox and the Gumbel noise are then computed for the kept
  (row, token) pairs of all rows at once, one Philox call per distinct (row, counter), and each
  row's argmax is a scatter-reduce over its pairs.  The ``nonzero`` syncs, which costs nothing on
  the CPU.  Logits are converted to float32 and sanitised (NaN, ``+inf``) in full only when a row
  max shows a NaN or ``+inf``; otherwise only the kept values are converted.
* **Every other device (CUDA): the dense reference** (:func:`minp_kernels.reference.sample_reference`),
  which scores every token and never syncs with the host, so it stays CUDA-graph safe.  On CUDA the
  Triton kernel is the fast path.

Both paths give bit-identical tokens: the same noise word per global token id
(:mod:`minp_kernels.philox`), the same float32 score ``max(x * inv_temp + G, -FLT_MAX)`` computed
as two separately rounded operations, the lowest index among equal scores, and token ``-1`` for a
row whose kept set is empty (no finite logit, or an invalid per-row ``p_base`` / ``temp``).
Log-probabilities use the dense path's formula, ``(x - m) * inv_temp - logsumexp`` over the kept
set, and match it within float32 rounding of the sum.
"""

from dataclasses import dataclass

import torch

from .params import RowParams
from .philox import gumbel_from_words, pair_words
from .reference import (
    FLT_MAX,
    NEG_INF,
    kept_threshold,
    row_constants,
    row_noise_keys,
    row_tensor,
    sample_reference,
    sanitize_logits,
    shard_candidates_reference,
)

__all__ = ["sample_torch", "shard_candidates_torch"]


@dataclass
class _KeptPairs:
    """The kept (row, column) pairs of a batch, in row-major order, with their draw scores."""

    x: torch.Tensor  # [B, V] logits: the input when it has no NaN / +inf, else sanitised float32
    row_max: torch.Tensor  # float32 [B]
    inv_temp: torch.Tensor  # float32 [B]
    greedy: torch.Tensor  # bool [B]
    rows: torch.Tensor  # int64 [K]
    cols: torch.Tensor  # int64 [K]
    values: torch.Tensor  # float32 [K], the kept logits
    best: torch.Tensor  # float32 [B], the row's best score (-inf when it keeps nothing)
    col: torch.Tensor  # int64 [B], the lowest column holding it (0 when the row keeps nothing)


# Columns per chunk of the kept-set search: one max per chunk in the first pass, then only chunks
# whose max reaches the threshold are read again.  256 keeps the chunk reduction about as fast as a
# whole-row max for 16-bit logits too (narrower chunks reduce 2-4x slower on one CPU thread).
CHUNK = 256


@dataclass
class _Chunks:
    """The logits split into ``[B, n, CHUNK]`` full chunks and a ``[B, V % CHUNK]`` tail (views)."""

    x: torch.Tensor  # [B, V]: the input when it has no NaN / +inf, else sanitised float32
    body: torch.Tensor  # [B, n, CHUNK]
    tail: torch.Tensor  # [B, V - n * CHUNK]
    body_max: torch.Tensor  # [B, n], in the logits' dtype
    row_max: torch.Tensor  # float32 [B]

    @classmethod
    def of(cls, x: torch.Tensor) -> "_Chunks":
        batch, vocab = x.shape
        n = vocab // CHUNK
        body = x[:, :n * CHUNK].reshape(batch, n, CHUNK)
        tail = x[:, n * CHUNK:]
        body_max = body.amax(dim=-1)  # NaN and +inf propagate into the maxima
        row_max = torch.cat([body_max, tail], dim=1).amax(dim=-1).float()
        return cls(x, body, tail, body_max, row_max)


def _comparable_chunks(logits_2d: torch.Tensor) -> _Chunks:
    """Chunks of logits whose comparisons and values equal the sanitised float32 logits.

    Without NaN or ``+inf`` the input already is its sanitised self up to an exact float32
    conversion, so it is used as is (bf16 / fp16 included) and no ``[B, V]`` copy is made.
    """
    chunks = _Chunks.of(logits_2d)
    if bool((torch.isnan(chunks.row_max) | (chunks.row_max == float("inf"))).any()):
        return _Chunks.of(sanitize_logits(logits_2d))
    return chunks


def _kept_entries(chunks: _Chunks, threshold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows, columns and float32 values of the logits ``>= threshold[row]``.

    Only chunks whose max reaches the threshold are compared token by token.  Entries come row by
    row for the full chunks, then row by row for the tail.
    """
    live_rows, live_chunks = (chunks.body_max >= threshold[:, None]).nonzero(as_tuple=True)
    live = chunks.body[live_rows, live_chunks]  # [L, CHUNK] copy of the live chunks
    which, within = (live >= threshold[live_rows, None]).nonzero(as_tuple=True)
    tail_rows, tail_cols = (chunks.tail >= threshold[:, None]).nonzero(as_tuple=True)
    rows = torch.cat([live_rows[which], tail_rows])
    cols = torch.cat([live_chunks[which] * CHUNK + within, tail_cols + chunks.body.shape[1] * CHUNK])
    values = torch.cat([live[which, within], chunks.tail[tail_rows, tail_cols]]).float()
    return rows, cols, values


def _kept_pairs(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool, token_base: int,
                row_max: torch.Tensor | None = None) -> _KeptPairs:
    """Kept set, noise for the kept pairs only, and each row's best score and lowest best column."""
    batch, vocab = logits_2d.shape
    device = logits_2d.device
    p_base = row_tensor(params.p_base, batch, device, torch.float64)
    temp = row_tensor(params.temp, batch, device, torch.float32)
    inv_temp, delta, greedy = row_constants(p_base, temp, temperature_first)
    chunks = _comparable_chunks(logits_2d)
    row_max = chunks.row_max if row_max is None else row_max
    rows, cols, values = _kept_entries(chunks, kept_threshold(row_max, delta))

    seed, offset, stream = row_noise_keys(params, batch, device)
    noise = gumbel_from_words(pair_words(rows, cols + token_base, seed, stream, offset))
    pair_inv_temp = inv_temp[rows]
    scores = (values * pair_inv_temp + noise).clamp_min_(-FLT_MAX)  # two roundings, as the kernel
    scores = torch.where(greedy[rows], values, scores)

    best = torch.full((batch,), NEG_INF, device=device).scatter_reduce_(0, rows, scores, "amax")
    winners = scores == best[rows]
    col = torch.full((batch,), vocab, device=device, dtype=torch.int64)
    col.scatter_reduce_(0, rows[winners], cols[winners], "amin")  # lowest column among equal scores
    col = torch.where(best == NEG_INF, 0, col)
    return _KeptPairs(chunks.x, row_max, inv_temp, greedy, rows, cols, values, best, col)


def _log_normaliser(kept: _KeptPairs, shifted: torch.Tensor) -> torch.Tensor:
    """Per-row ``logsumexp`` of ``shifted`` over the kept pairs, computed as ``torch.logsumexp`` does."""
    batch = kept.best.shape[0]
    peak = torch.full((batch,), NEG_INF, device=shifted.device).scatter_reduce_(0, kept.rows, shifted, "amax")
    peak = torch.where(peak.abs() == float("inf"), 0.0, peak)
    total = torch.zeros(batch, device=shifted.device).index_add_(0, kept.rows, torch.exp(shifted - peak[kept.rows]))
    return total.log_() + peak


def sample_torch(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool = False,
                 return_logprobs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sampler behind ``backend="torch"``: same noise, same tokens as the Triton kernel.

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
    if logits_2d.device.type != "cpu":
        return sample_reference(logits_2d, params, temperature_first, return_logprobs)
    kept = _kept_pairs(logits_2d, params, temperature_first, token_base=0)
    empty = kept.best == NEG_INF
    tokens = torch.where(empty, -1, kept.col)
    if not return_logprobs:
        return tokens, None
    log_norm = _log_normaliser(kept, (kept.values - kept.row_max[kept.rows]) * kept.inv_temp[kept.rows])
    picked = (kept.x.gather(1, kept.col[:, None])[:, 0].float() - kept.row_max) * kept.inv_temp
    logprobs = torch.where(kept.greedy, 0.0, picked - log_norm)
    return tokens, torch.where(empty, float("nan"), logprobs)


def shard_candidates_torch(logits_2d: torch.Tensor, row_max: torch.Tensor, params: RowParams,
                           temperature_first: bool, token_base: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best kept token of a vocabulary shard given the global row max; twin of the shard kernel.

    Same arguments and results as :func:`minp_kernels.reference.shard_candidates_reference`:
    float32 ``[B, 3]`` (score, logit, sum of ``exp((x - m) / T)`` over kept) and the local column
    ``[B]`` (int64); a row with no kept token in the shard has score ``-inf``, column 0 and sum 0.
    """
    if logits_2d.device.type != "cpu":
        return shard_candidates_reference(logits_2d, row_max, params, temperature_first, token_base)
    kept = _kept_pairs(logits_2d, params, temperature_first, token_base, row_max)
    weights = torch.exp((kept.values - row_max[kept.rows]) * kept.inv_temp[kept.rows])
    z = torch.zeros_like(kept.best).index_add_(0, kept.rows, weights)
    logit = kept.x.gather(1, kept.col[:, None])[:, 0].float()
    return torch.stack([kept.best, logit, z], dim=1), kept.col
