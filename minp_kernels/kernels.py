"""Triton kernels of the min-p sampler: device code only (:mod:`minp_kernels.launch` launches them).

The math (``reference.py`` holds the readable definition, ``philox.py`` the noise stream layout):
keep ``x_i >= m + delta`` (``m`` the row max, ``delta = ln p_base`` or ``T ln p_base``) and return
``argmax over kept i of max(x_i * (1/T) + G_i, -FLT_MAX)``, lowest column on ties.

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

Why a split row stays exact: a split's threshold comes from a lower bound of the row max, so its
record is the best token of a superset of its kept set.  A record whose token is itself kept under
the final threshold is the split's true best; the others are rescanned only if they could still
win (:func:`_merge_records`).
"""

import triton
import triton.language as tl

from .philox import UNIFORM_BIAS, UNIFORM_SCALE, UNIFORM_SHIFT

FLT_MAX: tl.constexpr = tl.constexpr(3.4028234663852886e38)
INT32_MAX: tl.constexpr = tl.constexpr(2147483647)
U_SHIFT: tl.constexpr = tl.constexpr(UNIFORM_SHIFT)
U_SCALE: tl.constexpr = tl.constexpr(UNIFORM_SCALE)
U_BIAS: tl.constexpr = tl.constexpr(UNIFORM_BIAS)

