"""Triton kernels of the min-p sampler (device code only; :mod:`minp_kernels.launch` launches them).

See :func:`_minp_sample_kernel` for the algorithm and byte count.
"""

import triton
import triton.language as tl


# ---------------------------------------------------------------------------------------------
# Device helpers
# ---------------------------------------------------------------------------------------------
@triton.jit
def _row_constants(row, p_ptr, p_stride, log_p_value, temp_ptr, temp_stride, temp_value,
                   P_PER_ROW: tl.constexpr, TEMP_PER_ROW: tl.constexpr, TEMPERATURE_FIRST: tl.constexpr):
    """(inv_temp, delta, greedy) of one row; twin of ``reference.row_constants``."""
    if P_PER_ROW:
        log_p = tl.log(tl.load(p_ptr + row * p_stride).to(tl.float64)).to(tl.float32)
    else:
        log_p = log_p_value
    if TEMP_PER_ROW:
        temp = tl.load(temp_ptr + row * temp_stride).to(tl.float32)
    else:
        temp = temp_value + 0.0
    inv_temp = tl.math.div_rn(tl.full([], 1.0, tl.float32), temp)
    greedy = inv_temp == float("inf")
    if TEMPERATURE_FIRST:
        delta = tl.where(log_p == 0.0, 0.0, temp * log_p)
    else:
        delta = log_p + 0.0
    return inv_temp, tl.where(greedy, 0.0, delta), greedy


@triton.jit
def _row_rng(row, seed_ptr, seed_stride, seed_value, offset_ptr, offset_stride, offset_value,
             SEED_FROM_PTR: tl.constexpr, SEED_SHARED: tl.constexpr, OFFSET_FROM_PTR: tl.constexpr):
    """(seed, offset, stream) of one row: the Philox key and the counter words besides the token."""
    if SEED_FROM_PTR:
        seed = tl.load(seed_ptr + row * seed_stride)
    else:
        seed = seed_value + tl.zeros([], tl.int64)
    if OFFSET_FROM_PTR:
        offset = tl.load(offset_ptr + row * offset_stride)
    else:
        offset = offset_value + tl.zeros([], tl.int64)
    if SEED_SHARED:
        stream = row.to(tl.uint32)
    else:
        stream = (row * 0).to(tl.uint32)
    return seed, offset, stream


