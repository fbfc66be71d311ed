"""Distribution grid: sampled frequencies against minp_probs over (V, p_base, temp, order), with the
family-wise false-alarm rate controlled by Bonferroni, plus tests of the test (deliberately wrong
samplers must fail it) and tests of the Philox noise itself.

The grid uses the torch backend: the Triton kernel returns identical tokens for identical inputs
(test_equivalence, test_properties) and has its own 20,000-draw chi-square in test_distribution.
"""

import itertools

import pytest
import torch
from scipy import stats

from minp_kernels.params import RowParams
from minp_kernels.philox import gumbel_noise, token_words, uniform_from_words
from minp_kernels.reference import minp_probs
from minp_kernels.torch_sampler import sample_torch

FAMILY_ALPHA = 1e-3
GRID = list(itertools.product([8, 64], [0.02, 0.1, 0.3], [0.3, 1.0, 1.5, 3.0], [False, True]))
ALPHA = FAMILY_ALPHA / len(GRID)  # Bonferroni: P(any false alarm over the grid) <= 1e-3
DRAWS = 20_000


def row_logits(vocab):
    """A fixed LM-like row: a few strong tokens over a Gaussian tail."""
    x = torch.randn(vocab, generator=torch.Generator().manual_seed(vocab)) * 1.5
    x[: max(1, vocab // 8)] += torch.linspace(3, 0.5, max(1, vocab // 8))
    return x


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


def draw(logits_row, p_base, temp, temperature_first, seed0=0):
    batch = logits_row.expand(DRAWS, -1)
    params = RowParams(p_base, temp, torch.arange(DRAWS) + seed0, 3, False)
    return sample_torch(batch, params, temperature_first)[0]


@pytest.mark.slow
@pytest.mark.parametrize("vocab,p_base,temp,temperature_first", GRID)
def test_grid_matches_minp_probs(vocab, p_base, temp, temperature_first):
    row = row_logits(vocab)
    probs = minp_probs(row, p_base, temp, temperature_first=temperature_first)
    assert g_test_pvalue(draw(row, p_base, temp, temperature_first), probs) > ALPHA


def gumbel_max_of(probs, seed0=0):
    """Draws from arbitrary probabilities with the same noise (for deliberately wrong samplers)."""
    noise = gumbel_noise(torch.arange(DRAWS) + seed0, torch.full((DRAWS,), 3), torch.zeros(DRAWS, dtype=torch.int64),
                         probs.numel())
    return (probs.log()[None, :] + noise).argmax(-1)


@pytest.mark.parametrize("mistake", ["threshold on tempered probabilities", "temperature applied twice"])
def test_wrong_samplers_fail_the_test(mistake):
    """The grid's test has power: each plausible implementation bug is rejected at the grid's alpha."""
    row, p_base, temp = row_logits(64), 0.1, 3.0
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


def test_philox_uniforms_are_uniform():
    """Kolmogorov-Smirnov on 200,000 uniforms from one stream, and on the first token across seeds."""
    u = uniform_from_words(token_words(torch.tensor(42), torch.arange(200_000), torch.tensor(0), torch.tensor(0)))
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-4
    across_seeds = uniform_from_words(token_words(torch.arange(200_000), torch.tensor(0), torch.tensor(0),
                                                   torch.tensor(0)))
    assert stats.kstest(across_seeds.numpy(), "uniform").pvalue > 1e-4


@pytest.mark.parametrize("neighbour", ["seed", "offset", "stream"])
def test_philox_streams_independent(neighbour):
    """Uniforms of adjacent seeds / offsets / rows: the 10x10 joint histogram is uniform (chi-square)
    and the correlation is within 5 standard errors of 0."""
    n = 100_000
    token = torch.arange(n)
    base = dict(seed=torch.tensor(7), stream=torch.tensor(3), offset=torch.tensor(11))
    moved = dict(base)
    moved[neighbour] = base[neighbour] + 1
    a = uniform_from_words(token_words(base["seed"], token, base["stream"], base["offset"]))
    b = uniform_from_words(token_words(moved["seed"], token, moved["stream"], moved["offset"]))
    joint = torch.bincount((a * 10).long() * 10 + (b * 10).long(), minlength=100).numpy()
    assert stats.chisquare(joint).pvalue > 1e-4
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 5 / n**0.5
