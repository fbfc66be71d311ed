"""sample_with_logprobs (issue 20): every field against a float64 log_softmax / topk / gather of the
same distribution, in both modes; ties; N beyond the kept set; given ids inside and outside it;
invalid rows; 16-bit logits; splits; tokens equal to sample()'s; identical backends; clear errors."""

import math

import pytest
import torch

import minp_kernels
from minp_kernels.reference import kept_mask, minp_probs

from helpers import DEVICE, lm_like_logits, over_backends, over_orders

MODES = ("processed", "raw")


def float64_fields(logits, p_base, temp, temperature_first, mode, filters):
    """(log-probs [B, V], kept mass [B]) in float64 from the definition (kept set from kept_mask)."""
    x = torch.nan_to_num(logits.double(), nan=-math.inf, posinf=torch.finfo(torch.float32).max)
    keep = kept_mask(logits, p_base, temp, temperature_first=temperature_first, **filters)
    tempered = torch.where(torch.isfinite(x), x / temp, -math.inf)
    kept_mass = torch.exp(torch.logsumexp(torch.where(keep, tempered, -math.inf), 1) - torch.logsumexp(tempered, 1))
    if mode == "raw":
        return torch.log_softmax(x, dim=1), kept_mass
    return torch.log_softmax(torch.where(keep, tempered, -math.inf), dim=1), kept_mass


