"""Row math shared by every backend: sanitised logits, per-row constants, the kept set's threshold,
the noise keys and the draw's score.

The readable reference (:mod:`minp_kernels.reference`), the torch backend
(:mod:`minp_kernels.torch_sampler`) and the Triton launcher all take these from here, so a row's
arithmetic is written once.  Everything is plain torch on any device and never syncs with the host,
except where a function says it takes a CPU-only shortcut.

The kept set is an upper set of the row's values: ``x >= threshold`` with

``threshold = max(m + delta, tau_k, tau_p)``

* ``m + delta``: min-p (``delta = ln p_base``, or ``temp * ln p_base`` with ``temperature_first``);
* ``tau_k``: the ``top_k``-th largest value (ties with it kept), ``-inf`` when top-k is off;
* ``tau_p``: the smallest value ``v`` of ``A`` (the tokens at least ``tau_k``, and at least ``m + delta``
  when ``top_p_after_min_p``) whose *strictly larger* tokens of ``A`` hold less than ``top_p`` of ``A``'s
  mass, under ``softmax(y)`` restricted to ``A`` (``y = x / temp`` with ``temperature_first``, else
  ``x``): the smallest value-prefix reaching ``top_p``, a tie at the boundary kept whole.

Masses are summed exactly, in fixed point: each weight ``exp((x - m) * s)`` (at most 1) is counted in
units of ``2**-32`` of the row max's weight (``MASS_UNIT``), so the sums are int64 and every backend
and summation order gets the same integers, hence the same kept set; weights below one unit count
as zero.
"""


import torch

from .params import RowParams, invalid_rows

FLT_MAX = torch.finfo(torch.float32).max
NEG_INF = float("-inf")
MASS_UNIT = 2.0**32  # fixed-point scale of the top-p masses

RowConstants = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def sanitize_logits(logits_2d: torch.Tensor) -> torch.Tensor:
    """float32 logits with NaN -> -inf and +inf -> FLT_MAX (so +inf tokens stay comparable)."""
    return torch.nan_to_num(logits_2d.float(), nan=NEG_INF, posinf=FLT_MAX, neginf=NEG_INF)