# Split record: float32 words written by each (row, split) program, the column as int32 bits.
SPLIT_RECORD_WORDS: tl.constexpr = tl.constexpr(6)
SPLIT_ROW_MAX: tl.constexpr = tl.constexpr(0)
SPLIT_SCORE: tl.constexpr = tl.constexpr(1)
SPLIT_LOGIT: tl.constexpr = tl.constexpr(2)
SPLIT_Z: tl.constexpr = tl.constexpr(3)
SPLIT_MIN_KEPT: tl.constexpr = tl.constexpr(4)
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
def _row_rng(row, seed_ptr, seed_stride, seed, offset_ptr, offset_stride, offset,
             SEED_FROM_PTR: tl.constexpr, SEED_SHARED: tl.constexpr, OFFSET_FROM_PTR: tl.constexpr):
    """(seed, offset, stream) of one row: the Philox key and the counter words besides the token."""
    if SEED_FROM_PTR:
        seed_row = tl.load(seed_ptr + row * seed_stride)
    else:
        seed_row = seed + tl.zeros([], tl.int64)
    if OFFSET_FROM_PTR:
        offset_row = tl.load(offset_ptr + row * offset_stride)
    else:
        offset_row = offset + tl.zeros([], tl.int64)
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
    """Philox word of every token of a ``[ROWS, WIDTH]`` tile (stream layout: ``minp_kernels.philox``'s docstring)."""
    off_lo = (offset & 0xFFFFFFFF).to(tl.uint32)
    off_hi = ((offset >> 32) & 0xFFFFFFFF).to(tl.uint32)
    lane = tl.arange(0, WIDTH)[None, :]
    a0, a1, a2, a3 = tl.philox(seed, (groups * (WIDTH // 4))[:, None], stream, off_lo, off_hi)
    if WIDTH == 4:
        word = _pick4(lane, a0, a1, a2, a3)
    else:
        tl.static_assert(WIDTH == 8, "WIDTH is 4 (32-bit logits) or 8 (16-bit logits)")
        b0, b1, b2, b3 = tl.philox(seed, (groups * 2 + 1)[:, None], stream, off_lo, off_hi)
        word = tl.where(lane < 4, _pick4(lane, a0, a1, a2, a3), _pick4(lane - 4, b0, b1, b2, b3))
    return word


@triton.jit
def _group_candidate(x, cols, groups, thr, z_ref, inv_temp, greedy, seed, offset, stream,
                     RETURN_LOGPROBS: tl.constexpr):
    """Best kept token of one sanitised ``[GROUP_ROWS, WIDTH]`` group for threshold ``thr``.

    Returns (score, column, sum of exp((x - z_ref) * inv_temp) over kept, min kept logit).  Two
    block reductions (the max score, the lowest column holding it), four with log-probabilities.
    """
    keep = (x >= thr) & (x > float("-inf"))
    if greedy:
        score = x
    else:
        word = _token_words(groups, seed, stream, offset, x.shape[1])
        u = (word >> U_SHIFT).to(tl.float32) * U_SCALE + U_BIAS
        score = tl.maximum(x * inv_temp - tl.log(-tl.log(u)), -FLT_MAX)
    score = tl.where(keep, score, float("-inf"))
    best = _max2d(score)
    col = tl.min(tl.min(tl.where(score == best, cols, INT32_MAX), axis=1), axis=0)
    if RETURN_LOGPROBS:
        z = tl.sum(tl.sum(tl.where(keep, tl.exp((x - z_ref) * inv_temp), 0.0), axis=1), axis=0)
        min_kept = tl.min(tl.min(tl.where(keep, x, float("inf")), axis=1), axis=0)
    else:
        z = 0.0
        min_kept = 0.0
    return best, col, z, min_kept


@triton.jit
def _combine(best, best_col, z, min_kept, score, col, z_part, min_part):
    """Fold a later (higher-column) candidate into the running one: strictly larger score wins, so
    ties keep the lowest column."""
    return (tl.maximum(best, score), tl.where(score > best, col, best_col), z + z_part,
            tl.minimum(min_kept, min_part))


@triton.jit
def _tile_candidate(row_ptr, group0, lo, hi, thr, z_ref, inv_temp, greedy, seed, offset, stream, token_base,
                    RETURN_LOGPROBS: tl.constexpr, TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr,
                    WIDTH: tl.constexpr):
    """Best kept token of the tile starting at group ``group0``, noise only in groups that need it.

    The tile's groups are reloaded (from L1: the pass has just read them) one at a time; a group
    whose max is under ``thr`` holds no kept token and is skipped behind a scalar branch.  Groups
    run in column order and a later group wins only with a strictly larger score, so ties keep the
    lowest column.  Returns (score, column, normaliser part, min kept logit).
    """
    best = tl.full([], float("-inf"), tl.float32)
    best_col = tl.full([], INT32_MAX, tl.int32)
    z = tl.zeros([], tl.float32)
    min_kept = tl.full([], float("inf"), tl.float32)
    for group in range(group0, group0 + TILE_ROWS, GROUP_ROWS):
        cols, groups = _tile_columns(group, token_base, GROUP_ROWS, WIDTH)
        x = _sanitize(_load_raw(row_ptr, cols, lo, hi))
        if _max2d(x) >= thr:
            score, col, z_group, min_group = _group_candidate(x, cols, groups, thr, z_ref, inv_temp, greedy, seed,
                                                              offset, stream, RETURN_LOGPROBS)
            best, best_col, z, min_kept = _combine(best, best_col, z, min_kept, score, col, z_group, min_group)
    return best, best_col, z, min_kept


@triton.jit
def _scan_known_threshold(row_ptr, start, end, thr, z_ref, inv_temp, greedy, seed, offset, stream, token_base,
                          RETURN_LOGPROBS: tl.constexpr, TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr,
                          WIDTH: tl.constexpr):
    """Best token of columns [start, end) at least ``thr``: every tile is read; noise only in the
    groups of tiles that reach ``thr``.

    Tiles are aligned on global ids (``token_base + column``) so that every Philox counter covers
    four whole tokens; returns (score, column, logit, normaliser part, min kept logit).
    """
    best = tl.full([], float("-inf"), tl.float32)
    best_col = start + tl.zeros([], tl.int32)
    z = tl.zeros([], tl.float32)
    min_kept = tl.full([], float("inf"), tl.float32)
    first = (start + token_base) // WIDTH
    for group0 in range(first, (end + token_base + WIDTH - 1) // WIDTH, TILE_ROWS):
        cols, _ = _tile_columns(group0, token_base, TILE_ROWS, WIDTH)
        if _tile_max(_load_raw(row_ptr, cols, start, end)) >= thr:
            score, col, z_tile, min_tile = _tile_candidate(row_ptr, group0, start, end, thr, z_ref, inv_temp, greedy,
                                                           seed, offset, stream, token_base, RETURN_LOGPROBS,
                                                           TILE_ROWS, GROUP_ROWS, WIDTH)
            best, best_col, z, min_kept = _combine(best, best_col, z, min_kept, score, col, z_tile, min_tile)
    logit = tl.where(best > float("-inf"), _sanitize(_load_raw(row_ptr, best_col, start, end)), float("-inf"))
    return best, best_col, logit, z, min_kept


@triton.jit
def _scan_candidate_tiles(row_ptr, tile_max_rec, group_start, start, end, thr, z_ref, inv_temp, greedy, seed, offset,
                          stream, RETURN_LOGPROBS: tl.constexpr, TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr,
                          WIDTH: tl.constexpr):
    """:func:`_scan_known_threshold` over the tiles whose recorded max reaches ``thr`` only (the
    others hold no token at least ``thr``), in column order; tile ``t`` starts at group
    ``group_start + t * TILE_ROWS``."""
    tile_ids = tl.arange(0, tile_max_rec.shape[0])
    pending = (tile_max_rec >= thr) & (tile_max_rec > float("-inf"))
    best = tl.full([], float("-inf"), tl.float32)
    best_col = start + tl.zeros([], tl.int32)
    z = tl.zeros([], tl.float32)
    min_kept = tl.full([], float("inf"), tl.float32)
    while tl.max(pending.to(tl.int32), axis=0) > 0:
        t = tl.min(tl.where(pending, tile_ids, tile_max_rec.shape[0]), axis=0)
        score, col, z_tile, min_tile = _tile_candidate(row_ptr, group_start + t * TILE_ROWS, start, end, thr, z_ref,
                                                       inv_temp, greedy, seed, offset, stream, 0, RETURN_LOGPROBS,
                                                       TILE_ROWS, GROUP_ROWS, WIDTH)
        best, best_col, z, min_kept = _combine(best, best_col, z, min_kept, score, col, z_tile, min_tile)
        pending = pending & (tile_ids != t)
    logit = tl.where(best > float("-inf"), _sanitize(_load_raw(row_ptr, best_col, start, end)), float("-inf"))
    return best, best_col, logit, z, min_kept


@triton.jit
def _merge_records(seg_max, seg_score, seg_col, seg_logit, seg_z, seg_z_ref, seg_min_kept, row_max,
                   row_ptr, seg_len, col_end, delta, inv_temp, greedy, seed, offset, stream,
                   RETURN_LOGPROBS: tl.constexpr, TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr,
                   WIDTH: tl.constexpr):
    """Exact row result from per-segment records taken under thresholds that were too low.

    Segment ``k`` covers columns ``[k * seg_len, (k + 1) * seg_len)``.  Its record holds its max and its
    best token for a threshold ``<= thr = row_max + delta``.  If that token is itself kept under
    ``thr`` it is the segment's true best (best of a superset, inside the subset).  Only segments
    that hold kept tokens, whose candidate fell below ``thr`` and whose score could still win are
    rescanned (and, for log-probabilities, those whose normaliser counted now-dropped tokens).
    """
    thr = row_max + delta
    ids = tl.arange(0, seg_max.shape[0])
    live = (seg_max >= thr) & (seg_max > float("-inf"))
    exact = seg_logit >= thr
    best_exact = tl.max(tl.where(live & exact, seg_score, float("-inf")), axis=0)
    rescan = live & (~exact) & (seg_score >= best_exact)
    if RETURN_LOGPROBS:
        rescan = rescan | (live & (seg_min_kept < thr))
    while tl.max(rescan.to(tl.int32), axis=0) > 0:
        k = tl.min(tl.where(rescan, ids, seg_max.shape[0]), axis=0)
        lo = k * seg_len
        score, col, logit, z, min_kept = _scan_known_threshold(
            row_ptr, lo, tl.minimum(lo + seg_len, col_end), thr, row_max, inv_temp, greedy, seed, offset, stream, 0,
            RETURN_LOGPROBS, TILE_ROWS, GROUP_ROWS, WIDTH)
        hit = ids == k
        seg_score = tl.where(hit, score, seg_score)
        seg_col = tl.where(hit, col, seg_col)
        seg_logit = tl.where(hit, logit, seg_logit)
        seg_z = tl.where(hit, z, seg_z)
        seg_z_ref = tl.where(hit, row_max, seg_z_ref)
        seg_min_kept = tl.where(hit, min_kept, seg_min_kept)
        rescan = rescan & (~hit)
    best = tl.max(tl.where(live, seg_score, float("-inf")), axis=0)
    winner = live & (seg_score == best)
    best_col = tl.min(tl.where(winner, seg_col, INT32_MAX), axis=0)
    best_logit = tl.max(tl.where(winner & (seg_col == best_col), seg_logit, float("-inf")), axis=0)
    z = tl.sum(tl.where(live, seg_z * tl.exp((seg_z_ref - row_max) * inv_temp), 0.0), axis=0)
    return best, best_col, best_logit, z


@triton.jit
def _store_result(row, best_col, best_logit, z, row_max, inv_temp, greedy, invalid, tokens_ptr, logprobs_ptr,
                  RETURN_LOGPROBS: tl.constexpr):
    """Token (-1 for a row with no finite logit or invalid parameters) and its log-probability."""
    no_token = (row_max == float("-inf")) | invalid
    tl.store(tokens_ptr + row, tl.where(no_token, -1, best_col.to(tl.int64)))
    if RETURN_LOGPROBS:
        logprob = tl.where(greedy, 0.0, (best_logit - row_max) * inv_temp - tl.log(z))
        tl.store(logprobs_ptr + row, tl.where(no_token, float("nan"), logprob))


@triton.jit
def _merge_splits(row, num_splits, row_ptr, cols_per_program, vocab_size, delta, inv_temp, greedy, invalid,
                  seed, offset, stream, tokens_ptr, logprobs_ptr, split_records_ptr, split_columns_ptr,
                  RETURN_LOGPROBS: tl.constexpr, MAX_SPLITS: tl.constexpr, TILE_ROWS: tl.constexpr,
                  GROUP_ROWS: tl.constexpr, WIDTH: tl.constexpr):
    """Merge the split records of ``row`` with :func:`_merge_records`.

    Bytes: ``24 * num_splits`` read, plus the columns of any split whose candidate fell under the
    row's threshold and could still win (read again, usually from L2).
    """
    ids = tl.arange(0, MAX_SPLITS)
    valid = ids < num_splits
    record = split_records_ptr + (row * num_splits + ids) * SPLIT_RECORD_WORDS
    seg_max = tl.load(record + SPLIT_ROW_MAX, mask=valid, other=float("-inf"), cache_modifier=".cg")
    seg_score = tl.load(record + SPLIT_SCORE, mask=valid, other=float("-inf"), cache_modifier=".cg")
    seg_logit = tl.load(record + SPLIT_LOGIT, mask=valid, other=float("-inf"), cache_modifier=".cg")
    seg_z = tl.load(record + SPLIT_Z, mask=valid, other=0.0, cache_modifier=".cg")
    seg_min_kept = tl.load(record + SPLIT_MIN_KEPT, mask=valid, other=float("inf"), cache_modifier=".cg")
    seg_col = tl.load(split_columns_ptr + (row * num_splits + ids) * SPLIT_RECORD_WORDS + SPLIT_COLUMN, mask=valid,
                      other=0, cache_modifier=".cg")
    row_max = tl.max(seg_max, axis=0)
    best, best_col, best_logit, z = _merge_records(
        seg_max, seg_score, seg_col, seg_logit, seg_z, seg_max, seg_min_kept, row_max, row_ptr, cols_per_program,
        vocab_size, delta, inv_temp, greedy, seed, offset, stream, RETURN_LOGPROBS, TILE_ROWS, GROUP_ROWS, WIDTH)
    _store_result(row, best_col, best_logit, z, row_max, inv_temp, greedy, invalid, tokens_ptr, logprobs_ptr,
                  RETURN_LOGPROBS)


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------
# Scalar seeds and offsets change every decode step: not specialised (offset 1 or 16 would otherwise
# compile a new variant).
@triton.jit(do_not_specialize=["seed", "offset"])
def minp_sample_kernel(
    logits_ptr, logits_row_stride, vocab_size, cols_per_program,
    p_base_ptr, p_base_stride, log_p_base, temp_ptr, temp_stride, temp,
    seed_ptr, seed_stride, seed, offset_ptr, offset_stride, offset,
    tokens_ptr, logprobs_ptr, split_records_ptr, split_columns_ptr, split_tickets_ptr, split_row_max_ptr,
    P_BASE_FROM_PTR: tl.constexpr, TEMP_FROM_PTR: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    SEED_SHARED: tl.constexpr, OFFSET_FROM_PTR: tl.constexpr, TEMPERATURE_FIRST: tl.constexpr,
    RETURN_LOGPROBS: tl.constexpr, HAS_SPLITS: tl.constexpr, MAX_TILES: tl.constexpr, MAX_SPLITS: tl.constexpr,
    TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr, WIDTH: tl.constexpr,
):
    """Min-p sample of row ``program_id(0)``, columns of split ``program_id(1)``.

    Phase 1 streams the columns once (next tile prefetched) and keeps only each tile's max in
    registers.  The threshold then comes from the segment max, or, with splits, the largest max
    any split of the row has published so far (an atomic max per row): a lower bound of the row
    max, so the threshold is never above the final one.  Phase 2 revisits only the tiles whose max
    reaches it, and inside them only the noise groups that do (from L1 / L2: they were just read).
    Unsplit rows are then exact.  With ``HAS_SPLITS`` each program writes a split record and bumps
    the row's ticket; the program that draws the last ticket merges the records with
    :func:`_merge_records` and resets the ticket and the published max for the next launch.

    Bytes: ``B * V * itemsize`` read once from memory, plus the candidate tiles' groups read again
    (usually from cache), plus 8 bytes per row written (12 with log-probabilities); with splits 24
    bytes per split record written and read back, and a rescanned split in rare rows.
    """
    row = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    row_ptr = logits_ptr + row * logits_row_stride
    col_start = split * cols_per_program
    col_end = tl.minimum(col_start + cols_per_program, vocab_size)
    inv_temp, delta, greedy, invalid = _row_constants(row, p_base_ptr, p_base_stride, log_p_base, temp_ptr,
                                                      temp_stride, temp, P_BASE_FROM_PTR, TEMP_FROM_PTR,
                                                      TEMPERATURE_FIRST)
    row_seed, row_offset, stream = _row_rng(row, seed_ptr, seed_stride, seed, offset_ptr, offset_stride, offset,
                                            SEED_FROM_PTR, SEED_SHARED, OFFSET_FROM_PTR)
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
    known_max = seg_max
    if HAS_SPLITS:
        known_max = tl.maximum(seg_max, tl.atomic_max(split_row_max_ptr + row, seg_max, sem="relaxed"))

    # Phase 2: noise only where a token reaches the threshold.
    best, best_col, best_logit, z, min_kept = _scan_candidate_tiles(
        row_ptr, tile_max_rec, group_start, col_start, col_end, known_max + delta, seg_max, inv_temp, greedy, row_seed,
        row_offset, stream, RETURN_LOGPROBS, TILE_ROWS, GROUP_ROWS, WIDTH)
    if HAS_SPLITS:
        num_splits = tl.num_programs(1)
        record = split_records_ptr + (row * num_splits + split) * SPLIT_RECORD_WORDS
        tl.store(record + SPLIT_ROW_MAX, seg_max)
        tl.store(record + SPLIT_SCORE, best)
        tl.store(record + SPLIT_LOGIT, best_logit)
        tl.store(record + SPLIT_Z, z)
        tl.store(record + SPLIT_MIN_KEPT, min_kept)
        tl.store(split_columns_ptr + (row * num_splits + split) * SPLIT_RECORD_WORDS + SPLIT_COLUMN, best_col)
        # Every thread's record store happens before the ticket (release); the last ticket's
        # holder then reads the records through L2 (.cg: L1 is not coherent across SMs).
        tl.debug_barrier()
        ticket = tl.atomic_add(split_tickets_ptr + row, 1, sem="acq_rel")
        if ticket == num_splits - 1:
            _merge_splits(row, num_splits, row_ptr, cols_per_program, vocab_size, delta, inv_temp, greedy, invalid,
                          row_seed, row_offset, stream, tokens_ptr, logprobs_ptr, split_records_ptr,
                          split_columns_ptr, RETURN_LOGPROBS, MAX_SPLITS, TILE_ROWS, GROUP_ROWS, WIDTH)
            # Every split has taken its ticket and published its max: ready for the next launch.
            tl.store(split_tickets_ptr + row, 0)
            tl.store(split_row_max_ptr + row, float("-inf"))
    else:
        _store_result(row, best_col, best_logit, z, seg_max, inv_temp, greedy, invalid, tokens_ptr, logprobs_ptr,
                      RETURN_LOGPROBS)


@triton.jit(do_not_specialize=["seed", "offset", "token_base"])
def minp_shard_kernel(
    logits_ptr, logits_row_stride, vocab_size, token_base, row_max_ptr,
    p_base_ptr, p_base_stride, log_p_base, temp_ptr, temp_stride, temp,
    seed_ptr, seed_stride, seed, offset_ptr, offset_stride, offset,
    shard_records_ptr, shard_columns_ptr,
    P_BASE_FROM_PTR: tl.constexpr, TEMP_FROM_PTR: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    SEED_SHARED: tl.constexpr, OFFSET_FROM_PTR: tl.constexpr, TEMPERATURE_FIRST: tl.constexpr,
    TILE_ROWS: tl.constexpr, GROUP_ROWS: tl.constexpr, WIDTH: tl.constexpr,
):
    """Best kept token of a vocabulary shard when the global row max is known (vocab parallelism).

    Tokens of this shard are global ids ``token_base + column``, which key the noise, so the shards'
    winners merge into exactly the token of the unsharded row.  An invalid row (see
    :func:`_row_constants`) records score -inf.  Bytes: the shard read once, plus 16 bytes per row
    written (score, logit, normaliser part, column).
    """
    row = tl.program_id(0).to(tl.int64)
    row_max = tl.load(row_max_ptr + row)
    inv_temp, delta, greedy, invalid = _row_constants(row, p_base_ptr, p_base_stride, log_p_base, temp_ptr,
                                                      temp_stride, temp, P_BASE_FROM_PTR, TEMP_FROM_PTR,
                                                      TEMPERATURE_FIRST)
    row_seed, row_offset, stream = _row_rng(row, seed_ptr, seed_stride, seed, offset_ptr, offset_stride, offset,
                                            SEED_FROM_PTR, SEED_SHARED, OFFSET_FROM_PTR)
    best, col, logit, z, _ = _scan_known_threshold(
        logits_ptr + row * logits_row_stride, 0, vocab_size, row_max + delta, row_max, inv_temp, greedy, row_seed,
        row_offset, stream, token_base, True, TILE_ROWS, GROUP_ROWS, WIDTH)  # the normaliser part always
    record = shard_records_ptr + row * SHARD_RECORD_WORDS
    tl.store(record + SHARD_SCORE, tl.where(invalid, float("-inf"), best))
    tl.store(record + SHARD_LOGIT, logit)
    tl.store(record + SHARD_Z, z)
    tl.store(shard_columns_ptr + row * SHARD_RECORD_WORDS + SHARD_COLUMN, col)
