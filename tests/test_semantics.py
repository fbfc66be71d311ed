"""Edge cases of the documented semantics, on both backends, through the public API."""

import pytest
import torch

from minp_kernels.reference import minp_probs

from helpers import DEVICE, lm_like_logits, many_draws, over_backends, over_orders
from helpers import sample_on_device as sample

INF, NAN = float("inf"), float("nan")


@over_backends
def test_greedy_lowest_index_among_ties(backend):
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [5.0, -1.0, 5.0, 5.0]])
    for p_base in (0.0, 0.1, 1.0):
        for temperature_first in (False, True):
            out = sample(logits, p_base, 0.0, seed=5, backend=backend, temperature_first=temperature_first)
            assert out.tolist() == [1, 0]


@over_backends
def test_p_base_zero_reaches_every_finite_token(backend):
    row = torch.tensor([0.0, -1.0, float("-inf"), 0.5, -2.0])
    seen = set(many_draws(row, 0.0, 2.0, backend=backend, draws=400).tolist())
    assert seen == {0, 1, 3, 4}


@over_backends
def test_p_base_one_keeps_max_ties_uniformly(backend):
    row = torch.tensor([3.0, 1.0, 3.0, 2.999, 3.0])
    out = many_draws(row, 1.0, 1.0, backend=backend, draws=600)
    counts = torch.bincount(out, minlength=5)
    assert counts[1] == counts[3] == 0
    assert counts[[0, 2, 4]].min() > 150  # each near 200; binomial tail < 1e-6


@over_backends
def test_nan_and_inf(backend):
    logits = torch.tensor([
        [NAN, 0.0, -INF, 1.0],       # NaN acts as -inf
        [-INF, -INF, -INF, -INF],    # no finite logit
        [NAN, NAN, NAN, NAN],
        [0.0, INF, 5.0, INF],        # +inf tokens are the kept set
    ])
    tokens, logprobs = sample(logits, 0.0, 1.0, seed=torch.arange(4), backend=backend, return_logprobs=True)
    assert tokens[0].item() in (1, 3)
    assert tokens[1].item() == tokens[2].item() == -1
    assert torch.isnan(logprobs[1]) and torch.isnan(logprobs[2])
    assert tokens[3].item() in (1, 3)
    with pytest.raises(ValueError, match=r"logits: .*rows \[1, 2\]"):
        sample(logits, 0.0, 1.0, seed=1, backend=backend, strict=True)


@over_backends
@over_orders
def test_logprobs_match_reference_probs(backend, temperature_first):
    logits = lm_like_logits(40, 300, seed=4)
    p_base, temp = torch.linspace(0, 0.5, 40), torch.linspace(0.2, 3, 40)
    tokens, logprobs = sample(logits, p_base, temp, seed=torch.arange(40), backend=backend,
                              temperature_first=temperature_first, return_logprobs=True)
    probs = minp_probs(logits, p_base, temp, temperature_first=temperature_first)
    picked = probs.gather(1, tokens[:, None])[:, 0]
    assert (picked > 0).all()
    assert torch.allclose(logprobs, picked.log(), atol=1e-5, rtol=0)


@over_backends
def test_shapes_strides_and_empty_batch(backend):
    base = lm_like_logits(6, 64, seed=2)
    seed = torch.arange(3)
    ref = sample(base[::2].contiguous(), 0.1, 1.0, seed=seed, backend=backend)
    assert torch.equal(sample(base[::2], 0.1, 1.0, seed=seed, backend=backend), ref)  # row stride
    strided_last = base[::2].t().contiguous().t()  # last dim not unit-stride
    assert torch.equal(sample(strided_last, 0.1, 1.0, seed=seed, backend=backend), ref)
    one = sample(base[0], 0.1, 1.0, seed=0, backend=backend)
    assert one.shape == () and one.dtype == torch.int64
    tokens, logprobs = sample(torch.empty(0, 64), 0.1, 1.0, backend=backend, return_logprobs=True)
    assert tokens.shape == (0,) and tokens.dtype == torch.int64 and logprobs.shape == (0,)


@over_backends
def test_determinism_and_batch_invariance(backend):
    logits = lm_like_logits(8, 500, seed=6)
    seed, offset = torch.arange(8) * 31 + 1, torch.arange(8) + 100
    full = sample(logits, 0.05, 1.5, seed=seed, offset=offset, backend=backend)
    assert torch.equal(full, sample(logits, 0.05, 1.5, seed=seed, offset=offset, backend=backend))
    for row in (0, 5):
        alone = sample(logits[row], 0.05, 1.5, seed=int(seed[row]), offset=int(offset[row]), backend=backend)
        assert alone.item() == full[row].item()  # own seed, own row: index in the batch does not matter
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    shuffled = sample(logits[perm], 0.05, 1.5, seed=seed[perm], offset=offset[perm], backend=backend)
    assert torch.equal(shuffled, full[perm])
    bigger = torch.cat([lm_like_logits(3, 500, seed=7), logits])
    padded = sample(bigger, 0.05, 1.5, seed=torch.cat([torch.arange(3), seed]),
                    offset=torch.cat([torch.arange(3), offset]), backend=backend)
    assert torch.equal(padded[3:], full)


@over_backends
def test_generator_seed_and_offsets(backend):
    # Flat rows (std 1): identical rows then spread their draws over many tokens.
    flat = lm_like_logits(64, 200, seed=8, peaked_every=0) / 3
    logits = flat[:16]  # 16 rows make a coincidence of different seeds' tokens impossible in practice
    a = sample(logits, 0.0, 1.0, generator=torch.Generator(DEVICE).manual_seed(3), backend=backend)
    b = sample(logits, 0.0, 1.0, generator=torch.Generator(DEVICE).manual_seed(3), backend=backend)
    c = sample(logits, 0.0, 1.0, generator=torch.Generator(DEVICE).manual_seed(4), backend=backend)
    assert torch.equal(a, b) and not torch.equal(a, c)
    step0 = sample(logits, 0.0, 1.0, seed=9, offset=0, backend=backend)
    step1 = sample(logits, 0.0, 1.0, seed=9, offset=1, backend=backend)
    assert not torch.equal(step0, step1)
    # A shared seed still gives rows independent streams: identical rows draw different tokens.
    same_rows = sample(flat[:1].expand(64, -1), 0.0, 1.0, seed=9, backend=backend)
    assert len(set(same_rows.tolist())) > 10
