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

  Each row's best score and lowest best column come from a reduction over its pairs (or runs).
  Logits are converted to float32 and sanitised (NaN, ``+inf``) in full only when a row max shows
  a NaN or ``+inf``; otherwise only the values that are scored are converted.
* **Every other device (CUDA): the dense reference** (:func:`minp_kernels.reference.sample_reference`),
  which scores every token and never syncs with the host, so it stays CUDA-graph safe.  On CUDA the
  Triton kernel is the fast path.

Both paths give bit-identical tokens: the same noise word per global token id
(:mod:`minp_kernels.philox`), the same float32 score :func:`~minp_kernels.rows.gumbel_scores`
computed as separately rounded operations, the lowest index among equal scores, and token ``-1`` for a
row whose kept set is empty (no finite logit, or an invalid per-row ``p_base`` / ``temp``).
Log-probabilities are ``t(x) - log(sum over kept of exp(t(x)))`` with the log-weight
``t(x) = max(x - m, -FLT_MAX) * inv_temp`` (:func:`minp_kernels.rows.tempered`), the
dense path's ``logsumexp`` (whose peak is 0: the row max is kept), equal to it within float32
rounding of the sum.

What a CPU call costs (why the small arrays live in numpy)
----------------------------------------------------------
Besides the one pass over the logits, a call handles arrays of a few to a few thousand values:
per-row constants, thresholds, the live chunks, the kept pairs.  A torch operation costs 2-5 us on
such arrays on one thread, a numpy one 0.5-1 us; and in a serving engine the sampler runs right
after the LM head has streamed its weights (65 MB at V = 128256, hidden 128) through the caches,
so every distinct operation also pays for its code coming back from memory: a first small torch
operation costs ~35 us then, a numpy one ~20 us, each further one ~5 and ~2 us (measured on this
project's 2-core CPU).  So everything after the first pass is numpy on views of the same memory
(no copies), except the logarithms of the Gumbel noise (torch's, bit for bit the other paths'
noise), the top-k / top-p thresholds (:func:`minp_kernels.rows.filter_threshold`, torch) and the
dense-run path (flat rows, whose arrays are large).  The per-row formulas used on numpy arrays, the
min-p threshold, the log-weight and the Gumbel score, are :func:`minp_kernels.rows.kept_threshold`,
:func:`minp_kernels.rows.tempered` and :func:`minp_kernels.rows.gumbel_scores` written with numpy's
IEEE float32 operations in the same order (``tests/test_torch_sampler.py`` checks them bit for bit
against those); the per-row
constants come from :func:`minp_kernels.rows.params_constants` itself, remembered per parameter
values (:func:`_constants`).  One call for a row of V = 128256 makes about 5 torch and 50 numpy
calls (it made about 120 torch calls before).
"""

from dataclasses import dataclass

import numpy as np
import torch

from .params import RowParams, invalid_rows
from .philox import counter_run_words_numpy, gumbel_from_words_numpy, token_words_numpy
from .reference import sample_reference, shard_candidates_reference
from .rows import (
    FLT_MAX,
    NEG_INF,
    filter_threshold,
    gumbel_scores,
    has_filters,
    params_constants,
    sanitize_logits,
    tempered,
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

_CPU = torch.device("cpu")
# Kept masks of at most this many entries get their indices before the pairs-or-runs choice.
_NONZERO_FIRST = 64 * CHUNK
_NEG_INF = np.float32(NEG_INF)
_NAN = np.float32(np.nan)
_LOWEST = np.float32(-FLT_MAX)

# A per-row key is one int64 (shared by every row) or an int64 array [B].
_Key = np.ndarray | np.int64


def _float_array(t: torch.Tensor) -> np.ndarray:
    """A float32 numpy view of a CPU tensor (a copy only when it is another dtype)."""
    return (t if t.dtype == torch.float32 else t.float()).numpy()


def kept_threshold_numpy(row_max: np.ndarray, delta_or_nan: np.ndarray) -> np.ndarray:
    """:func:`minp_kernels.rows.kept_threshold` on numpy float32 arrays: ``max(m + delta, -FLT_MAX)``,
    with ``delta_or_nan`` NaN on the invalid rows (NaN propagates through both operations, so those
    rows get NaN as there); the same IEEE operations, so the same floats."""
    return np.maximum(row_max + delta_or_nan, _LOWEST)


def tempered_numpy(x: np.ndarray, row_max: np.ndarray, inv_temp: np.ndarray) -> np.ndarray:
    """:func:`minp_kernels.rows.tempered` on numpy float32 arrays: ``max(x - m, -FLT_MAX) * inv_temp``."""
    weights = np.maximum(x - row_max, _LOWEST)
    weights *= inv_temp
    return weights


def gumbel_scores_numpy(x: np.ndarray, row_max: np.ndarray, inv_temp: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """:func:`minp_kernels.rows.gumbel_scores` on numpy float32 arrays, rounded after each operation
    in the same order: ``max(max(x - m, -FLT_MAX) * inv_temp + G, -FLT_MAX)``."""
    scores = tempered_numpy(x, row_max, inv_temp)
    scores += noise
    return np.maximum(scores, _LOWEST, out=scores)


@dataclass
class _Rows:
    """Per-row values of the draw: numpy arrays ``[B]`` (keys may be one int64 for every row), and
    torch views of the ones the log-probabilities and top-k / top-p need."""

    inv_temp: np.ndarray  # float32
    greedy: np.ndarray  # bool
    any_greedy: bool
    row_max: np.ndarray  # float32
    threshold: np.ndarray  # float32: x >= threshold is the kept set (NaN: keeps nothing)
    seed: _Key
    offset: _Key
    stream: _Key
    inv_temp_t: torch.Tensor
    greedy_t: torch.Tensor
    row_max_t: torch.Tensor


@dataclass
class _Chunks:
    """The first pass: the full chunks of every row and their maxima, the tail's max, the row max."""

    body: torch.Tensor  # [B, n, CHUNK] view of the full chunks
    body_max: np.ndarray  # float32 [B, n]
    tail_max: np.ndarray | None  # float32 [B] (None: no tail, V a multiple of CHUNK)
    row_max: np.ndarray  # float32 [B]; NaN and +inf propagate into it


@dataclass
class _Runs:
    """The runs of columns that hold kept tokens, one row of ``data`` each: the live chunks of every
    row gathered into ``[L, CHUNK]``, or the whole rows ``[B, V]`` when nearly every chunk is live."""

    rows: np.ndarray  # int64 [L], the row of each run
    first_col: np.ndarray  # int64 [L], its first column
    data: np.ndarray  # float32 [L, W] logits of the runs (-inf past the end of the row)
    whole_rows: bool  # the runs are the rows themselves (rows = arange(B), first_col = 0)


def _chunk_maxima(x: torch.Tensor) -> _Chunks:
    batch, vocab = x.shape
    n = vocab >> CHUNK_BITS
    body = (x if vocab == n << CHUNK_BITS else x[:, :n << CHUNK_BITS]).view(batch, n, CHUNK)
    body_max = _float_array(body.amax(dim=-1))
    if vocab == n << CHUNK_BITS:
        return _Chunks(body, body_max, None, np.maximum.reduce(body_max, axis=1))
    tail_max = _float_array(x[:, n << CHUNK_BITS:].amax(dim=-1))
    row_max = np.maximum(np.maximum.reduce(body_max, axis=1), tail_max) if n else tail_max
    return _Chunks(body, body_max, tail_max, row_max)


def _value_key(value: object) -> object:
    """A hashable stand-in for a parameter's value: the scalar itself, or a tensor's dtype, shape and bytes."""
    if isinstance(value, torch.Tensor):
        data = value.detach() if value.requires_grad else value
        if data.dtype == torch.bfloat16:  # numpy has no bfloat16: the same bits as int16
            data = data.view(torch.int16)
        return value.dtype, tuple(value.shape), data.numpy().tobytes()
    return value


# The constants of the last few parameter sets (see _constants), oldest first.
_CONSTANTS: dict = {}
_CONSTANTS_KEPT = 32


def _constants(params: RowParams, batch: int, temperature_first: bool) -> tuple:
    """``(inv_temp, delta, greedy)`` of the rows from :func:`minp_kernels.rows.params_constants` as
    numpy arrays, ``delta`` NaN on the rows :func:`minp_kernels.params.invalid_rows` finds invalid
    (:func:`kept_threshold_numpy`'s argument), whether any row is greedy, and ``inv_temp``, ``delta``,
    ``greedy``, ``invalid`` as tensors (for top-k / top-p and log-probabilities), remembered for the
    last ``_CONSTANTS_KEPT`` parameter values.

    They depend on the parameters' values alone, which a server repeats at every decode step of a
    batch, and making them takes about twenty small torch operations: more than all the rest of a
    call for one row after the pass over the logits.  The key holds the values themselves (a
    tensor's bytes, read at the call), so a tensor changed in place afterwards makes a new key, and
    the remembered arrays are never written to.
    """
    key = (batch, temperature_first, _value_key(params.p_base), _value_key(params.temp), _value_key(params.top_k),
           _value_key(params.top_p))
    found = _CONSTANTS.get(key)
    if found is None:
        inv_temp, delta, greedy = params_constants(params, batch, _CPU, temperature_first)
        invalid = invalid_rows(params, batch, _CPU)
        found = (inv_temp.numpy(), np.where(invalid.numpy(), _NAN, delta.numpy()), greedy.numpy(),
                 bool(greedy.any()), inv_temp, delta, greedy, invalid)
        while len(_CONSTANTS) >= _CONSTANTS_KEPT:
            _CONSTANTS.pop(next(iter(_CONSTANTS)), None)
        _CONSTANTS[key] = found
    return found


def _noise_key(value: int | torch.Tensor) -> _Key:
    """A validated seed or offset: one int64 for every row (an int, or a tensor of one value), or ``[B]``."""
    if isinstance(value, torch.Tensor):
        array = value.numpy()
        return array[0] if array.shape[0] == 1 else array
    return np.int64(value)


def _row_values(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool,
                row_max: torch.Tensor | None) -> tuple[torch.Tensor, _Chunks, _Rows]:
    """The (sanitised if need be) logits, their chunk maxima and the per-row values of the draw.

    Without NaN or ``+inf`` the input already is its sanitised self up to an exact float32
    conversion, so it is compared as is (bf16 / fp16 included) and no ``[B, V]`` copy is made
    (top-k / top-p rows take a float32 copy for their thresholds).  The noise keys are laid out as
    :func:`minp_kernels.rows.row_noise_keys` lays them: the row index is the stream when the rows
    share one seed, else 0.
    """
    batch = logits_2d.shape[0]
    x = logits_2d
    chunks = _chunk_maxima(x)
    if batch and not np.maximum.reduce(chunks.row_max) < np.inf:  # a NaN or +inf somewhere
        x = sanitize_logits(logits_2d)
        chunks = _chunk_maxima(x)
    if row_max is None:
        row_max_np = chunks.row_max
    else:
        row_max_np = _float_array(row_max.detach()).reshape(batch)
    inv_temp, delta_or_nan, greedy, any_greedy, inv_temp_t, _, greedy_t, _ = _constants(params, batch,
                                                                                       temperature_first)
    threshold = kept_threshold_numpy(row_max_np, delta_or_nan)
    row_max_t = torch.from_numpy(row_max_np)
    if has_filters(params):
        threshold = filter_threshold(x.float(), row_max_t, torch.from_numpy(threshold), inv_temp_t, greedy_t, params,
                                     temperature_first).numpy()
    stream = np.arange(batch) if params.seed_shared and batch > 1 else np.int64(0)
    values = _Rows(inv_temp, greedy, any_greedy, row_max_np, threshold, _noise_key(params.seed),
                   _noise_key(params.offset), stream, inv_temp_t, greedy_t, row_max_t)
    return x, chunks, values


def _live_runs(x: torch.Tensor, chunks: _Chunks, threshold: np.ndarray) -> _Runs:
    """The chunks whose max reaches the row's threshold (and the tails that do), gathered."""
    batch, vocab = x.shape
    n = chunks.body_max.shape[1]
    tail_width = vocab - (n << CHUNK_BITS)
    live = (chunks.body_max >= threshold[:, None]).ravel().nonzero()[0]
    tail_rows = (chunks.tail_max >= threshold).nonzero()[0] if tail_width else live[:0]
    if live.shape[0] * CHUNK + tail_rows.shape[0] * tail_width >= WHOLE_ROWS_SHARE * x.numel():
        rows = np.arange(batch)
        return _Runs(rows, np.zeros_like(rows), _float_array(x), whole_rows=True)
    body_rows, body_chunks = np.divmod(live, max(n, 1))
    first_col = body_chunks << CHUNK_BITS
    if x.dtype == torch.float32:  # numpy gathers the chunks of a float32 view
        data = chunks.body.numpy()[body_rows, body_chunks]
    else:
        data = chunks.body[torch.from_numpy(body_rows), torch.from_numpy(body_chunks)].float().numpy()
    if not tail_rows.shape[0]:
        return _Runs(body_rows, first_col, data, whole_rows=False)
    padded = np.full((tail_rows.shape[0], CHUNK), _NEG_INF, dtype=np.float32)
    padded[:, :tail_width] = _float_array(x[:, n << CHUNK_BITS:])[tail_rows]
    first_cols = np.concatenate([first_col, np.full_like(tail_rows, n << CHUNK_BITS)])
    return _Runs(np.concatenate([body_rows, tail_rows]), first_cols, np.concatenate([data, padded]), whole_rows=False)


def _take(value: _Key | np.ndarray, rows: np.ndarray) -> _Key | np.ndarray:
    """The per-item values of a per-row value (one shared value stays one value)."""
    return value[rows] if isinstance(value, np.ndarray) and value.shape[0] > 1 else value


# Scored items: (row, column, score, exp((x - m) * inv_temp) or None) of kept pairs or of whole runs.
_Items = tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor | None]


