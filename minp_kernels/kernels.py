"""Triton kernels of the min-p sampler: device code only (:mod:`minp_kernels.launch` launches them).

The math (``reference.py`` holds the readable definition, ``philox.py`` the noise stream layout):
keep ``x_i >= m + delta`` (``m`` the row max, ``delta = ln p_base`` or ``T ln p_base``) and return
``argmax over kept i of max(max(x_i - m, -FLT_MAX) * (1/T) + G_i, -FLT_MAX)``, lowest column on ties.
The score is taken relative to the row max so that the noise survives rows whose logits are huge or
``+inf`` (``FLT_MAX * (1/T) + G`` is ``FLT_MAX`` whatever ``G`` is).

Kernels:

* :func:`minp_sample_kernel`: the whole batch in one launch.  Program ``(row, split)`` reads its
  columns once; when a row is split over several programs the last one to finish (an atomic ticket
  per row) merges the split records, so every batch size is one launch.
* :func:`minp_shard_kernel`: one vocabulary shard when the global row max is already known
  (vocab-parallel sampling, :mod:`minp_kernels.distributed`).

Why it is cheap: the threshold needs only ``m``.  A program first streams its columns once keeping
only the tile maxima, then computes noise (Philox and two logarithms per token) only for the
*groups* of ``GROUP_ROWS * WIDTH`` tokens (one 16-byte row per thread) that reach the threshold,
reading those again from cache: on LM-like rows a few percent of the tokens.  ``minp_kernels.cost``
models it and ``benchmarks/NOTES.md`` records predictions and measurements.

Why a split row stays exact: every split publishes its max, waits a bounded time for the row's other
splits to publish theirs, and scores relative to the largest max published by then (its
``reference``): the row max whenever the row's programs run side by side, as they do in one wave.
A split whose reference fell short of the row max (a split that ran late, or the interpreter, which
runs programs one at a time) is rescanned by the merge with the row max (:func:`_merge_records`),
so a late split costs time, never a token.
"""

import triton
import triton.language as tl

from .philox import UNIFORM_BIAS, UNIFORM_SCALE, UNIFORM_SHIFT

FLT_MAX: tl.constexpr = tl.constexpr(3.4028234663852886e38)
INT32_MAX: tl.constexpr = tl.constexpr(2147483647)
U_SHIFT: tl.constexpr = tl.constexpr(UNIFORM_SHIFT)
U_SCALE: tl.constexpr = tl.constexpr(UNIFORM_SCALE)
U_BIAS: tl.constexpr = tl.constexpr(UNIFORM_BIAS)

# Split workspace, one int32 buffer zeroed by the launcher for each launch (so nothing is shared
# between launches, graphs or streams): per row a sync word (arrivals in the low 16 bits, finished
# records above) and the largest published split max as an order-preserving uint32 key (0: none),
# then the split records.  A record is 6 words, float32 but for the column (int32).
SYNC_ARRIVED_MASK: tl.constexpr = tl.constexpr(0xFFFF)
SYNC_FINISHED_SHIFT: tl.constexpr = tl.constexpr(16)
SYNC_FINISHED_UNIT: tl.constexpr = tl.constexpr(1 << 16)
SPLIT_RECORD_WORDS: tl.constexpr = tl.constexpr(6)
SPLIT_ROW_MAX: tl.constexpr = tl.constexpr(0)
SPLIT_REFERENCE: tl.constexpr = tl.constexpr(1)
SPLIT_SCORE: tl.constexpr = tl.constexpr(2)
SPLIT_LOGIT: tl.constexpr = tl.constexpr(3)
SPLIT_Z: tl.constexpr = tl.constexpr(4)
SPLIT_COLUMN: tl.constexpr = tl.constexpr(5)
# Shard record: float32 words per row of a vocabulary shard, the column as int32 bits.
SHARD_RECORD_WORDS: tl.constexpr = tl.constexpr(4)
SHARD_SCORE: tl.constexpr = tl.constexpr(0)
SHARD_LOGIT: tl.constexpr = tl.constexpr(1)
SHARD_Z: tl.constexpr = tl.constexpr(2)
SHARD_COLUMN: tl.constexpr = tl.constexpr(3)


