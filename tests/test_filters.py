"""Top-k and top-p beside min-p and temperature (issue 19): kept sets against a float64 definition in
both orders, Hugging Face's warpers, ties at the k-th value and at the top-p boundary, per-row mixes
with disabled and invalid rows, splits and 16-bit logits with identical backends, and sampled
frequencies against the exact probabilities.

Statistical tests: Pearson's chi-square of counts against ``reference.minp_probs`` with fixed seeds;
each test's false-alarm rate is ``ALPHA`` (Bonferroni over the rows it checks).
"""

import math

import pytest
import scipy.stats
import torch

import minp_kernels
from minp_kernels.reference import kept_mask, minp_probs

from helpers import DEVICE, both_backends, lm_like_logits, over_backends, over_orders

ALPHA = 1e-4
DRAWS = 6000


def kept_float64(x, p_base, temp, top_k, top_p, temperature_first, top_p_after_min_p):
    """The issue's definition, one row at a time in float64: returns (kept mask, the top-p boundary
    margin |mass strictly above - top_p * mass of A| / mass of A of each token, for tolerance)."""
    y = x.double() / temp if temperature_first else x.double()
    m = y.max()
    s_minp = y >= m + math.log(p_base) if p_base > 0 else torch.isfinite(y)
    s_k = torch.ones_like(s_minp) if not top_k else y >= torch.topk(y, top_k).values[-1]
    a = s_k & s_minp if top_p_after_min_p else s_k
    w = torch.where(a, torch.exp(y - m), 0.0)
    above = (w[None, :] * (y[None, :] > y[:, None])).sum(dim=1)
    total = w.sum()
    s_p = torch.ones_like(a) if top_p is None else a & (above < top_p * total)
    margin = (above - (top_p or 1.0) * total).abs() / total
    return s_minp & s_k & s_p, margin


CASES = [(0.05, 1.0, 50, 0.9), (0.0, 1.0, None, 0.95), (0.0, 0.7, 50, None), (0.1, 1.5, 10, 0.5),
         (0.0, 2.0, 0, 0.3), (0.2, 0.5, 3, 0.99)]


@over_orders
@pytest.mark.parametrize("top_p_after_min_p", [False, True], ids=["hf_order", "vllm_order"])
@pytest.mark.parametrize("p_base,temp,top_k,top_p", CASES, ids=[f"p{c[0]}-T{c[1]}-k{c[2]}-p{c[3]}" for c in CASES])
def test_kept_set_matches_the_float64_definition(p_base, temp, top_k, top_p, temperature_first, top_p_after_min_p):
    """Every token on the right side of the definition, except where the float64 top-p mass is within
    1e-6 of the boundary (the masses are summed in 2**-32 units of the max's weight)."""
    logits = lm_like_logits(6, 3000, torch.float32, DEVICE, seed=17)
    ours = kept_mask(logits, p_base, temp, temperature_first=temperature_first, top_k=top_k, top_p=top_p,
                     top_p_after_min_p=top_p_after_min_p).cpu()
    for row in range(logits.shape[0]):
        expected, margin = kept_float64(logits[row].cpu(), p_base, temp, top_k, top_p, temperature_first,
                                        top_p_after_min_p)
        wrong = ours[row] != expected
        assert bool((margin[wrong] < 1e-6).all()), (row, wrong.nonzero().flatten().tolist())
        assert int(expected.sum()) >= 1


def test_hugging_face_warpers_keep_the_same_tokens():
    """HF's generate order (temperature, top-k, top-p, min-p) is temperature_first with top-p before
    min-p: the tokens its warpers leave finite are our kept set (rows without ties)."""
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    logits = lm_like_logits(8, 2000, torch.float32, "cpu", seed=23)
    for temp, top_k, top_p, p_base in ((1.0, 50, 0.9, 0.05), (0.7, 20, 0.5, 0.0), (1.5, 200, 0.95, 0.1)):
        scores = TemperatureLogitsWarper(temp)(None, logits.clone())
        scores = TopKLogitsWarper(top_k)(None, scores)
        scores = TopPLogitsWarper(top_p)(None, scores)
        if p_base > 0:
            scores = MinPLogitsWarper(p_base)(None, scores)
        hf = scores > float("-inf")
        ours = kept_mask(logits, p_base, temp, temperature_first=True, top_k=top_k, top_p=top_p)
        assert torch.equal(hf, ours), (temp, top_k, top_p, p_base)


@over_backends
def test_ties_at_the_kth_value_and_at_the_top_p_boundary_are_kept_whole(backend):
    """[3, 2, 2, 2, 1, 0]: top_k = 2 keeps the three tied 2s; top_p with the boundary inside the tie
    keeps all of it too.  Both backends draw only from the kept set."""
    row = torch.tensor([3.0, 2.0, 2.0, 2.0, 1.0, 0.0], device=DEVICE)
    assert kept_mask(row, 0.0, 1.0, top_k=2).tolist() == [True, True, True, True, False, False]
    w = torch.exp(row.double() - 3)
    boundary = float(w[0] / w.sum()) + 0.01  # reached inside the tie of 2s
    assert kept_mask(row, 0.0, 1.0, top_p=boundary).tolist() == [True, True, True, True, False, False]
    assert kept_mask(row, 0.0, 1.0, top_p=float(w[0] / w.sum()) * 0.99).tolist() == [True] + [False] * 5
    logits = row.repeat(256, 1)
    tokens = minp_kernels.sample(logits, 0.0, 1.0, top_k=2, seed=torch.arange(256, device=DEVICE), backend=backend)
    assert set(tokens.tolist()) <= {0, 1, 2, 3} and len(set(tokens.tolist())) == 4