def _pair_items(runs: _Runs, values: _Rows, pairs: tuple[np.ndarray, np.ndarray], token_base: int,
                with_z: bool) -> _Items:
    """One item per kept (row, token) pair (``pairs``: the kept entries' run and column within it): a
    Philox call each, its word picked by the token's lane."""
    which, within = pairs
    rows = runs.rows[which]
    cols = runs.first_col[which] + within
    x = runs.data[which, within]
    if values.row_max.shape[0] == 1:  # one row: its values broadcast over the pairs
        row_max, inv_temp, greedy, seed, stream, offset = (values.row_max, values.inv_temp, values.greedy,
                                                           values.seed, values.stream, values.offset)
    else:
        row_max, inv_temp, greedy, seed, stream, offset = (_take(v, rows) for v in (
            values.row_max, values.inv_temp, values.greedy, values.seed, values.stream, values.offset))
    words = token_words_numpy(seed, cols + token_base if token_base else cols, stream, offset)
    scores = gumbel_scores_numpy(x, row_max, inv_temp, gumbel_from_words_numpy(words))
    if values.any_greedy:
        scores = np.where(greedy, x, scores)
    z = None
    if with_z:
        z = torch.exp(torch.from_numpy(tempered_numpy(x, row_max, inv_temp)))
    return rows, cols, scores, z


