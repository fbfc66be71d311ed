"""The torch backend (``backend="torch"``): same noise, same tokens as the Triton kernel.

Which path runs where:

* **CPU: the kept-token path.**  Only kept tokens can be drawn, and an LM-like row keeps tens of its
  128k tokens.  One pass takes the max of every chunk of ``CHUNK`` columns, which gives the row
  max and the threshold; only the chunks whose max reaches the threshold ("live" chunks, gathered
  from every row at once) are read again.  Philox and the Gumbel noise are then computed for the
  kept tokens of the live chunks, one vectorised computation for the whole batch:

  - when the live chunks are sparse (fewer than one kept token in ``PAIR_DENSITY``), per kept
    (row, token) pair: a Philox call each, its word picked by the token's lane;
  - when they are dense (flat rows, low ``p_base``), per live chunk: one Philox call per four
    tokens, as the dense reference does for whole rows.  When nearly every chunk is live, the
    whole rows are scored in place instead of gathering their chunks.

  Each row's best score and lowest best column come from a scatter-reduce over its pairs (or
  runs).  The ``nonzero`` calls sync, which costs nothing on the CPU.  Logits are converted to
  float32 and sanitised (NaN, ``+inf``) in full only when a row max shows a NaN or ``+inf``;
  otherwise only the values that are scored are converted.
* **Every other device (CUDA): the dense reference** (:func:`minp_kernels.reference.sample_reference`),
  which scores every token and never syncs with the host, so it stays CUDA-graph safe.  On CUDA the
  Triton kernel is the fast path.

Both paths give bit-identical tokens: the same noise word per global token id
(:mod:`minp_kernels.philox`), the same float32 score :func:`~minp_kernels.reference.gumbel_scores`
computed as separately rounded operations, the lowest index among equal scores, and token ``-1`` for a
row whose kept set is empty (no finite logit, or an invalid per-row ``p_base`` / ``temp``).
Log-probabilities are ``(x - m) * inv_temp - log(sum over kept of exp((x - m) * inv_temp))``, the
dense path's ``logsumexp`` (whose peak is 0: the row max is kept), equal to it within float32
rounding of the sum.
"""

from dataclasses import dataclass

import torch

from .params import RowParams, invalid_rows
from .philox import counter_run_words, gumbel_from_words, token_list_words
from .reference import sample_reference, shard_candidates_reference
from .rows import (
    NEG_INF,
    filter_threshold,
    gumbel_scores,
    has_filters,
    kept_threshold,
    params_constants,
    row_noise_keys,
    sanitize_logits,
)

__all__ = ["sample_torch", "shard_candidates_torch"]

# Columns per chunk: the first pass keeps one max per chunk.  256 keeps that reduction about as fast
# as a whole-row max for 16-bit logits too (narrower chunks reduce 2-4x slower on one CPU thread).
CHUNK_BITS = 8
CHUNK = 1 << CHUNK_BITS
# Below one kept token in PAIR_DENSITY columns of the runs, noise per kept pair (a Philox call and
# a few gathers each) is cheaper than noise for whole runs (a quarter of a call per column, plus
# the scoring of every column).  Measured on one CPU thread, B = 8, V = 50000: the two cost the same
# at 11-21% kept.
PAIR_DENSITY = 8


# When the live chunks hold at least this share of the batch's columns (flat rows), whole rows are
# scored in place: gathering the chunks would copy nearly everything for nothing.
WHOLE_ROWS_SHARE = 0.95


@dataclass
class _Runs:
    """The runs of columns that hold kept tokens, one row of ``data`` each: the live chunks of every
    row gathered into ``[L, CHUNK]``, or the whole rows ``[B, V]`` when nearly every chunk is live."""

    x: torch.Tensor  # [B, V]: the input when it has no NaN / +inf, else sanitised float32
    row_max: torch.Tensor  # float32 [B]
    threshold: torch.Tensor  # float32 [B]: x >= threshold is the kept set
    rows: torch.Tensor  # int64 [L], the row of each run
    first_col: torch.Tensor  # int64 [L], its first column
    data: torch.Tensor  # [L, W] logits of the runs (-inf past the end of the row)
    whole_rows: bool  # the runs are the rows themselves (rows = arange(B), first_col = 0)