FILTERS = [dict(top_k=5), dict(top_p=0.8), dict(top_k=6, top_p=0.7), dict(top_p=0.6, top_p_after_min_p=True)]


@pytest.mark.parametrize("filters", FILTERS, ids=["top_k", "top_p", "top_k+top_p", "top_p_after_min_p"])
def test_frequencies_match_the_exact_probabilities(filters):
    """Small V, 6,000 draws per case (one per seed, one call): chi-square against ``minp_probs`` with
    the same filters; draws outside the kept set fail outright."""
    gen = torch.Generator().manual_seed(5)
    row = (torch.randn(12, generator=gen) * 1.5).to(DEVICE)
    logits = row.repeat(DRAWS, 1)
    for temperature_first in (False, True):
        tokens = minp_kernels.sample(logits, 0.05, 1.3, seed=torch.arange(DRAWS, device=DEVICE) + 99,
                                     temperature_first=temperature_first, backend="torch", **filters)
        probs = minp_probs(row, 0.05, 1.3, temperature_first=temperature_first, **filters).cpu().double()
        counts = torch.bincount(tokens.cpu(), minlength=12).double()
        support = probs > 0
        assert counts[~support].sum() == 0
        if int(support.sum()) > 1:
            p = scipy.stats.chisquare(counts[support], probs[support] / probs[support].sum() * DRAWS).pvalue
            assert p > ALPHA / 2, (filters, temperature_first, counts.tolist(), probs.tolist())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["float32", "bfloat16", "float16"])
def test_per_row_mixes_with_disabled_and_invalid_rows_identical_backends(dtype):
    """Per-row top_k / top_p tensors mixing off (0, >= V, 1.0), active and invalid (-1, 0.0, NaN, 1.5)
    values, with and without splits: the interpreted kernel draws the torch backend's tokens and
    log-probs, invalid rows give -1 / NaN, the others what they draw alone."""
    batch, vocab = 8, 3000
    logits = lm_like_logits(batch, vocab, dtype, DEVICE, seed=3)
    top_k = torch.tensor([0, 1, 5, 50, vocab, -1, 20, 7], device=DEVICE)
    top_p = torch.tensor([0.9, 1.0, 0.3, 0.5, 0.99, 0.5, float("nan"), 0.0], device=DEVICE)
    seed = torch.arange(batch, device=DEVICE) + 11
    for after in (False, True):
        for splits in (1, 3):
            (tok, lp), (tok_ref, lp_ref) = both_backends(logits, 0.02, 1.2, seed, 4, True, True, num_splits=splits,
                                                          top_k=top_k, top_p=top_p, top_p_after_min_p=after)
            assert torch.equal(tok, tok_ref), (after, splits)
            assert torch.allclose(lp, lp_ref, atol=1e-5, rtol=0, equal_nan=True)
            assert tok[5:].tolist() == [-1, -1, -1] and lp[5:].isnan().all()
            assert int(tok[1]) == int(logits[1].float().argmax())  # top_k = 1: the argmax
    alone = minp_kernels.sample(logits[2:3], 0.02, 1.2, seed=seed[2:3], offset=4, temperature_first=True,
                                top_k=5, top_p=0.3, backend="torch")
    assert int(alone) == int(tok_ref[2])


def test_scalar_errors_and_strict_rows():
    logits = torch.randn(3, 100)
    for kwargs, error, message in ((dict(top_k=-1), ValueError, r"top_k: expected an int >= 0"),
                                   (dict(top_k=2.5), TypeError, r"top_k: expected None, an int"),
                                   (dict(top_k=True), TypeError, r"top_k: expected None, an int"),
                                   (dict(top_p=0.0), ValueError, r"top_p: expected a value in \(0, 1\]"),
                                   (dict(top_p=1.5), ValueError, r"top_p: expected a value in \(0, 1\]"),
                                   (dict(top_p=float("nan")), ValueError, r"top_p: expected a value in \(0, 1\]"),
                                   (dict(top_p=torch.ones(3, dtype=torch.int64)), TypeError, r"top_p: expected a fl"),
                                   (dict(top_k=torch.ones(3)), TypeError, r"top_k: expected an integer tensor"),
                                   (dict(top_k=torch.ones(2, dtype=torch.int64)), ValueError, r"top_k: expected a s"),
                                   (dict(top_p_after_min_p="yes"), TypeError, r"top_p_after_min_p: expected a bool")):
        with pytest.raises(error, match=message):
            minp_kernels.sample(logits, 0.1, 1.0, seed=1, **kwargs)
    with pytest.raises(ValueError, match=r"top_k: expected values >= 0, got \[-2\] at rows \[1\]"):
        minp_kernels.sample(logits, 0.1, 1.0, seed=1, top_k=torch.tensor([1, -2, 3]), strict=True)
    with pytest.raises(ValueError, match=r"top_p: expected values \(0, 1\], got \[0.0\] at rows \[2\]"):
        minp_kernels.sample(logits, 0.1, 1.0, seed=1, top_p=torch.tensor([0.5, 1.0, 0.0]), strict=True)


def test_filters_off_draw_exactly_what_min_p_alone_draws():
    """top_k 0 / >= V and top_p 1.0 are off: the same tokens as without them (no threshold pass)."""
    logits = lm_like_logits(4, 2000, torch.float32, DEVICE, seed=9)
    seed = torch.arange(4, device=DEVICE)
    plain = minp_kernels.sample(logits, 0.1, 1.0, seed=seed)
    for kwargs in (dict(top_k=0), dict(top_k=2000), dict(top_p=1.0), dict(top_k=torch.zeros(4, dtype=torch.int64,
                                                                                             device=DEVICE))):
        assert torch.equal(minp_kernels.sample(logits, 0.1, 1.0, seed=seed, **kwargs), plain), kwargs