def _run_items(runs: _Runs, values: _Rows, kept: np.ndarray, token_base: int, with_z: bool) -> _Items:
    """One item per run: every column scored (one Philox call per four tokens), the run's best kept."""
    width = runs.data.shape[1]
    lane = token_base & 3  # runs start at column 0 or a multiple of CHUNK: their first id has this lane
    rows = runs.rows
    # A shared first counter stays an int, broadcast, instead of a [runs, counters] array.
    first_counter = token_base >> 2 if runs.whole_rows else (runs.first_col + token_base) >> 2
    seed, offset, stream = (np.broadcast_to(v[rows] if np.ndim(v) else v, rows.shape)
                            for v in (values.seed, values.offset, values.stream))
    words = counter_run_words_numpy(seed, offset, stream, first_counter, (lane + width + 3) >> 2)
    x = torch.from_numpy(runs.data)
    kept_t = torch.from_numpy(kept)
    inv_temp = torch.from_numpy(values.inv_temp[rows])[:, None]
    row_max = torch.from_numpy(values.row_max[rows])[:, None]
    noise = torch.from_numpy(gumbel_from_words_numpy(words[:, lane:lane + width]))
    noisy = gumbel_scores(x, row_max, inv_temp, noise)
    scores = torch.where(kept_t, torch.where(torch.from_numpy(values.greedy[rows])[:, None], x, noisy), NEG_INF)
    best, within = scores.max(dim=1)  # first maximal column of each run
    z = None
    if with_z:
        z = torch.exp(torch.where(kept_t, tempered(x, row_max, inv_temp), NEG_INF)).sum(dim=1)
    return rows, runs.first_col + within.numpy(), best.numpy(), z


