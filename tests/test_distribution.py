"""Sampled frequencies against minp_probs: chi-square, 20,000 draws per (backend, order).

Each test rejects at alpha = 1e-4; with 4 tests the family-wise false-alarm rate is <= 4e-4 (and the
seeds are fixed, so a pass is reproducible).  Zero draws may fall outside the kept set.
"""

import pytest
import torch
from scipy import stats

import minp_kernels
from conftest import DEVICE
from minp_kernels.reference import minp_probs

ALPHA = 1e-4
DRAWS = 20_000
ROW = torch.tensor([2.0, 1.5, 0.3, -0.5, -1.0, -3.0, float("-inf"), 1.9])


def chi_square_pvalue(tokens, probs):
    """p-value of the kept-set counts against ``probs``; asserts nothing lands outside the kept set."""
    counts = torch.bincount(tokens, minlength=probs.numel()).double()
    kept = probs > 0
    assert counts[~kept].sum() == 0, f"draws outside the kept set: {counts[~kept].tolist()}"
    expected = probs[kept].double() * len(tokens)
    return stats.chisquare(counts[kept].numpy(), expected.numpy() * counts[kept].sum().item() / expected.sum().item()).pvalue


@pytest.mark.slow
@pytest.mark.parametrize("temperature_first", [False, True])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_chi_square(backend, temperature_first):
    p_base, temp = 0.1, 1.5
    probs = minp_probs(ROW, p_base, temp, temperature_first=temperature_first)
    assert (probs > 0).sum() >= 3  # a test with something to distinguish
    tokens = minp_kernels.sample(ROW.to(DEVICE).expand(DRAWS, -1), p_base, temp,
                                 seed=torch.arange(DRAWS, device=DEVICE) + 10_000, offset=7,
                                 temperature_first=temperature_first, backend=backend).cpu()
    assert chi_square_pvalue(tokens, probs) > ALPHA