def _chunk_maxima(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, n, CHUNK]`` view of the full chunks, the ``[B, V mod CHUNK]`` tail, the full chunks'
    maxima ``[B, n]`` and the row max (float32 ``[B]``; NaN and ``+inf`` propagate into it)."""
    batch, vocab = x.shape
    n = vocab >> CHUNK_BITS
    body = x[:, :n << CHUNK_BITS].reshape(batch, n, CHUNK)
    tail = x[:, n << CHUNK_BITS:]
    body_max = body.amax(dim=-1)
    return body, tail, body_max, torch.cat([body_max, tail], dim=1).amax(dim=-1).float()


def _live_runs(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool, row_max: torch.Tensor | None,
               constants: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> _Runs:
    """Row max (unless given, for a shard), the kept set's threshold, and the chunks whose max reaches it.

    Without NaN or ``+inf`` the input already is its sanitised self up to an exact float32
    conversion, so it is compared as is (bf16 / fp16 included) and no ``[B, V]`` copy is made
    (top-k / top-p rows take a float32 copy for their thresholds).
    """
    inv_temp, delta, greedy = constants
    x = logits_2d
    body, tail, body_max, local_max = _chunk_maxima(x)
    if bool((torch.isnan(local_max) | (local_max == float("inf"))).any()):
        x = sanitize_logits(logits_2d)
        body, tail, body_max, local_max = _chunk_maxima(x)
    row_max = local_max if row_max is None else row_max
    threshold = kept_threshold(row_max, delta, invalid_rows(params, x.shape[0], x.device))
    if has_filters(params):
        threshold = filter_threshold(x.float(), row_max, threshold, inv_temp, greedy, params, temperature_first)
    batch, n, tail_width = body.shape[0], body.shape[1], tail.shape[1]

    live = (body_max >= threshold[:, None]).view(-1).nonzero().squeeze(1)
    tail_rows = (tail.amax(dim=-1) >= threshold).nonzero().squeeze(1) if tail_width else live[:0]
    if live.shape[0] * CHUNK + tail_rows.shape[0] * tail_width >= WHOLE_ROWS_SHARE * x.numel():
        rows = torch.arange(batch, device=x.device)
        return _Runs(x, row_max, threshold, rows, torch.zeros_like(rows), x, whole_rows=True)
    body_rows = live // max(n, 1)
    body_chunks = live - body_rows * n
    rows, first_col, data = [body_rows], [body_chunks << CHUNK_BITS], [body[body_rows, body_chunks]]
    if tail_width:
        padded = torch.full((tail_rows.shape[0], CHUNK), NEG_INF, device=x.device, dtype=x.dtype)
        padded[:, :tail_width] = tail.index_select(0, tail_rows)
        rows.append(tail_rows)
        first_col.append(torch.full_like(tail_rows, n << CHUNK_BITS))
        data.append(padded)
    return _Runs(x, row_max, threshold, torch.cat(rows), torch.cat(first_col), torch.cat(data), whole_rows=False)


@dataclass
class _RowDraws:
    """Each row's draw: its best score, the lowest column holding it, and the normaliser."""

    x: torch.Tensor  # [B, V], as in _Runs
    row_max: torch.Tensor  # float32 [B]
    inv_temp: torch.Tensor  # float32 [B]
    greedy: torch.Tensor  # bool [B]
    best: torch.Tensor  # float32 [B], -inf when the row keeps nothing
    col: torch.Tensor  # int64 [B], 0 when the row keeps nothing
    z: torch.Tensor | None  # float32 [B], sum over kept of exp((x - m) * inv_temp), if asked for


@dataclass
class _RunRows:
    """Per-run copies of the row values the scoring needs (views of the rows' own for whole rows)."""

    seed: torch.Tensor
    offset: torch.Tensor
    stream: torch.Tensor
    inv_temp: torch.Tensor
    greedy: torch.Tensor
    row_max: torch.Tensor


# Scored items: (row, column, score, exp((x - m) * inv_temp) or None) of kept pairs or of whole runs.
_Items = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


def _pair_items(runs: _Runs, per_run: _RunRows, kept: torch.Tensor, token_base: int, with_z: bool) -> _Items:
    """One item per kept (row, token) pair: a Philox call each, its word picked by the token's lane."""
    which, within = kept.nonzero(as_tuple=True)
    rows = runs.rows.index_select(0, which)
    cols = runs.first_col.index_select(0, which) + within
    x = runs.data[which, within].float()
    seed, offset, stream, inv_temp, greedy, row_max = (
        v.index_select(0, which) for v in (per_run.seed, per_run.offset, per_run.stream, per_run.inv_temp,
                                           per_run.greedy, per_run.row_max))
    words = token_list_words(seed, cols + token_base, stream, offset)
    noisy = gumbel_scores(x, row_max, inv_temp, gumbel_from_words(words))
    z = torch.exp((x - row_max) * inv_temp) if with_z else None
    return rows, cols, torch.where(greedy, x, noisy), z