def float_rows(logits_2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sanitised float32 rows, their max); on the CPU the copy is skipped when nothing needs it."""
    x = logits_2d.float()
    row_max = x.amax(dim=1)
    if logits_2d.device.type != "cpu" or bool((row_max.isnan() | (row_max == float("inf"))).any()):
        x = sanitize_logits(logits_2d)
        row_max = x.amax(dim=1)
    return x, row_max


def row_tensor(value: float | int | torch.Tensor, batch: int, device: torch.device,
               dtype: torch.dtype) -> torch.Tensor:
    """A scalar or ``[B]`` tensor parameter as a ``[B]`` tensor of ``dtype`` (``[1]`` broadcasts).

    A Python float is rounded to a float ``dtype`` as the kernel's launch rounds it (1e39 becomes
    inf, 1e-40 a subnormal) instead of raising on overflow.
    """
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype).expand(batch)
    if isinstance(value, float) and dtype.is_floating_point:
        return torch.full((batch,), value, device=device, dtype=torch.float64).to(dtype)
    return torch.full((batch,), value, device=device, dtype=dtype)


def row_constants(p_base: torch.Tensor, temp: torch.Tensor, temperature_first: bool) -> RowConstants:
    """Per-row ``(inv_temp, delta, greedy)``, float32, exactly as the kernel computes them.

    ``ln(p_base)`` is taken in float64 and rounded once to float32, ``1/temp`` is an IEEE float32
    division (of ``temp + 0.0``, so that a temperature of -0.0 is greedy like 0.0), and ``delta`` is
    the threshold's offset from the row max.
    """
    log_p = torch.log(p_base.double()).float()
    temp = temp.float() + 0.0
    inv_temp = torch.ones_like(temp) / temp
    greedy = inv_temp == float("inf")
    delta = torch.where(log_p == 0, 0.0, temp * log_p) if temperature_first else log_p
    return inv_temp, torch.where(greedy, 0.0, delta), greedy


def params_constants(params: RowParams, batch: int, device: torch.device, temperature_first: bool) -> RowConstants:
    """:func:`row_constants` of validated parameters."""
    return row_constants(row_tensor(params.p_base, batch, device, torch.float64),
                         row_tensor(params.temp, batch, device, torch.float32), temperature_first)


def kept_threshold(row_max: torch.Tensor, delta: torch.Tensor, invalid: torch.Tensor) -> torch.Tensor:
    """Per-row min-p threshold ``t`` such that ``x >= t`` is the min-p kept set (``x >= m + delta``
    and ``x > -inf``).

    Raising ``m + delta`` to ``-FLT_MAX`` folds the ``x > -inf`` test into the one comparison.  An
    ``invalid`` row (:func:`minp_kernels.params.invalid_rows`) gets NaN: no logit compares ``>=``
    to NaN, so it keeps nothing.
    """
    return torch.where(invalid, float("nan"), (row_max + delta).clamp_min(-FLT_MAX))


def row_noise_keys(params: RowParams, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
    """Per-row int64 ``(seed, offset, stream)`` of the Philox stream (see :mod:`minp_kernels.philox`)."""
    seed = row_tensor(params.seed, batch, device, torch.int64)
    offset = row_tensor(params.offset, batch, device, torch.int64)
    if params.seed_shared:
        stream = torch.arange(batch, device=device)
    else:
        stream = torch.zeros(batch, device=device, dtype=torch.int64)
    return seed, offset, stream


def tempered(x: torch.Tensor, row_max: torch.Tensor, inv_temp: torch.Tensor) -> torch.Tensor:
    """``max(x - m, -FLT_MAX) * inv_temp``, the log-weight of every token from the row max (as the kernel
    computes it): the clamp keeps ``-inf * 0`` (NaN) out of a temp = inf row whose range passes the
    float32 range; ``-inf`` logits stay ``-inf`` at a finite temperature."""
    return (x - row_max).clamp_min_(-FLT_MAX) * inv_temp


def gumbel_scores(x: torch.Tensor, row_max: torch.Tensor, inv_temp: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``max(max(x - m, -FLT_MAX) * inv_temp + G, -FLT_MAX)``, rounded after each operation as the
    kernel computes it (no fused multiply-add); every argument broadcasts against ``x``."""
    return (tempered(x, row_max, inv_temp) + noise).clamp_min_(-FLT_MAX)


# ------------------------------------------------------------------------------------------------
# Top-k and top-p
# ------------------------------------------------------------------------------------------------
def has_filters(params: RowParams) -> bool:
    """Whether top-k or top-p may cut any row (a per-row tensor counts, whatever its values), or the
    kept set's threshold is given already (``params.threshold``)."""
    return params.top_k is not None or params.top_p is not None or params.threshold is not None