# ---------------------------------------------------------------------------------------------
# Per-row constants
# ---------------------------------------------------------------------------------------------
@triton.jit
def _row_constants(row, p_base_ptr, p_base_stride, log_p_base, temp_ptr, temp_stride, temp,
                   P_BASE_FROM_PTR: tl.constexpr, TEMP_FROM_PTR: tl.constexpr, TEMPERATURE_FIRST: tl.constexpr):
    """(inv_temp, delta, greedy, invalid) of one row; twin of ``reference.row_constants`` and
    ``params.invalid_rows``.

    ``invalid``: a per-row ``p_base`` outside ``[0, 1]`` or NaN, or a per-row ``temp`` below 0 or
    NaN (scalars were checked on the host); such a row returns token -1.
    """
    invalid = row < 0  # False, as a scalar tensor
    if P_BASE_FROM_PTR:
        p_base = tl.load(p_base_ptr + row * p_base_stride)
        invalid = invalid | (p_base != p_base) | (p_base < 0) | (p_base > 1)
        log_p = tl.log(p_base.to(tl.float64)).to(tl.float32)
    else:
        log_p = tl.cast(log_p_base, tl.float32)
    if TEMP_FROM_PTR:
        temp_row = tl.load(temp_ptr + row * temp_stride)
        invalid = invalid | (temp_row != temp_row) | (temp_row < 0)
        temp_row = temp_row.to(tl.float32) + 0.0  # -0.0 becomes 0.0: greedy, as the reference
    else:
        # A Python float argument is fp32 on the GPU but fp64 in the interpreter when it is outside
        # the normal fp32 range (1e-40, 1e39): round it to fp32 here, as the host does for the GPU.
        temp_row = tl.cast(temp, tl.float32) + 0.0
    inv_temp = tl.math.div_rn(tl.full([], 1.0, tl.float32), temp_row)
    greedy = inv_temp == float("inf")
    if TEMPERATURE_FIRST:
        delta = tl.where(log_p == 0.0, 0.0, temp_row * log_p)
    else:
        delta = log_p + 0.0
    return inv_temp, tl.where(greedy, 0.0, delta), greedy, invalid


@triton.jit
def _int64_of_words(low, high):
    """The int64 whose 32-bit halves are the int32 scalars ``low`` and ``high``: scalar seeds and offsets
    reach the kernel as two words so that their argument type never changes with their value."""
    return (high.to(tl.int64) << 32) | (low.to(tl.int64) & 0xFFFFFFFF)


@triton.jit
def _row_rng(row, seed_ptr, seed_stride, seed_lo, seed_hi, offset_ptr, offset_stride, offset_lo, offset_hi,
             SEED_FROM_PTR: tl.constexpr, SEED_SHARED: tl.constexpr, OFFSET_FROM_PTR: tl.constexpr):
    """(seed, offset, stream) of one row: the Philox key and the counter words besides the token."""
    if SEED_FROM_PTR:
        seed_row = tl.load(seed_ptr + row * seed_stride)
    else:
        seed_row = _int64_of_words(seed_lo, seed_hi)
    if OFFSET_FROM_PTR:
        offset_row = tl.load(offset_ptr + row * offset_stride)
    else:
        offset_row = _int64_of_words(offset_lo, offset_hi)
    if SEED_SHARED:
        stream = row.to(tl.uint32)
    else:
        stream = (row * 0).to(tl.uint32)
    return seed_row, offset_row, stream


# ---------------------------------------------------------------------------------------------
# Tiles: [ROWS, WIDTH] blocks, each row WIDTH consecutive tokens (16 bytes of logits)
# ---------------------------------------------------------------------------------------------
@triton.jit
def _tile_columns(group0, token_base, ROWS: tl.constexpr, WIDTH: tl.constexpr):
    """Columns ``[ROWS, WIDTH]`` of the tile whose first token has global id ``WIDTH * group0``.

    Row ``i`` holds the WIDTH global ids of group ``group0 + i``: one 16-byte load and WIDTH / 4
    Philox calls per row.  Column = global id - ``token_base``.
    """
    groups = group0 + tl.arange(0, ROWS)
    return (groups * WIDTH - token_base)[:, None] + tl.arange(0, WIDTH)[None, :], groups


@triton.jit
def _load_raw(row_ptr, cols, lo, hi):
    """float32 logits of ``cols`` inside ``[lo, hi)``, -inf outside; NaN and +inf left as they are."""
    return tl.load(row_ptr + cols, mask=(cols >= lo) & (cols < hi), other=float("-inf")).to(tl.float32)


@triton.jit
def _sanitize(x):
    """NaN as -inf, +inf as FLT_MAX (the reference's ``sanitize_logits``)."""
    return tl.minimum(tl.where(x == x, x, float("-inf")), FLT_MAX)


@triton.jit
def _max2d(x):
    return tl.max(tl.max(x, axis=1), axis=0)


@triton.jit
def _tile_max(x):
    """Max of a raw tile as the sanitised tile's max: ``tl.max`` skips NaN, so clamp only the scalar."""
    m = _max2d(x)
    return tl.minimum(tl.where(m == m, m, float("-inf")), FLT_MAX)


