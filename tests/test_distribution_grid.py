"""Distribution grid: sampled frequencies against minp_probs over (V, p_base, temp, order), with the
family-wise false-alarm rate controlled by Bonferroni, plus tests of the test (deliberately wrong
samplers must fail it).  The statistics of the Philox noise itself are in test_philox.

The grid uses the torch backend: the Triton kernel returns identical tokens for identical inputs
(test_equivalence, test_properties) and has its own 20,000-draw chi-square in test_distribution.
"""

import itertools

import pytest
import torch
from scipy import stats

from minp_kernels.params import RowParams
from minp_kernels.philox import gumbel_noise
from minp_kernels.reference import minp_probs
from minp_kernels.torch_sampler import sample_torch

from helpers import distribution_row

FAMILY_ALPHA = 1e-3
GRID = list(itertools.product([8, 64], [0.02, 0.1, 0.3], [0.3, 1.0, 1.5, 3.0], [False, True]))
ALPHA = FAMILY_ALPHA / len(GRID)  # Bonferroni: P(any false alarm over the grid) <= 1e-3
DRAWS = 20_000


def grid_id(case):
    vocab, p_base, temp, temperature_first = case
    return f"V={vocab}-p_base={p_base}-temp={temp}-{'temperature_first' if temperature_first else 'paper_order'}"


def g_test_pvalue(tokens, probs, min_expected=5.0):
    """G-test p-value of token counts against ``probs`` on the kept set, pooling bins expected < 5."""
    counts = torch.bincount(tokens, minlength=probs.numel()).double()
    kept = probs > 0
    assert counts[~kept].sum() == 0, "draws outside the kept set"
    expected = probs.double() * len(tokens)
    big = kept & (expected >= min_expected)
    small = kept & ~big
    obs = torch.cat([counts[big], counts[small].sum().reshape(1)]) if small.any() else counts[big]
    exp = torch.cat([expected[big], expected[small].sum().reshape(1)]) if small.any() else expected[big]
    if len(obs) < 2:
        return 1.0
    return stats.power_divergence(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item(),
                                  lambda_="log-likelihood").pvalue


def draw(logits_row, p_base, temp, temperature_first, first_seed=0):
    batch = logits_row.expand(DRAWS, -1)
    params = RowParams(p_base, temp, torch.arange(DRAWS) + first_seed, 3, False)
    return sample_torch(batch, params, temperature_first)[0]


@pytest.mark.slow
@pytest.mark.parametrize("vocab,p_base,temp,temperature_first", GRID, ids=[grid_id(case) for case in GRID])
def test_grid_matches_minp_probs(vocab, p_base, temp, temperature_first):
    row = distribution_row(vocab)
    probs = minp_probs(row, p_base, temp, temperature_first=temperature_first)
    assert g_test_pvalue(draw(row, p_base, temp, temperature_first), probs) > ALPHA


def gumbel_max_of(probs, first_seed=0):
    """Draws from arbitrary probabilities with the same noise (for deliberately wrong samplers)."""
    noise = gumbel_noise(torch.arange(DRAWS) + first_seed, torch.full((DRAWS,), 3),
                         torch.zeros(DRAWS, dtype=torch.int64), probs.numel())
    return (probs.log()[None, :] + noise).argmax(-1)


@pytest.mark.parametrize("mistake", ["threshold on tempered probabilities", "temperature applied twice"])
def test_wrong_samplers_fail_the_test(mistake):
    """The grid's test has power: each plausible implementation bug is rejected at the grid's alpha."""
    row, p_base, temp = distribution_row(64), 0.1, 3.0
    right = minp_probs(row, p_base, temp)  # paper order
    if mistake == "threshold on tempered probabilities":
        wrong = minp_probs(row, p_base, temp, temperature_first=True)
    else:
        wrong = minp_probs(row / temp, p_base, temp)
    assert not torch.equal(right > 0, wrong > 0) or (right - wrong).abs().max() > 0.01
    tokens = gumbel_max_of(wrong)
    kept = right > 0
    outside = (~kept[tokens]).any()
    assert outside or g_test_pvalue(tokens, right) < ALPHA
