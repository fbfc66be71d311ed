"""Sampled frequencies against minp_probs: chi-square, 20,000 draws per (backend, order).

Each test rejects at alpha = 1e-4; with 4 tests the family-wise false-alarm rate is <= 4e-4 (and the
seeds are fixed, so a pass is reproducible).  Zero draws may fall outside the kept set.

On a GPU the kernel draws all 20,000 rows.  Under Triton's CPU interpreter a row costs about 30 ms
(the 20,000 rows took over 10 minutes per test), so there the kernel draws 64 of the rows, spread over
the seeds, which must equal the torch backend's tokens bit for bit, and the torch backend draws all
20,000 (:func:`helpers.many_draws`).  The backends return identical tokens for identical inputs
(asserted over wide grids in test_equivalence and test_properties), so the torch draws stand for the
kernel's and the test keeps its power: 20,000 draws, alpha = 1e-4.  On CPU the two backends' tests then
see the same tokens, so the four tests together raise a false alarm with probability at most 2e-4.
"""

import pytest
import torch
from scipy import stats

from minp_kernels.reference import minp_probs

from helpers import many_draws, over_backends, over_orders

ALPHA = 1e-4
DRAWS = 20_000
ROW = torch.tensor([2.0, 1.5, 0.3, -0.5, -1.0, -3.0, float("-inf"), 1.9])


def chi_square_pvalue(tokens, probs):
    """p-value of the kept-set counts against ``probs``; asserts nothing lands outside the kept set."""
    counts = torch.bincount(tokens, minlength=probs.numel()).double()
    kept = probs > 0
    assert counts[~kept].sum() == 0, f"draws outside the kept set: {counts[~kept].tolist()}"
    expected = probs[kept].double() * len(tokens)
    expected *= counts[kept].sum() / expected.sum()  # chisquare wants equal totals (float rounding)
    return stats.chisquare(counts[kept].numpy(), expected.numpy()).pvalue


@pytest.mark.slow
@over_orders
@over_backends
def test_chi_square(backend, temperature_first):
    p_base, temp = 0.1, 1.5
    probs = minp_probs(ROW, p_base, temp, temperature_first=temperature_first)
    assert (probs > 0).sum() >= 3  # a test with something to distinguish
    tokens = many_draws(ROW, p_base, temp, backend=backend, draws=DRAWS, first_seed=10_000, offset=7,
                        temperature_first=temperature_first)
    assert len(tokens) == DRAWS
    assert chi_square_pvalue(tokens, probs) > ALPHA