@triton.jit
def _pick4(lane, w0, w1, w2, w3):
    return tl.where(lane == 0, w0, tl.where(lane == 1, w1, tl.where(lane == 2, w2, w3)))


@triton.jit
def _token_words(groups, seed, stream, offset, WIDTH: tl.constexpr):
    """Philox word of every token of a ``[ROWS, WIDTH]`` tile (stream layout: ``minp_kernels.philox``'s docstring).

    The counter words are uint32 whatever the integer type of ``groups``: ``tl.philox`` picks
    Philox-4x64 for 64-bit counters, which would be another stream.
    """
    off_lo = (offset & 0xFFFFFFFF).to(tl.uint32)
    off_hi = ((offset >> 32) & 0xFFFFFFFF).to(tl.uint32)
    lane = tl.arange(0, WIDTH)[None, :]
    a0, a1, a2, a3 = tl.philox(seed, (groups * (WIDTH // 4)).to(tl.uint32)[:, None], stream, off_lo, off_hi)
    if WIDTH == 4:
        word = _pick4(lane, a0, a1, a2, a3)
    else:
        tl.static_assert(WIDTH == 8, "WIDTH is 4 (32-bit logits) or 8 (16-bit logits)")
        b0, b1, b2, b3 = tl.philox(seed, (groups * 2 + 1).to(tl.uint32)[:, None], stream, off_lo, off_hi)
        word = tl.where(lane < 4, _pick4(lane, a0, a1, a2, a3), _pick4(lane - 4, b0, b1, b2, b3))
    return word


@triton.jit
def _group_candidate(x, cols, groups, thr, reference, inv_temp, greedy, seed, offset, stream,
                     RETURN_LOGPROBS: tl.constexpr):
    """Best kept token of one sanitised ``[GROUP_ROWS, WIDTH]`` group for threshold ``thr``.

    The score is ``max(max(x - reference, -FLT_MAX) * inv_temp + G, -FLT_MAX)``: three roundings, as
    the torch twins compute it.  Returns (score, column, sum of exp(max(x - reference, -FLT_MAX) *
    inv_temp) over kept: the clamp keeps ``-inf * 0`` out of a temp = inf row whose range passes
    the float32 range).  Two block reductions (the max score, the lowest column holding it), three with
    log-probabilities.
    """
    keep = (x >= thr) & (x > float("-inf"))
    if greedy:
        score = x
    else:
        word = _token_words(groups, seed, stream, offset, x.shape[1])
        u = (word >> U_SHIFT).to(tl.float32) * U_SCALE + U_BIAS
        score = tl.maximum(tl.maximum(x - reference, -FLT_MAX) * inv_temp - tl.log(-tl.log(u)), -FLT_MAX)
    score = tl.where(keep, score, float("-inf"))
    best = _max2d(score)
    col = tl.min(tl.min(tl.where(score == best, cols, INT32_MAX), axis=1), axis=0)
    if RETURN_LOGPROBS:
        z = tl.sum(tl.sum(tl.where(keep, tl.exp(tl.maximum(x - reference, -FLT_MAX) * inv_temp), 0.0), axis=1),
                   axis=0)
    else:
        z = 0.0
    return best, col, z


@triton.jit
def _combine(best, best_col, z, score, col, z_part):
    """Fold a later (higher-column) candidate into the running one: strictly larger score wins, so
    ties keep the lowest column."""
    return tl.maximum(best, score), tl.where(score > best, col, best_col), z + z_part


@triton.jit
def _tile_candidate(row_ptr, group0, lo, hi, thr, reference, inv_temp, greedy, seed, offset, stream, token_base,
                    RETURN_LOGPROBS: tl.constexpr, TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr,
                    WIDTH: tl.constexpr):
    """Best kept token of the tile starting at group ``group0``, noise only in groups that need it.

    The tile's groups are reloaded (from L1: the pass has just read them) one at a time; a group
    whose max is under ``thr`` holds no kept token and is skipped behind a scalar branch.  Groups
    run in column order and a later group wins only with a strictly larger score, so ties keep the
    lowest column.  Returns (score, column, normaliser part).
    """
    best = tl.full([], float("-inf"), tl.float32)
    best_col = tl.full([], INT32_MAX, tl.int32)
    z = tl.zeros([], tl.float32)
    for group in range(group0, group0 + TILE_ROWS, GROUP_ROWS):
        cols, groups = _tile_columns(group, token_base, GROUP_ROWS, WIDTH)
        x = _sanitize(_load_raw(row_ptr, cols, lo, hi))
        if _max2d(x) >= thr:
            score, col, z_group = _group_candidate(x, cols, groups, thr, reference, inv_temp, greedy, seed, offset,
                                                   stream, RETURN_LOGPROBS)
            best, best_col, z = _combine(best, best_col, z, score, col, z_group)
    return best, best_col, z


@triton.jit
def _scan_known_threshold(row_ptr, start, end, thr, reference, inv_temp, greedy, seed, offset, stream, token_base,
                          RETURN_LOGPROBS: tl.constexpr, TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr,
                          WIDTH: tl.constexpr):
    """Best token of columns [start, end) at least ``thr``: every tile is read; noise only in the
    groups of tiles that reach ``thr``.

    Tiles are aligned on global ids (``token_base + column``) so that every Philox counter covers
    four whole tokens; returns (score, column, logit, normaliser part).
    """
    best = tl.full([], float("-inf"), tl.float32)
    best_col = start + tl.zeros([], tl.int32)
    z = tl.zeros([], tl.float32)
    first = (start + token_base) // WIDTH
    for group0 in range(first, (end + token_base + WIDTH - 1) // WIDTH, TILE_ROWS):
        cols, _ = _tile_columns(group0, token_base, TILE_ROWS, WIDTH)
        if _tile_max(_load_raw(row_ptr, cols, start, end)) >= thr:
            score, col, z_tile = _tile_candidate(row_ptr, group0, start, end, thr, reference, inv_temp, greedy, seed,
                                                 offset, stream, token_base, RETURN_LOGPROBS, TILE_ROWS, GROUP_ROWS,
                                                 WIDTH)
            best, best_col, z = _combine(best, best_col, z, score, col, z_tile)
    logit = tl.where(best > float("-inf"), _sanitize(_load_raw(row_ptr, best_col, start, end)), float("-inf"))
    return best, best_col, logit, z


@triton.jit
def _scan_candidate_tiles(row_ptr, tile_max_rec, group_start, start, end, thr, reference, inv_temp, greedy, seed,
                          offset, stream, RETURN_LOGPROBS: tl.constexpr, TILE_ROWS: tl.constexpr,
                          GROUP_ROWS: tl.constexpr, WIDTH: tl.constexpr):
    """:func:`_scan_known_threshold` over the tiles whose recorded max reaches ``thr`` only (the
    others hold no token at least ``thr``), in column order; tile ``t`` starts at group
    ``group_start + t * TILE_ROWS``."""
    tile_ids = tl.arange(0, tile_max_rec.shape[0])
    pending = (tile_max_rec >= thr) & (tile_max_rec > float("-inf"))
    best = tl.full([], float("-inf"), tl.float32)
    best_col = start + tl.zeros([], tl.int32)
    z = tl.zeros([], tl.float32)
    while tl.max(pending.to(tl.int32), axis=0) > 0:
        t = tl.min(tl.where(pending, tile_ids, tile_max_rec.shape[0]), axis=0)
        score, col, z_tile = _tile_candidate(row_ptr, group_start + t * TILE_ROWS, start, end, thr, reference,
                                             inv_temp, greedy, seed, offset, stream, 0, RETURN_LOGPROBS, TILE_ROWS,
                                             GROUP_ROWS, WIDTH)
        best, best_col, z = _combine(best, best_col, z, score, col, z_tile)
        pending = pending & (tile_ids != t)
    logit = tl.where(best > float("-inf"), _sanitize(_load_raw(row_ptr, best_col, start, end)), float("-inf"))
    return best, best_col, logit, z


# ---------------------------------------------------------------------------------------------
# Split rows: the published row max and the merge
# ---------------------------------------------------------------------------------------------
@triton.jit
def _order_key(x):
    """uint32 key of a non-NaN float32 with the same order (the largest key is the largest float),
    never 0: a zeroed workspace word means "nothing published"."""
    bits = x.to(tl.int32, bitcast=True)
    return tl.where(bits < 0, ~bits, bits | (-INT32_MAX - 1)).to(tl.uint32, bitcast=True)


@triton.jit
def _float_of_key(key):
    """The float32 of an :func:`_order_key` key."""
    bits = key.to(tl.int32, bitcast=True)
    return tl.where(bits < 0, bits & INT32_MAX, ~bits).to(tl.float32, bitcast=True)


@triton.jit
def _published_row_max(workspace_ptr, row, batch, num_splits, seg_max, SPIN_POLLS: tl.constexpr):
    """Publish this split's max, wait until the row's ``num_splits`` splits have published theirs or
    ``SPIN_POLLS`` polls have passed, and return the largest max published by then (a lower bound of
    the row max, equal to it when every split arrived).

    A bounded wait, not a barrier: the programs of a row are consecutive in the grid and run side by
    side in one wave, but nothing guarantees it, so a program never waits for one that may not start.
    """
    key_ptr = (workspace_ptr + batch + row).to(tl.pointer_type(tl.uint32))
    tl.atomic_max(key_ptr, _order_key(seg_max), sem="relaxed")
    # Release: the max above is visible to whoever sees this arrival.
    state = tl.atomic_add(workspace_ptr + row, 1, sem="acq_rel") + 1
    polls = 0
    # Relaxed polls (an acquire load would invalidate the SM's L1 every time, evicting the other
    # programs' phase-2 rereads); one acquire read-modify-write after the loop orders what follows
    # after every arrival it saw (it reads the latest value, in every arrival's release sequence).
    while ((state & SYNC_ARRIVED_MASK) < num_splits) & (polls < SPIN_POLLS):
        state = tl.atomic_add(workspace_ptr + row, 0, sem="relaxed")
        polls += 1
    tl.atomic_add(workspace_ptr + row, 0, sem="acquire")
    # At least this split's own key: never the zero of an empty word.
    return _float_of_key(tl.atomic_max(key_ptr, tl.full([], 0, tl.uint32), sem="relaxed"))


@triton.jit
def _merge_records(first, seg_max, seg_reference, seg_score, seg_col, seg_logit, seg_z, row_max, row_ptr, seg_len,
                   col_end, delta, floor, inv_temp, greedy, seed, offset, stream, RETURN_LOGPROBS: tl.constexpr,
                   TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr, WIDTH: tl.constexpr):
    """Exact result of a chunk of segment records (segments ``first``, ``first + 1``, ...).

    Segment ``k`` covers columns ``[k * seg_len, (k + 1) * seg_len)``.  Its record holds its max, the
    reference it scored against (a lower bound of the row max, see :func:`_published_row_max`) and
    its best token for the threshold ``max(reference + delta, floor)``.  A record whose reference is
    the row max is exact.  The others are rescanned with the row max when the segment holds kept
    tokens (a lower reference rounds the scores differently and keeps a superset).  Returns the
    chunk's (score, column, logit, normaliser part).
    """
    thr = tl.maximum(row_max + delta, floor)
    ids = tl.arange(0, seg_max.shape[0])
    live = (seg_max >= thr) & (seg_max > float("-inf"))
    rescan = live & (seg_reference != row_max)
    while tl.max(rescan.to(tl.int32), axis=0) > 0:
        k = tl.min(tl.where(rescan, ids, seg_max.shape[0]), axis=0)
        lo = (first + k) * seg_len
        score, col, logit, z = _scan_known_threshold(
            row_ptr, lo, tl.minimum(lo + seg_len, col_end), thr, row_max, inv_temp, greedy, seed, offset, stream, 0,
            RETURN_LOGPROBS, TILE_ROWS, GROUP_ROWS, WIDTH)
        hit = ids == k
        seg_score = tl.where(hit, score, seg_score)
        seg_col = tl.where(hit, col, seg_col)
        seg_logit = tl.where(hit, logit, seg_logit)
        seg_z = tl.where(hit, z, seg_z)
        rescan = rescan & (~hit)
    best = tl.max(tl.where(live, seg_score, float("-inf")), axis=0)
    winner = live & (seg_score == best)
    best_col = tl.min(tl.where(winner, seg_col, INT32_MAX), axis=0)
    best_logit = tl.max(tl.where(winner & (seg_col == best_col), seg_logit, float("-inf")), axis=0)
    z = tl.sum(tl.where(live, seg_z, 0.0), axis=0)
    return best, best_col, best_logit, z


@triton.jit
def _store_result(row, best_col, best_logit, z, row_max, inv_temp, greedy, invalid, tokens_ptr, logprobs_ptr,
                  RETURN_LOGPROBS: tl.constexpr):
    """Token (-1 for a row with no finite logit or invalid parameters) and its log-probability."""
    no_token = (row_max == float("-inf")) | invalid
    tl.store(tokens_ptr + row, tl.where(no_token, -1, best_col.to(tl.int64)))
    if RETURN_LOGPROBS:
        logprob = tl.where(greedy, 0.0, tl.maximum(best_logit - row_max, -FLT_MAX) * inv_temp - tl.log(z))
        tl.store(logprobs_ptr + row, tl.where(no_token, float("nan"), logprob))


@triton.jit
def _merge_splits(row, num_splits, records_ptr, row_ptr, cols_per_program, vocab_size, delta, floor, inv_temp, greedy,
                  invalid, seed, offset, stream, tokens_ptr, logprobs_ptr, RETURN_LOGPROBS: tl.constexpr,
                  MERGE_CHUNK: tl.constexpr, TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr,
                  WIDTH: tl.constexpr):
    """Merge the split records of ``row`` with :func:`_merge_records`, ``MERGE_CHUNK`` records at a
    time (so the registers do not grow with the vocabulary): one pass for the row max, one for the
    chunks' results, folded in column order (a later chunk wins only with a larger score).

    Bytes: ``28 * num_splits`` read, plus the columns of any split that scored against less than
    the row max and holds kept tokens (read again, usually from L2).
    """
    ids = tl.arange(0, MERGE_CHUNK)
    row_records = records_ptr + row * num_splits * SPLIT_RECORD_WORDS
    row_max = tl.full([], float("-inf"), tl.float32)
    for first in range(0, num_splits, MERGE_CHUNK):
        floats = (row_records + (first + ids) * SPLIT_RECORD_WORDS).to(tl.pointer_type(tl.float32))
        seg_max = tl.load(floats + SPLIT_ROW_MAX, mask=first + ids < num_splits, other=float("-inf"),
                          cache_modifier=".cg")
        row_max = tl.maximum(row_max, tl.max(seg_max, axis=0))
    best = tl.full([], float("-inf"), tl.float32)
    best_col = tl.full([], INT32_MAX, tl.int32)
    best_logit = tl.full([], float("-inf"), tl.float32)
    z = tl.zeros([], tl.float32)
    for first in range(0, num_splits, MERGE_CHUNK):
        valid = first + ids < num_splits
        record = row_records + (first + ids) * SPLIT_RECORD_WORDS
        floats = record.to(tl.pointer_type(tl.float32))
        seg_max = tl.load(floats + SPLIT_ROW_MAX, mask=valid, other=float("-inf"), cache_modifier=".cg")
        seg_reference = tl.load(floats + SPLIT_REFERENCE, mask=valid, other=float("-inf"), cache_modifier=".cg")
        seg_score = tl.load(floats + SPLIT_SCORE, mask=valid, other=float("-inf"), cache_modifier=".cg")
        seg_logit = tl.load(floats + SPLIT_LOGIT, mask=valid, other=float("-inf"), cache_modifier=".cg")
        seg_z = tl.load(floats + SPLIT_Z, mask=valid, other=0.0, cache_modifier=".cg")
        seg_col = tl.load(record + SPLIT_COLUMN, mask=valid, other=0, cache_modifier=".cg")
        score, col, logit, z_part = _merge_records(
            first, seg_max, seg_reference, seg_score, seg_col, seg_logit, seg_z, row_max, row_ptr, cols_per_program,
            vocab_size, delta, floor, inv_temp, greedy, seed, offset, stream, RETURN_LOGPROBS, TILE_ROWS, GROUP_ROWS,
            WIDTH)
        later_wins = score > best
        best_col = tl.where(later_wins, col, best_col)
        best_logit = tl.where(later_wins, logit, best_logit)
        best = tl.maximum(best, score)
        z += z_part
    _store_result(row, best_col, best_logit, z, row_max, inv_temp, greedy, invalid, tokens_ptr, logprobs_ptr,
                  RETURN_LOGPROBS)


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------
# Scalar seeds and offsets change every decode step: not specialised (offset 1 or 16 would otherwise
# compile a new variant); they arrive as int32 word pairs, so their type never changes either.
_SCALAR_WORDS = ["seed_lo", "seed_hi", "offset_lo", "offset_hi"]


@triton.jit(do_not_specialize=_SCALAR_WORDS)
def minp_sample_kernel(
    logits_ptr, logits_row_stride, vocab_size, cols_per_program,
    p_base_ptr, p_base_stride, log_p_base, temp_ptr, temp_stride, temp,
    seed_ptr, seed_stride, seed_lo, seed_hi, offset_ptr, offset_stride, offset_lo, offset_hi,
    threshold_ptr, tokens_ptr, logprobs_ptr, split_workspace_ptr,
    P_BASE_FROM_PTR: tl.constexpr, TEMP_FROM_PTR: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    SEED_SHARED: tl.constexpr, OFFSET_FROM_PTR: tl.constexpr, THRESHOLD_FROM_PTR: tl.constexpr,
    TEMPERATURE_FIRST: tl.constexpr, RETURN_LOGPROBS: tl.constexpr, HAS_SPLITS: tl.constexpr,
    MAX_TILES: tl.constexpr, MERGE_CHUNK: tl.constexpr,
    SPIN_POLLS: tl.constexpr, TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr, WIDTH: tl.constexpr,
):
    """Min-p sample of split ``program_id(0) % num_splits`` of row ``program_id(0) // num_splits``
    (``num_splits = cdiv(vocab_size, cols_per_program)``, derived here: as an argument the JIT would
    specialise it on its divisibility by 16 and compile again for some batch sizes).

    Phase 1 streams the columns once (next tile prefetched) and keeps only each tile's max in
    registers.  The reference (the score's origin and the threshold's base) is then the segment max,
    which is the row max when the row is not split; a split publishes its max and takes the largest
    max published after a bounded wait (:func:`_published_row_max`).  Phase 2 revisits only the tiles
    whose max reaches ``reference + delta``, and inside them only the noise groups that do (from L1 /
    L2: they were just read).  With ``HAS_SPLITS`` each program writes a split record and counts
    itself finished in the row's sync word; the program that finishes last merges the records with
    :func:`_merge_records`.  The workspace is zeroed for each launch: nothing is reset here.

    With ``THRESHOLD_FROM_PTR`` the row's kept set is also cut at ``threshold_ptr[row]`` (top-k /
    top-p, :mod:`minp_kernels.rows`; ``+inf`` marks a row invalid): the threshold is
    ``max(reference + delta, floor)``, still a lower bound of the final one in a split.

    Bytes: ``B * V * itemsize`` read once from memory, plus the candidate tiles' groups read again
    (from cache, or from memory when the resident programs' segments outgrow L2), plus 8 bytes per
    row written (12 with log-probabilities); with splits 8 bytes per row and 24 per split record
    zeroed, written and read back, and a rescanned split in rows whose splits did not run together.
    """
    pid = tl.program_id(0)
    num_splits = tl.cdiv(vocab_size, cols_per_program)
    if HAS_SPLITS:
        row = (pid // num_splits).to(tl.int64)
        split = pid % num_splits
    else:
        row = pid.to(tl.int64)
        split = 0
    row_ptr = logits_ptr + row * logits_row_stride
    col_start = split * cols_per_program
    col_end = tl.minimum(col_start + cols_per_program, vocab_size)
    inv_temp, delta, greedy, invalid = _row_constants(row, p_base_ptr, p_base_stride, log_p_base, temp_ptr,
                                                      temp_stride, temp, P_BASE_FROM_PTR, TEMP_FROM_PTR,
                                                      TEMPERATURE_FIRST)
    row_seed, row_offset, stream = _row_rng(row, seed_ptr, seed_stride, seed_lo, seed_hi, offset_ptr, offset_stride,
                                            offset_lo, offset_hi, SEED_FROM_PTR, SEED_SHARED, OFFSET_FROM_PTR)
    if THRESHOLD_FROM_PTR:
        floor = tl.load(threshold_ptr + row)
        invalid = invalid | (floor > FLT_MAX)
    else:
        floor = tl.full([], float("-inf"), tl.float32)
    BLOCK: tl.constexpr = TILE_ROWS * WIDTH

    # Phase 1: one read, tile maxima only.
    tile_ids = tl.arange(0, MAX_TILES)
    tile_max_rec = tl.full([MAX_TILES], float("-inf"), tl.float32)
    group_start = col_start // WIDTH  # col_start is a multiple of BLOCK
    cols_next, _ = _tile_columns(group_start, 0, TILE_ROWS, WIDTH)
    x_next = _load_raw(row_ptr, cols_next, col_start, col_end)
    for t in range(0, tl.cdiv(col_end - col_start, BLOCK)):
        x = x_next
        # Issue the next tile's load before this tile's max: two tiles in flight per program.
        cols_next, _ = _tile_columns(group_start + (t + 1) * TILE_ROWS, 0, TILE_ROWS, WIDTH)
        x_next = _load_raw(row_ptr, cols_next, col_start, col_end)
        tile_max_rec = tl.where(tile_ids == t, _tile_max(x), tile_max_rec)
    seg_max = tl.max(tile_max_rec, axis=0)
    reference = seg_max
    if HAS_SPLITS:
        batch = tl.num_programs(0) // num_splits
        reference = _published_row_max(split_workspace_ptr, row, batch, num_splits, seg_max, SPIN_POLLS)

    # Phase 2: noise only where a token reaches the threshold.
    best, best_col, best_logit, z = _scan_candidate_tiles(
        row_ptr, tile_max_rec, group_start, col_start, col_end, tl.maximum(reference + delta, floor), reference,
        inv_temp, greedy, row_seed, row_offset, stream, RETURN_LOGPROBS, TILE_ROWS, GROUP_ROWS, WIDTH)
    if HAS_SPLITS:
        records_ptr = split_workspace_ptr + 2 * batch
        record = records_ptr + pid * SPLIT_RECORD_WORDS
        floats = record.to(tl.pointer_type(tl.float32))
        tl.store(floats + SPLIT_ROW_MAX, seg_max)
        tl.store(floats + SPLIT_REFERENCE, reference)
        tl.store(floats + SPLIT_SCORE, best)
        tl.store(floats + SPLIT_LOGIT, best_logit)
        tl.store(floats + SPLIT_Z, z)
        tl.store(record + SPLIT_COLUMN, best_col)
        # Every thread's record store happens before the count (release); the last program to count
        # itself then reads the records through L2 (.cg: L1 is not coherent across SMs).
        tl.debug_barrier()
        state = tl.atomic_add(split_workspace_ptr + row, SYNC_FINISHED_UNIT, sem="acq_rel")
        if (state >> SYNC_FINISHED_SHIFT) == num_splits - 1:
            _merge_splits(row, num_splits, records_ptr, row_ptr, cols_per_program, vocab_size, delta, floor,
                          inv_temp, greedy, invalid, row_seed, row_offset, stream, tokens_ptr, logprobs_ptr,
                          RETURN_LOGPROBS, MERGE_CHUNK, TILE_ROWS, GROUP_ROWS, WIDTH)
    else:
        _store_result(row, best_col, best_logit, z, seg_max, inv_temp, greedy, invalid, tokens_ptr, logprobs_ptr,
                      RETURN_LOGPROBS)


# token_base is specialised (unlike the seeds): the JIT's divisibility-by-16 hint on it is what gives
# the shard's loads 16 bytes.  A shard keeps its token_base, so this is one variant per shard layout.
@triton.jit(do_not_specialize=_SCALAR_WORDS)
def minp_shard_kernel(
    logits_ptr, logits_row_stride, vocab_size, token_base, row_max_ptr,
    p_base_ptr, p_base_stride, log_p_base, temp_ptr, temp_stride, temp,
    seed_ptr, seed_stride, seed_lo, seed_hi, offset_ptr, offset_stride, offset_lo, offset_hi,
    threshold_ptr, shard_records_ptr, shard_columns_ptr,
    P_BASE_FROM_PTR: tl.constexpr, TEMP_FROM_PTR: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    SEED_SHARED: tl.constexpr, OFFSET_FROM_PTR: tl.constexpr, THRESHOLD_FROM_PTR: tl.constexpr,
    TEMPERATURE_FIRST: tl.constexpr, TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr, WIDTH: tl.constexpr,
):
    """Best kept token of a vocabulary shard when the global row max is known (vocab parallelism).

    Tokens of this shard are global ids ``token_base + column``, which key the noise, so the shards'
    winners merge into exactly the token of the unsharded row (every shard scores against the same
    global row max).  An invalid row (see :func:`_row_constants`) records score -inf.  With
    ``THRESHOLD_FROM_PTR`` the global top-k / top-p threshold cuts the kept set too (as in
    :func:`minp_sample_kernel`).  Bytes: the shard read once, plus 16 bytes per row written (score,
    logit, normaliser part, column).
    """
    row = tl.program_id(0).to(tl.int64)
    row_max = tl.load(row_max_ptr + row)
    inv_temp, delta, greedy, invalid = _row_constants(row, p_base_ptr, p_base_stride, log_p_base, temp_ptr,
                                                      temp_stride, temp, P_BASE_FROM_PTR, TEMP_FROM_PTR,
                                                      TEMPERATURE_FIRST)
    row_seed, row_offset, stream = _row_rng(row, seed_ptr, seed_stride, seed_lo, seed_hi, offset_ptr, offset_stride,
                                            offset_lo, offset_hi, SEED_FROM_PTR, SEED_SHARED, OFFSET_FROM_PTR)
    thr = row_max + delta
    if THRESHOLD_FROM_PTR:
        floor = tl.load(threshold_ptr + row)
        invalid = invalid | (floor > FLT_MAX)
        thr = tl.maximum(thr, floor)
    best, col, logit, z = _scan_known_threshold(
        logits_ptr + row * logits_row_stride, 0, vocab_size, thr, row_max, inv_temp, greedy, row_seed,
        row_offset, stream, token_base, True, TILE_ROWS, GROUP_ROWS, WIDTH)  # the normaliser part always
    record = shard_records_ptr + row * SHARD_RECORD_WORDS
    tl.store(record + SHARD_SCORE, tl.where(invalid, float("-inf"), best))
    tl.store(record + SHARD_LOGIT, logit)
    tl.store(record + SHARD_Z, z)
    tl.store(shard_columns_ptr + row * SHARD_RECORD_WORDS + SHARD_COLUMN, col)