@dataclass
class _RowDraws:
    """Each row's draw: its best score, the lowest column holding it, and the normaliser."""

    x: torch.Tensor  # [B, V]: the input when it has no NaN / +inf, else sanitised float32
    values: _Rows
    best: np.ndarray  # float32 [B], -inf when the row keeps nothing
    col: np.ndarray  # int64 [B], 0 when the row keeps nothing
    z: torch.Tensor | None  # float32 [B], sum over kept of exp((x - m) * inv_temp), if asked for


def _draw_rows(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool, token_base: int,
               row_max: torch.Tensor | None = None, with_z: bool = False) -> _RowDraws:
    """Kept set, noise for the live chunks' kept tokens only, and each row's argmax (and normaliser)."""
    batch, vocab = logits_2d.shape
    if logits_2d.requires_grad:
        logits_2d = logits_2d.detach()
    with np.errstate(all="ignore"):  # inf - inf, 0 * inf: NaN as in torch, which never warns
        x, chunks, values = _row_values(logits_2d, params, temperature_first, row_max)
        runs = _live_runs(x, chunks, values.threshold)
        single = runs.whole_rows or batch == 1  # one threshold per run already
        kept = runs.data >= (values.threshold if single else values.threshold[runs.rows])[:, None]
        if kept.size <= _NONZERO_FIRST:  # small: the pairs' indices cost no more than their count
            pairs = kept.nonzero()
            sparse = pairs[0].shape[0] * PAIR_DENSITY < kept.size
        else:
            pairs = None
            sparse = int(np.count_nonzero(kept)) * PAIR_DENSITY < kept.size
        if sparse:
            item_rows, item_cols, item_best, item_z = _pair_items(runs, values, pairs or kept.nonzero(), token_base,
                                                                  with_z)
        else:
            item_rows, item_cols, item_best, item_z = _run_items(runs, values, kept, token_base, with_z)

    if batch == 1:  # the items are in column order: the first best one is the lowest column
        first = int(item_best.argmax()) if item_best.shape[0] else 0
        best = item_best[first:first + 1] if item_best.shape[0] else np.full(1, _NEG_INF, dtype=np.float32)
        col = item_cols[first:first + 1] if item_best.shape[0] else np.zeros(1, dtype=np.int64)
    else:
        best = np.full(batch, _NEG_INF, dtype=np.float32)
        np.maximum.at(best, item_rows, item_best)
        # The lowest column among the items that reach their row's best score (vocab: never reached).
        col = np.full(batch, vocab, dtype=np.int64)
        np.minimum.at(col, item_rows, np.where(item_best == best[item_rows], item_cols, vocab))
        col[best == _NEG_INF] = 0
    z = torch.zeros(batch).index_add_(0, torch.from_numpy(item_rows), item_z) if with_z else None
    return _RowDraws(x, values, best, col, z)