@over_backends
@over_orders
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("filters", [{}, dict(top_k=30, top_p=0.8)], ids=["min-p", "min-p+top-k+top-p"])
def test_fields_match_float64(backend, temperature_first, mode, filters):
    logits = lm_like_logits(6, 2048, torch.float32, DEVICE, seed=31)
    seed = torch.arange(6, device=DEVICE) + 3
    token_ids = torch.randint(0, 2048, (6, 7), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    out = minp_kernels.sample_with_logprobs(logits, 0.05, 1.3, seed=seed, offset=2, top_logprobs=20,
                                            token_ids=token_ids, logprobs_mode=mode, backend=backend,
                                            temperature_first=temperature_first, **filters)
    tokens = minp_kernels.sample(logits, 0.05, 1.3, seed=seed, offset=2, backend=backend,
                                 temperature_first=temperature_first, **filters)
    assert torch.equal(out.tokens, tokens)
    lp64, mass64 = float64_fields(logits.cpu(), 0.05, 1.3, temperature_first, mode, filters)
    lp64 = lp64.to(DEVICE)
    assert torch.allclose(out.logprobs.double(), lp64.gather(1, tokens[:, None])[:, 0], atol=1e-5, rtol=0)
    finite = lp64.gather(1, token_ids) > -math.inf
    got = out.token_logprobs.double()
    assert torch.equal(got > -math.inf, finite)
    assert torch.allclose(got[finite], lp64.gather(1, token_ids)[finite], atol=1e-5, rtol=0)
    assert torch.allclose(out.kept_mass.double(), mass64.to(DEVICE), atol=1e-6, rtol=0)
    for row in range(6):
        values, ids = lp64[row].topk(20)
        real = values > -math.inf
        assert torch.equal(out.top_token_ids[row][real], ids[real])  # no ties in these rows
        assert torch.allclose(out.top_logprobs[row][real].double(), values[real], atol=1e-5, rtol=0)
        if mode == "processed":  # past the kept set: id -1, -inf
            assert (out.top_token_ids[row][~real] == -1).all() and (out.top_logprobs[row][~real] == -math.inf).all()
        assert int(out.ranks[row]) == 1 + int((lp64[row] > lp64[row, tokens[row]]).sum())


def test_ties_lowest_id_first_and_n_beyond_the_kept_set():
    row = torch.tensor([1.0, 3.0, 3.0, 0.0, 3.0, -1.0], device=DEVICE)
    out = minp_kernels.sample_with_logprobs(row, 0.5, 1.0, seed=1, top_logprobs=5)
    assert out.top_token_ids.tolist() == [1, 2, 4, -1, -1]  # only the three 3s are kept (p_base 0.5)
    assert torch.allclose(out.top_logprobs[:3], torch.full((3,), -math.log(3.0), device=DEVICE))
    raw = minp_kernels.sample_with_logprobs(row, 0.5, 1.0, seed=1, top_logprobs=6, logprobs_mode="raw")
    assert raw.top_token_ids.tolist() == [1, 2, 4, 0, 3, 5]
    assert int(raw.ranks) == 1  # a 3, nothing strictly above it


@over_backends
def test_greedy_invalid_and_nothing_cut(backend):
    logits = lm_like_logits(4, 500, torch.float32, DEVICE, seed=4)
    temp = torch.tensor([0.0, 1.0, float("nan"), 1.0], device=DEVICE)
    p_base = torch.tensor([0.1, 0.0, 0.1, 0.1], device=DEVICE)
    out = minp_kernels.sample_with_logprobs(logits, p_base, temp, seed=torch.arange(4, device=DEVICE),
                                            top_logprobs=3, token_ids=torch.zeros(4, 2, dtype=torch.int64,
                                                                                   device=DEVICE), backend=backend)
    assert out.logprobs[0] == 0 and out.ranks[0] == 1 and out.kept_mass[0] == 1  # greedy: a point mass
    assert out.top_token_ids[0].tolist() == [int(logits[0].argmax()), -1, -1]
    assert abs(float(out.kept_mass[1]) - 1.0) < 1e-6  # p_base 0: nothing cut
    assert out.tokens[2] == -1 and out.ranks[2] == -1 and out.logprobs[2].isnan() and out.kept_mass[2].isnan()
    assert (out.top_token_ids[2] == -1).all() and out.top_logprobs[2].isnan().all()
    assert out.token_logprobs[2].isnan().all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_16_bit_logits_and_splits_identical_backends(dtype):
    logits = lm_like_logits(5, 3000, dtype, DEVICE, seed=8)
    seed = torch.arange(5, device=DEVICE)
    results = [minp_kernels.sample_with_logprobs(logits, 0.1, 0.9, seed=seed, top_logprobs=8, backend=backend,
                                                 temperature_first=True) for backend in ("torch", "triton")]
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_errors():
    logits = torch.randn(2, 10)
    for kwargs, error, message in (
            (dict(top_logprobs=65), ValueError, r"top_logprobs: expected an int in \[0, 64\], got 65"),
            (dict(top_logprobs=-1), ValueError, r"top_logprobs: expected an int in \[0, 64\]"),
            (dict(top_logprobs=2.0), TypeError, r"top_logprobs: expected an int"),
            (dict(logprobs_mode="processed_logits"), ValueError, r"logprobs_mode: expected one of"),
            (dict(token_ids=torch.zeros(2, 3)), TypeError, r"token_ids: expected an integer tensor"),
            (dict(token_ids=torch.zeros(3, 3, dtype=torch.int64)), ValueError,
             r"token_ids: expected a tensor of shape \[2, M\]"),
            (dict(token_ids=torch.tensor([[0, 10], [1, 2]])), ValueError,
             r"token_ids: expected ids in \[0, 10\), got \[10\]"),
            (dict(token_ids=torch.tensor([[0, -1], [1, 2]])), ValueError, r"token_ids: expected ids in \[0, 10\)")):
        with pytest.raises(error, match=message):
            minp_kernels.sample_with_logprobs(logits, 0.1, 1.0, seed=1, **kwargs)


@over_backends
def test_infinite_temperature_rows(backend):
    """temp = inf: every kept token has log-prob -ln(n) (n = 3 and 4 here), even when the row's range
    passes the float32 range (no -inf * 0); they all tie (rank 1, lowest ids first)."""
    row = torch.tensor([[float("inf"), -3e38, 0.0, float("-inf")], [1.0, 2.0, 3.0, -5.0]], device=DEVICE)
    out = minp_kernels.sample_with_logprobs(row, 0.0, float("inf"), seed=torch.arange(2, device=DEVICE),
                                            backend=backend, top_logprobs=4)
    tokens, lp = minp_kernels.sample(row, 0.0, float("inf"), seed=torch.arange(2, device=DEVICE), backend=backend,
                                     return_logprobs=True)
    assert torch.equal(out.tokens, tokens)
    assert torch.allclose(lp, torch.tensor([-math.log(3.0), -math.log(4.0)], device=DEVICE), atol=1e-6)
    assert torch.allclose(out.logprobs, lp, atol=1e-6)
    assert out.ranks.tolist() == [1, 1]
    assert out.top_token_ids.tolist() == [[0, 1, 2, -1], [0, 1, 2, 3]]
    assert torch.isfinite(minp_probs(row, 0.0, float("inf"))).all()


def test_more_top_logprobs_than_tokens():
    row = torch.tensor([0.5, 2.0, 1.0], device=DEVICE)
    for mode in MODES:
        out = minp_kernels.sample_with_logprobs(row, 0.0, 1.0, seed=1, top_logprobs=5, logprobs_mode=mode)
        assert out.top_token_ids.tolist() == [1, 2, 0, -1, -1]