@triton.jit
def _tile_columns(group0, token_base, BLOCK: tl.constexpr, WIDTH: tl.constexpr):
    """Columns ``[BLOCK / WIDTH, WIDTH]`` of the tile whose global ids start at ``WIDTH * group0``.

    Row ``i`` holds the WIDTH consecutive global ids of group ``group0 + i`` (16 bytes of logits
    when WIDTH = 16 / itemsize): one 16-byte load and WIDTH / 4 Philox calls per row.
    """
    groups = group0 + tl.arange(0, BLOCK // WIDTH)
    return (groups * WIDTH - token_base)[:, None] + tl.arange(0, WIDTH)[None, :], groups


@triton.jit
def _pick4(lane, w0, w1, w2, w3):
    return tl.where(lane == 0, w0, tl.where(lane == 1, w1, tl.where(lane == 2, w2, w3)))


@triton.jit
def _token_words(groups, seed, stream, offset, WIDTH: tl.constexpr):
    """Philox word of every token of a ``[BLOCK / WIDTH, WIDTH]`` tile: token ``g`` takes word
    ``g % 4`` of counter ``(g // 4, stream, offset lo, offset hi)`` under key ``seed``."""
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
def _load_tile(row_ptr, cols, lo, hi):
    """float32 logits of ``cols`` inside ``[lo, hi)`` (-inf outside), NaN as -inf, +inf as FLT_MAX."""
    x = tl.load(row_ptr + cols, mask=(cols >= lo) & (cols < hi), other=float("-inf")).to(tl.float32)
    x = tl.where(x == x, x, float("-inf"))
    return tl.minimum(x, 3.4028234663852886e38)


@triton.jit
def _max2d(x):
    return tl.max(tl.max(x, axis=1), axis=0)


@triton.jit
def _tile_candidate(x, cols, groups, thr, z_ref, inv_temp, greedy, seed, offset, stream,
                    RETURN_LOGPROBS: tl.constexpr):
    """Best kept token of one ``[BLOCK / WIDTH, WIDTH]`` tile for threshold ``thr``.

    Returns (score, column, sum of exp((x - z_ref) * inv_temp) over kept, min kept logit); the
    candidate's logit is read back later, by column, only where it is needed.  Token ``g`` gets
    Gumbel noise ``-log(-log(u))``, ``u`` from word ``g % 4`` of Philox-4x32-10 with key = seed and
    counter = (g // 4, stream, offset lo, offset hi), as ``philox.gumbel_noise``: one Philox call
    serves four tokens.  Two block-wide reductions: the max score and the lowest column holding it.
    """
    keep = (x >= thr) & (x > float("-inf"))
    if greedy:
        score = x
    else:
        word = _token_words(groups, seed, stream, offset, x.shape[1])
        u = (word >> 9).to(tl.float32) * 1.1920928955078125e-07 + 5.960464477539063e-08
        score = tl.maximum(x * inv_temp - tl.log(-tl.log(u)), -3.4028234663852886e38)
    score = tl.where(keep, score, float("-inf"))
    best = _max2d(score)
    col = tl.min(tl.min(tl.where(score == best, cols, 2147483647), axis=1), axis=0)
    if RETURN_LOGPROBS:
        z = tl.sum(tl.sum(tl.where(keep, tl.exp((x - z_ref) * inv_temp), 0.0), axis=1), axis=0)
        min_kept = tl.min(tl.min(tl.where(keep, x, float("inf")), axis=1), axis=0)
    else:
        z = 0.0
        min_kept = 0.0
    return best, col, z, min_kept


@triton.jit
def _scan_fixed(row_ptr, start, end, thr, row_max, inv_temp, greedy, seed, offset, stream, token_base,
                RETURN_LOGPROBS: tl.constexpr, BLOCK: tl.constexpr, WIDTH: tl.constexpr):
    """Exact best kept token of columns [start, end) when the row max (so ``thr``) is known.

    Tiles are aligned on global ids (``token_base + column``) so that every Philox counter covers
    four whole tokens; returns (score, column, logit, normaliser part, min kept logit).
    """
    best = tl.full([], float("-inf"), tl.float32)
    best_col = start + tl.zeros([], tl.int32)
    z = tl.zeros([], tl.float32)
    min_kept = tl.full([], float("inf"), tl.float32)
    first = (start + token_base) // WIDTH
    for group0 in range(first, (end + token_base + WIDTH - 1) // WIDTH, BLOCK // WIDTH):
        cols, groups = _tile_columns(group0, token_base, BLOCK, WIDTH)
        x = _load_tile(row_ptr, cols, start, end)
        s, c, zt, mk = _tile_candidate(x, cols, groups, thr, row_max, inv_temp, greedy, seed, offset, stream,
                                       RETURN_LOGPROBS)
        best_col = tl.where(s > best, c, best_col)
        best = tl.maximum(best, s)
        z += zt
        min_kept = tl.minimum(min_kept, mk)
    logit = tl.where(best > float("-inf"), _load_tile(row_ptr, best_col, start, end), float("-inf"))
    return best, best_col, logit, z, min_kept


@triton.jit
def _resolve(seg_max, seg_score, seg_col, seg_logit, seg_z, seg_z_ref, seg_min_kept, row_max,
             row_ptr, seg_start, seg_len, col_end, delta, inv_temp, greedy, seed, offset, stream,
             RETURN_LOGPROBS: tl.constexpr, BLOCK: tl.constexpr, WIDTH: tl.constexpr):
    """Exact row result from per-segment records taken under thresholds that were too low.

    Segment ``k`` covers columns ``[seg_start + k*seg_len, ...)``.  Its record holds its max and its
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
        lo = seg_start + k * seg_len
        s, c, lg, z, mk = _scan_fixed(row_ptr, lo, tl.minimum(lo + seg_len, col_end), thr, row_max, inv_temp,
                                      greedy, seed, offset, stream, 0, RETURN_LOGPROBS, BLOCK, WIDTH)
        hit = ids == k
        seg_score = tl.where(hit, s, seg_score)
        seg_col = tl.where(hit, c, seg_col)
        seg_logit = tl.where(hit, lg, seg_logit)
        seg_z = tl.where(hit, z, seg_z)
        seg_z_ref = tl.where(hit, row_max, seg_z_ref)
        seg_min_kept = tl.where(hit, mk, seg_min_kept)
        rescan = rescan & (~hit)
    best = tl.max(tl.where(live, seg_score, float("-inf")), axis=0)
    winner = live & (seg_score == best)
    best_col = tl.min(tl.where(winner, seg_col, 2147483647), axis=0)
    best_logit = tl.max(tl.where(winner & (seg_col == best_col), seg_logit, float("-inf")), axis=0)
    z = tl.sum(tl.where(live, seg_z * tl.exp((seg_z_ref - row_max) * inv_temp), 0.0), axis=0)
    min_kept = tl.min(tl.where(live, seg_min_kept, float("inf")), axis=0)
    return best, best_col, best_logit, z, min_kept


@triton.jit
def _store_result(row, best_col, best_logit, z, row_max, inv_temp, greedy, tokens_ptr, logprobs_ptr,
                  RETURN_LOGPROBS: tl.constexpr):
    empty = row_max == float("-inf")
    tl.store(tokens_ptr + row, tl.where(empty, -1, best_col.to(tl.int64)))
    if RETURN_LOGPROBS:
        logprob = tl.where(greedy, 0.0, (best_logit - row_max) * inv_temp - tl.log(z))
        tl.store(logprobs_ptr + row, tl.where(empty, float("nan"), logprob))


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------
@triton.jit
def _minp_sample_kernel(
    logits_ptr, stride_row, vocab_size, cols_per_program,
    p_ptr, p_stride, log_p_value, temp_ptr, temp_stride, temp_value,
    seed_ptr, seed_stride, seed_value, offset_ptr, offset_stride, offset_value,
    tokens_ptr, logprobs_ptr, partial_ptr, partial_col_ptr,
    P_PER_ROW: tl.constexpr, TEMP_PER_ROW: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    SEED_SHARED: tl.constexpr, OFFSET_FROM_PTR: tl.constexpr, TEMPERATURE_FIRST: tl.constexpr,
    RETURN_LOGPROBS: tl.constexpr, SPLIT: tl.constexpr, BLOCK: tl.constexpr, MAX_TILES: tl.constexpr,
    WIDTH: tl.constexpr,
):
    """Min-p sample of row ``program_id(0)``, columns of split ``program_id(1)``, in one read.

    Math: keep ``x_i >= m + delta`` (``m`` the row max, ``delta = ln p_base`` or ``T ln p_base``),
    return ``argmax_kept x_i / T + G_i``.  The threshold needs ``m``, known only at the end, so the
    single pass keeps, per tile of BLOCK columns, the tile max and the best token under the running
    threshold ``m_run + delta`` (never above the final one).  :func:`_resolve` then proves most tile
    records exact and rereads only tiles whose candidate fell under the final threshold and could
    still win (a numpy simulation of Gaussian and peaked LM-like rows, V = 128256, p_base 0.05-0.3:
    10-25% of rows reread a tile; with log-probabilities most rows reread the early tiles whose
    normaliser counted tokens now under the threshold).

    Bytes: ``B * V * itemsize`` read once, plus rescanned tiles (``BLOCK * itemsize`` each), plus
    the candidates' logits (4 bytes per tile record, once per row), plus 8 bytes per row written
    (12 with log-probabilities).  With ``SPLIT`` the program writes a
    6-word partial record per (row, split) for :func:`_minp_merge_kernel` instead.
    """
    row = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    row_ptr = logits_ptr + row * stride_row
    col_start = split * cols_per_program
    col_end = tl.minimum(col_start + cols_per_program, vocab_size)
    inv_temp, delta, greedy = _row_constants(row, p_ptr, p_stride, log_p_value, temp_ptr, temp_stride,
                                             temp_value, P_PER_ROW, TEMP_PER_ROW, TEMPERATURE_FIRST)
    seed, offset, stream = _row_rng(row, seed_ptr, seed_stride, seed_value, offset_ptr, offset_stride,
                                    offset_value, SEED_FROM_PTR, SEED_SHARED, OFFSET_FROM_PTR)

    ids = tl.arange(0, MAX_TILES)
    rec_max = tl.full([MAX_TILES], float("-inf"), tl.float32)
    rec_score = tl.full([MAX_TILES], float("-inf"), tl.float32)
    rec_col = tl.zeros([MAX_TILES], tl.int32) + col_start
    rec_z = tl.zeros([MAX_TILES], tl.float32)
    rec_z_ref = tl.zeros([MAX_TILES], tl.float32)
    rec_min_kept = tl.full([MAX_TILES], float("inf"), tl.float32)
    row_max = tl.full([], float("-inf"), tl.float32)
    group_start = col_start // WIDTH  # col_start is a multiple of BLOCK
    cols_next, groups_next = _tile_columns(group_start, 0, BLOCK, WIDTH)
    x_next = _load_tile(row_ptr, cols_next, col_start, col_end)
    for t in range(0, tl.cdiv(col_end - col_start, BLOCK)):
        cols, groups = cols_next, groups_next
        x = x_next
        # Issue the next tile's load before this tile's math: two tiles in flight per program.
        cols_next, groups_next = _tile_columns(group_start + (t + 1) * (BLOCK // WIDTH), 0, BLOCK, WIDTH)
        x_next = _load_tile(row_ptr, cols_next, col_start, col_end)
        tile_max = _max2d(x)
        row_max = tl.maximum(row_max, tile_max)
        thr = row_max + delta
        hit = ids == t
        rec_max = tl.where(hit, tile_max, rec_max)
        if tile_max >= thr:  # skip the noise for tiles with no token above the running threshold
            s, c, z, mk = _tile_candidate(x, cols, groups, thr, row_max, inv_temp, greedy, seed, offset, stream,
                                          RETURN_LOGPROBS)
            rec_score = tl.where(hit, s, rec_score)
            rec_col = tl.where(hit, c, rec_col)
            rec_z = tl.where(hit, z, rec_z)
            rec_z_ref = tl.where(hit, row_max, rec_z_ref)
            rec_min_kept = tl.where(hit, mk, rec_min_kept)
    # The candidates' logits, read back once per row (a gather of at most MAX_TILES values).
    rec_logit = tl.where(rec_score > float("-inf"), _load_tile(row_ptr, rec_col, col_start, col_end), float("-inf"))

    best, best_col, best_logit, z, min_kept = _resolve(
        rec_max, rec_score, rec_col, rec_logit, rec_z, rec_z_ref, rec_min_kept, row_max, row_ptr, col_start,
        BLOCK, col_end, delta, inv_temp, greedy, seed, offset, stream, RETURN_LOGPROBS, BLOCK, WIDTH)
    if SPLIT:
        record = partial_ptr + (row * tl.num_programs(1) + split) * 6
        tl.store(record + 0, row_max)
        tl.store(record + 1, best)
        tl.store(record + 2, best_logit)
        tl.store(record + 3, z)
        tl.store(record + 4, min_kept)
        tl.store(partial_col_ptr + (row * tl.num_programs(1) + split) * 6 + 5, best_col)
    else:
        _store_result(row, best_col, best_logit, z, row_max, inv_temp, greedy, tokens_ptr, logprobs_ptr,
                      RETURN_LOGPROBS)


@triton.jit
def _minp_merge_kernel(
    logits_ptr, stride_row, vocab_size, cols_per_program, num_splits,
    p_ptr, p_stride, log_p_value, temp_ptr, temp_stride, temp_value,
    seed_ptr, seed_stride, seed_value, offset_ptr, offset_stride, offset_value,
    tokens_ptr, logprobs_ptr, partial_ptr, partial_col_ptr,
    P_PER_ROW: tl.constexpr, TEMP_PER_ROW: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    SEED_SHARED: tl.constexpr, OFFSET_FROM_PTR: tl.constexpr, TEMPERATURE_FIRST: tl.constexpr,
    RETURN_LOGPROBS: tl.constexpr, BLOCK: tl.constexpr, MAX_SPLITS: tl.constexpr, WIDTH: tl.constexpr,
):
    """Merge the split records of row ``program_id(0)``; the same :func:`_resolve` as within a split.

    Bytes: ``24 * num_splits`` per row read, plus the columns of any split whose candidate fell
    under the row's threshold and could still win (read again, usually from L2).
    """
    row = tl.program_id(0).to(tl.int64)
    ids = tl.arange(0, MAX_SPLITS)
    valid = ids < num_splits
    record = partial_ptr + (row * num_splits + ids) * 6
    seg_max = tl.load(record + 0, mask=valid, other=float("-inf"))
    seg_score = tl.load(record + 1, mask=valid, other=float("-inf"))
    seg_logit = tl.load(record + 2, mask=valid, other=float("-inf"))
    seg_z = tl.load(record + 3, mask=valid, other=0.0)
    seg_min_kept = tl.load(record + 4, mask=valid, other=float("inf"))
    seg_col = tl.load(partial_col_ptr + (row * num_splits + ids) * 6 + 5, mask=valid, other=0)
    row_max = tl.max(seg_max, axis=0)
    inv_temp, delta, greedy = _row_constants(row, p_ptr, p_stride, log_p_value, temp_ptr, temp_stride,
                                             temp_value, P_PER_ROW, TEMP_PER_ROW, TEMPERATURE_FIRST)
    seed, offset, stream = _row_rng(row, seed_ptr, seed_stride, seed_value, offset_ptr, offset_stride,
                                    offset_value, SEED_FROM_PTR, SEED_SHARED, OFFSET_FROM_PTR)
    best, best_col, best_logit, z, _ = _resolve(
        seg_max, seg_score, seg_col, seg_logit, seg_z, seg_max, seg_min_kept, row_max, logits_ptr + row * stride_row,
        0, cols_per_program, vocab_size, delta, inv_temp, greedy, seed, offset, stream, RETURN_LOGPROBS, BLOCK,
        WIDTH)
    _store_result(row, best_col, best_logit, z, row_max, inv_temp, greedy, tokens_ptr, logprobs_ptr,
                  RETURN_LOGPROBS)


@triton.jit
def _minp_shard_kernel(
    logits_ptr, stride_row, vocab_size, token_base, row_max_ptr,
    p_ptr, p_stride, log_p_value, temp_ptr, temp_stride, temp_value,
    seed_ptr, seed_stride, seed_value, offset_ptr, offset_stride, offset_value,
    out_ptr, out_col_ptr,
    P_PER_ROW: tl.constexpr, TEMP_PER_ROW: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    SEED_SHARED: tl.constexpr, OFFSET_FROM_PTR: tl.constexpr, TEMPERATURE_FIRST: tl.constexpr,
    RETURN_LOGPROBS: tl.constexpr, BLOCK: tl.constexpr, WIDTH: tl.constexpr,
):
    """Best kept token of a vocabulary shard when the global row max is known (vocab parallelism).

    Tokens of this shard are global ids ``token_base + column``, which key the noise, so the shards'
    winners merge into exactly the token of the unsharded row.  Bytes: the shard read once, plus
    16 bytes per row written (score, logit, normaliser part, column).
    """
    row = tl.program_id(0).to(tl.int64)
    row_max = tl.load(row_max_ptr + row)
    inv_temp, delta, greedy = _row_constants(row, p_ptr, p_stride, log_p_value, temp_ptr, temp_stride,
                                             temp_value, P_PER_ROW, TEMP_PER_ROW, TEMPERATURE_FIRST)
    seed, offset, stream = _row_rng(row, seed_ptr, seed_stride, seed_value, offset_ptr, offset_stride,
                                    offset_value, SEED_FROM_PTR, SEED_SHARED, OFFSET_FROM_PTR)
    best, col, logit, z, _ = _scan_fixed(logits_ptr + row * stride_row, 0, vocab_size, row_max + delta, row_max,
                                         inv_temp, greedy, seed, offset, stream, token_base, RETURN_LOGPROBS, BLOCK,
                                         WIDTH)
    tl.store(out_ptr + row * 4 + 0, best)
    tl.store(out_ptr + row * 4 + 1, logit)
    tl.store(out_ptr + row * 4 + 2, z)
    tl.store(out_col_ptr + row * 4 + 3, col)