def sample_torch(logits_2d: torch.Tensor, params: RowParams, temperature_first: bool = False,
                 return_logprobs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sampler behind ``backend="torch"``: same noise, same tokens as the Triton kernel.

    Arguments and results as :func:`minp_kernels.reference.sample_reference` (the dense definition,
    which this runs on devices other than the CPU); on the CPU only kept tokens get noise.
    """
    if logits_2d.device.type != "cpu":
        return sample_reference(logits_2d, params, temperature_first, return_logprobs)
    draw = _draw_rows(logits_2d, params, temperature_first, 0, with_z=return_logprobs)
    empty = draw.best == _NEG_INF
    tokens = torch.from_numpy(np.where(empty, -1, draw.col))
    if not return_logprobs:
        return tokens, None
    values = draw.values
    picked = draw.x.gather(1, torch.from_numpy(draw.col)[:, None])[:, 0].float()
    picked = tempered(picked, values.row_max_t, values.inv_temp_t)
    logprobs = torch.where(values.greedy_t, 0.0, picked - torch.log(draw.z))
    return tokens, torch.where(torch.from_numpy(empty), float("nan"), logprobs)


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
    col = torch.from_numpy(draw.col)
    logit = draw.x.gather(1, col[:, None])[:, 0].float()
    return torch.stack([torch.from_numpy(draw.best), logit, draw.z], dim=1), col