def _top_k_threshold(x: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """The ``top_k``-th largest value of each row (``-inf`` where ``top_k`` is 0 or at least ``V``:
    off).  ``top_k`` int64 ``[B]``, already checked ``>= 0`` (negative rows are invalid)."""
    on = top_k_on(top_k, x.shape[1])
    if x.device.type == "cpu":  # one host read of the largest k: free on the CPU, and topk beats a sort
        largest = int(torch.where(on, top_k, 1).max())
        values = x.topk(largest, dim=1, sorted=True).values
    else:  # no host sync: a full sort
        values = x.sort(dim=1, descending=True).values
    kth = values.gather(1, (torch.where(on, top_k, 1) - 1).clamp_max(values.shape[1] - 1)[:, None])[:, 0]
    return torch.where(on, kth, NEG_INF)


def mass_units(x: torch.Tensor, row_max: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int64 weight of each token in units of ``2**-32`` of the row max's: ``floor(exp((x - m) * s) *
    2**32)``, 0 for ``-inf`` tokens (every argument broadcasts against ``x``)."""
    shifted = torch.where(x > NEG_INF, tempered(x, row_max, scale), NEG_INF)
    # In float32: scaling by 2**32 is exact and so is the floor of the result (at or above 2**24 a
    # float32 is an integer already), so this is floor(w * 2**32) exactly.
    return (torch.exp(shifted) * MASS_UNIT).floor_().to(torch.int64)


def top_p_threshold_of_sorted(values: torch.Tensor, units: torch.Tensor, total: torch.Tensor,
                              top_p: torch.Tensor, base: torch.Tensor | int = 0) -> torch.Tensor:
    """``tau_p`` from a row's candidate values sorted descending (``-inf`` padding last) and their mass
    units: the value at the last position whose strictly larger mass is below ``top_p * total``.

    Positions of one tie share the mass before the tie's first position, so a tie straddling the
    boundary is kept whole.  ``total``: the mass of the whole of ``A`` (int64 ``[B]``); ``base``: the
    mass of the tokens of ``A`` above every candidate (int64 ``[B]``, when the candidates are a slice).
    """
    before = units.cumsum(dim=1) - units + (base[:, None] if isinstance(base, torch.Tensor) else base)
    tie_start = torch.ones_like(values, dtype=torch.bool)
    tie_start[:, 1:] = values[:, 1:] != values[:, :-1]
    # Mass strictly larger than each position's value: the mass before its tie's first position.
    first = torch.where(tie_start, torch.arange(values.shape[1], device=values.device), 0).cummax(dim=1).values
    strictly_larger = before.gather(1, first)
    inside = (strictly_larger.double() < top_p.double()[:, None] * total.double()[:, None]) & (values > NEG_INF)
    last = (inside.count_nonzero(dim=1) - 1).clamp_min(0)
    return values.gather(1, last[:, None])[:, 0]


# The CPU's path for a large A buckets tokens by their log-weight from the row max, half a unit per
# bucket, up to the weight below which a token holds no mass unit (e**-23 < 2**-32).
_BUCKETS_PER_UNIT = 2
_LAST_BUCKET = 23 * _BUCKETS_PER_UNIT
# On the CPU, a set A this much smaller than the row (top-k, or min-p first) is sorted whole.
_SMALL_A = 8


def bucket_masses(x: torch.Tensor, row_max: torch.Tensor, units: torch.Tensor, in_a: torch.Tensor,
                  scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(bucket of every token, int64 mass of ``A`` per bucket ``[B, buckets + 1]``): buckets of
    log-weight from the row max, half a unit each, monotone in the value (every bucket prefix is an
    upper set); the tokens outside ``A`` get a last bucket of their own, never a boundary."""
    bucket = ((row_max[:, None] - x) * (scale[:, None] * _BUCKETS_PER_UNIT)).nan_to_num_(float("inf"))
    bucket = bucket.floor_().clamp_(0, _LAST_BUCKET).to(torch.int64)
    bucket = torch.where(in_a, bucket, _LAST_BUCKET + 1)
    mass = torch.zeros(x.shape[0], _LAST_BUCKET + 2, dtype=torch.int64, device=x.device)
    return bucket, mass.scatter_add_(1, bucket, units)


def boundary_bucket(mass: torch.Tensor, total: torch.Tensor, top_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the bucket where ``A``'s mass reaches ``top_p * total``, the mass of the buckets before it).

    Tokens of earlier buckets have less than the goal above them (kept), of later buckets at least
    the goal (not kept): only the boundary bucket needs its tokens sorted."""
    cumulative = mass.cumsum(dim=1)
    goal = top_p.double() * total.double()
    boundary = (cumulative.double() < goal[:, None]).count_nonzero(dim=1).clamp_max(_LAST_BUCKET)
    base = torch.where(boundary > 0, cumulative.gather(1, (boundary - 1).clamp_min(0)[:, None])[:, 0], 0)
    return boundary, base


def pack_rows(rows_of: torch.Tensor, batch: int, *columns: tuple[torch.Tensor, float | int],
              width: int | None = None) -> list[torch.Tensor]:
    """The selected entries of each row, left-aligned in ``[B, width]`` arrays (default: the widest
    row), one per ``(values, padding)`` column; ``rows_of``: the row of each entry, in row order."""
    counts = torch.bincount(rows_of, minlength=batch)
    width = width or (max(1, int(counts.max())) if rows_of.numel() else 1)
    position = torch.arange(rows_of.shape[0], device=rows_of.device) - (counts.cumsum(0) - counts).repeat_interleave(
        counts)
    packed = []
    for values, padding in columns:
        out = torch.full((batch, width), padding, dtype=values.dtype, device=values.device)
        out[rows_of, position] = values
        packed.append(out)
    return packed


def kept_candidates(x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens where ``keep`` holds, per row, ids ascending: ``(values, ids)`` ``[B, W]`` padded
    with ``-inf`` and -1.  On the CPU only those tokens (one host read); elsewhere the whole rows,
    masked (no host sync)."""
    batch, vocab = x.shape
    if x.device.type != "cpu":
        ids = torch.arange(vocab, device=x.device).expand(batch, vocab)
        return torch.where(keep, x, NEG_INF), torch.where(keep, ids, -1)
    rows, cols = keep.nonzero(as_tuple=True)  # row-major: ids ascending within a row
    return pack_rows(rows, batch, (x[rows, cols], NEG_INF), (cols, -1))


def _top_p_by_buckets(x, row_max, units, in_a, scale, total, top_p):
    """``tau_p`` on the CPU without sorting a large ``A``: only the boundary bucket
    (:func:`boundary_bucket`) is sorted, its mass above counted from the earlier buckets."""
    bucket, mass = bucket_masses(x, row_max, units, in_a, scale)
    boundary, base = boundary_bucket(mass, total, top_p)
    rows, cols = (bucket == boundary[:, None]).nonzero(as_tuple=True)
    values, slice_units = pack_rows(rows, x.shape[0], (x[rows, cols], NEG_INF), (units[rows, cols], 0))
    values, order = values.sort(dim=1, descending=True)
    return top_p_threshold_of_sorted(values, slice_units.gather(1, order), total, top_p, base)


def _top_p_threshold(x: torch.Tensor, row_max: torch.Tensor, a_threshold: torch.Tensor, scale: torch.Tensor,
                     top_p: torch.Tensor) -> torch.Tensor:
    """``tau_p`` of every row (``-inf`` where ``top_p`` is 1: off).

    The dense path (any device, no host sync) sorts the whole of ``A``.  On the CPU a small ``A``
    (top-k, or min-p first) is sorted alone, and a large one by :func:`_top_p_by_buckets`.  Every
    path sees the same integer masses and compares them the same way, so they give the same
    threshold.
    """
    in_a = x >= a_threshold[:, None]
    width = max(1, int(in_a.count_nonzero(dim=1).max())) if x.device.type == "cpu" else 0  # host reads: CPU only
    if width and width * _SMALL_A <= x.shape[1]:  # the weights of A alone: all of its mass
        values = torch.where(in_a, x, NEG_INF).topk(width, dim=1, sorted=True).values
        units = mass_units(values, row_max[:, None], scale[:, None])  # 0 on the -inf padding
        tau = top_p_threshold_of_sorted(values, units, units.sum(dim=1), top_p)
    else:
        units = torch.where(in_a, mass_units(x, row_max[:, None], scale[:, None]), 0)
        total = units.sum(dim=1)
        if width:
            tau = _top_p_by_buckets(x, row_max, units, in_a, scale, total, top_p)
        else:
            values, order = torch.where(in_a, x, NEG_INF).sort(dim=1, descending=True)
            tau = top_p_threshold_of_sorted(values, units.gather(1, order), total, top_p)
    return torch.where(top_p < 1.0, tau, NEG_INF)


def top_k_on(top_k: torch.Tensor, vocab: int) -> torch.Tensor:
    """Rows whose ``top_k`` cuts anything: ``0 < top_k < V``."""
    return (top_k > 0) & (top_k < vocab)


def top_p_inputs(params: RowParams, minp_threshold: torch.Tensor, tau_k: torch.Tensor, inv_temp: torch.Tensor,
                 greedy: torch.Tensor, temperature_first: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(threshold of ``A``, weight scale, effective ``top_p``) of every row: ``A`` is the top-k set,
    and the min-p set too with ``top_p_after_min_p``; the weights are ``softmax(x / temp)``'s with
    ``temperature_first``, else ``softmax(x)``'s; greedy rows and invalid values get ``top_p = 1``
    (off: a greedy row's token is the max, in every kept set; an invalid row keeps nothing anyway)."""
    batch = inv_temp.shape[0]
    a_threshold = torch.maximum(tau_k, minp_threshold) if params.top_p_after_min_p else tau_k
    a_threshold = torch.nan_to_num(a_threshold, nan=FLT_MAX).clamp_min(-FLT_MAX)
    scale = torch.where(greedy, 0.0, inv_temp) if temperature_first else torch.ones_like(inv_temp)
    top_p = row_tensor(params.top_p, batch, inv_temp.device, torch.float64).nan_to_num(1.0).clamp(0.0, 1.0)
    return a_threshold, scale, torch.where(greedy, 1.0, top_p)


def filter_threshold(x: torch.Tensor, row_max: torch.Tensor, minp_threshold: torch.Tensor, inv_temp: torch.Tensor,
                     greedy: torch.Tensor, params: RowParams, temperature_first: bool) -> torch.Tensor:
    """The kept set's threshold with top-k and top-p: ``max(minp_threshold, tau_k, tau_p)`` (float32 ``[B]``).

    ``x``: sanitised float32 ``[B, V]`` rows, ``row_max`` their max, ``minp_threshold`` from
    :func:`kept_threshold` (NaN on invalid rows, which stays NaN).  ``params.threshold``, when set
    (vocab-parallel sampling computes it across the ranks), is the answer already.
    """
    if not has_filters(params):
        return minp_threshold
    if params.threshold is not None:
        return torch.maximum(minp_threshold, params.threshold)
    batch, device = x.shape[0], x.device
    threshold = minp_threshold
    tau_k = torch.full((batch,), NEG_INF, device=device)
    if isinstance(params.top_k, int):  # one k for every row (0 < k < V): a top-k, no sort, no host read
        tau_k = x.topk(params.top_k, dim=1).values[:, -1]
        threshold = torch.maximum(threshold, tau_k)
    elif params.top_k is not None:
        tau_k = _top_k_threshold(x, row_tensor(params.top_k, batch, device, torch.int64).clamp_min(0))
        threshold = torch.maximum(threshold, tau_k)
    if params.top_p is not None:
        a_threshold, scale, top_p = top_p_inputs(params, minp_threshold, tau_k, inv_temp, greedy, temperature_first)
        threshold = torch.maximum(threshold, _top_p_threshold(x, row_max, a_threshold, scale, top_p))
    return threshold


def row_threshold(x: torch.Tensor, row_max: torch.Tensor, delta: torch.Tensor, inv_temp: torch.Tensor,
                  greedy: torch.Tensor, params: RowParams, temperature_first: bool) -> torch.Tensor:
    """The whole kept set's threshold, float32 ``[B]``: ``x >= it`` is kept (NaN: an invalid row)."""
    invalid = invalid_rows(params, x.shape[0], x.device)
    return filter_threshold(x, row_max, kept_threshold(row_max, delta, invalid), inv_temp, greedy, params,
                            temperature_first)