def _run_items(runs: _Runs, per_run: _RunRows, kept: torch.Tensor, token_base: int, with_z: bool) -> _Items:
    """One item per run: every column scored (one Philox call per four tokens), the run's best kept."""
    width = runs.data.shape[1]
    lane = token_base & 3  # runs start at column 0 or a multiple of CHUNK: their first id has this lane
    # A shared first counter stays an int, broadcast, instead of a [runs, counters] tensor.
    first_counter = token_base >> 2 if runs.whole_rows else (runs.first_col + token_base) >> 2
    words = counter_run_words(per_run.seed, per_run.offset, per_run.stream, first_counter, (lane + width + 3) >> 2)
    x = runs.data.float()
    inv_temp = per_run.inv_temp[:, None]
    noisy = gumbel_scores(x, per_run.row_max[:, None], inv_temp, gumbel_from_words(words[:, lane:lane + width]))
    scores = torch.where(kept, torch.where(per_run.greedy[:, None], x, noisy), NEG_INF)
    best, within = scores.max(dim=1)  # first maximal column of each run
    z = None
    if with_z:
        z = torch.exp(torch.where(kept, (x - per_run.row_max[:, None]) * inv_temp, NEG_INF)).sum(dim=1)
    return runs.rows, runs.first_col + within, best, z


def _draw_rows(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool, token_base: int,
               row_max: torch.Tensor | None = None, with_z: bool = False) -> _RowDraws:
    """Kept set, noise for the live chunks' kept tokens only, and each row's argmax (and normaliser)."""
    batch, vocab = logits_2d.shape
    device = logits_2d.device
    inv_temp, delta, greedy = params_constants(params, batch, device, temperature_first)
    runs = _live_runs(logits_2d, params, temperature_first, row_max, (inv_temp, delta, greedy))

    per_row = (*row_noise_keys(params, batch, device), inv_temp, greedy, runs.row_max, runs.threshold)
    if not runs.whole_rows:
        per_row = tuple(v.index_select(0, runs.rows) for v in per_row)
    kept = runs.data >= per_row[-1][:, None]
    per_run = _RunRows(*per_row[:-1])
    items = _pair_items if int(kept.sum()) * PAIR_DENSITY < kept.numel() else _run_items
    item_rows, item_cols, item_best, item_z = items(runs, per_run, kept, token_base, with_z)

    best = torch.full((batch,), NEG_INF, device=device).scatter_reduce_(0, item_rows, item_best, "amax")
    # The lowest column among the items that reach their row's best score (vocab: never reached).
    winner_cols = torch.where(item_best == best.index_select(0, item_rows), item_cols, vocab)
    col = torch.full((batch,), vocab, device=device, dtype=torch.int64)
    col = col.scatter_reduce_(0, item_rows, winner_cols, "amin")
    col = torch.where(best == NEG_INF, 0, col)
    z = torch.zeros(batch, device=device).index_add_(0, item_rows, item_z) if with_z else None
    return _RowDraws(runs.x, runs.row_max, inv_temp, greedy, best, col, z)


def sample_torch(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool = False,
                 return_logprobs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sampler behind ``backend="torch"``: same noise, same tokens as the Triton kernel.

    Arguments and results as :func:`minp_kernels.reference.sample_reference` (the dense definition,
    which this runs on devices other than the CPU); on the CPU only kept tokens get noise.
    """
    if logits_2d.device.type != "cpu":
        return sample_reference(logits_2d, params, temperature_first, return_logprobs)
    draw = _draw_rows(logits_2d, params, temperature_first, 0, with_z=return_logprobs)
    empty = draw.best == NEG_INF
    tokens = torch.where(empty, -1, draw.col)
    if not return_logprobs:
        return tokens, None
    picked = (draw.x.gather(1, draw.col[:, None])[:, 0].float() - draw.row_max) * draw.inv_temp
    logprobs = torch.where(draw.greedy, 0.0, picked - torch.log(draw.z))
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
    draw = _draw_rows(logits_2d, params, temperature_first, token_base, row_max, with_z=True)
    logit = draw.x.gather(1, draw.col[:, None])[:, 0].float()
    return torch.stack([draw.best, logit, draw.z], dim=1), draw.col
