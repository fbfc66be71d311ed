"""Adversarial inputs, table-driven: each case either works as documented (token in range, inputs
untouched) or raises the documented error; none crashes the process."""

import pytest
import torch

import minp_kernels
from conftest import DEVICE
from minp_kernels.reference import kept_mask

FP16_MAX = 65504.0


def inputs():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 96, generator=g) * 3
    storage = torch.randn(4 * 96 + 48, generator=g)
    return {
        # name: (logits, p_base, temp, expected: "ok" or (exception, pattern))
        "fp16 near 65504": (torch.tensor([[FP16_MAX, 65472.0, -FP16_MAX, 0.0]] * 3, dtype=torch.float16), 0.5, 1.0, "ok"),
        "fp16 max ties": (torch.tensor([[FP16_MAX, FP16_MAX, 1.0]] * 2, dtype=torch.float16), 1.0, 2.0, "ok"),
        "bf16 ties": (torch.randint(-2, 2, (5, 64), generator=g).to(torch.bfloat16), 0.3, 1.0, "ok"),
        "V = 1": (torch.randn(6, 1, generator=g), 0.1, 1.0, "ok"),
        "all equal": (torch.full((3, 50), 2.5), 0.9, 1.0, "ok"),
        "all -inf": (torch.full((2, 9), float("-inf")), 0.1, 1.0, "ok"),
        "huge V": (torch.randn(1, 300_000, generator=g) * 3, 0.05, 1.0, "ok"),
        "non-contiguous rows": (base[::2], 0.1, 1.0, "ok"),
        "non-contiguous last dim": (base.t().contiguous().t(), 0.1, 1.0, "ok"),
        "stride-0 rows (expand)": (base[0].expand(5, -1), 0.1, 1.0, "ok"),
        "overlapping rows": (storage.as_strided((4, 96), (48, 1)), 0.1, 1.0, "ok"),
        "zero-size batch": (torch.empty(0, 96), 0.1, 1.0, "ok"),
        "temp inf": (base, 0.1, float("inf"), "ok"),
        "tiny temp": (base, 0.1, 1e-30, "ok"),
        "tiny p_base": (base, 1e-38, 1.0, "ok"),
        "zero vocab": (torch.empty(2, 0), 0.1, 1.0, (ValueError, "non-empty vocabulary")),
        "3-D": (torch.randn(2, 2, 2), 0.1, 1.0, (ValueError, "1-D")),
        "float64": (base.double(), 0.1, 1.0, (TypeError, "float64")),
        "int": (base.long(), 0.1, 1.0, (TypeError, "int64")),
        "negative temp": (base, 0.1, -0.5, (ValueError, "temp")),
        "nan p_base": (base, float("nan"), 1.0, (ValueError, "p_base")),
        "p_base tensor length": (base, torch.full((3,), 0.1), 1.0, (ValueError, "shape")),
    }


CASES = inputs()


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("name", list(CASES))
def test_adversarial_table(name, backend):
    logits, p_base, temp, expected = CASES[name]
    logits = logits.to(DEVICE)
    before = logits.clone()
    p_arg = p_base.to(DEVICE) if isinstance(p_base, torch.Tensor) else p_base
    if expected != "ok":
        error, pattern = expected
        with pytest.raises(error, match=pattern):
            minp_kernels.sample(logits, p_arg, temp, seed=1, backend=backend)
        return
    batch = logits.shape[0]
    tokens, logprobs = minp_kernels.sample(logits, p_arg, temp, seed=torch.arange(batch, device=DEVICE),
                                           backend=backend, return_logprobs=True)
    assert torch.equal(logits, before) or torch.isnan(before).any()  # inputs are never written
    assert tokens.shape == (batch,) and tokens.dtype == torch.int64
    assert ((tokens >= -1) & (tokens < logits.shape[-1])).all()
    if batch:
        kept = kept_mask(logits.cpu(), p_base, temp if temp < float("inf") else 1.0)
        finite_rows = torch.nonzero(kept.any(-1)).flatten()
        assert (tokens.cpu()[~kept.any(-1)] == -1).all()
        if temp > 0 and temp * 1e30 > 1:  # sampling rows: the token is kept
            assert kept[finite_rows, tokens.cpu()[finite_rows]].all()


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_uniform_row_draws_uniformly(backend):
    """A row of equal logits: each of 8 tokens near 1/8 of 1,600 draws (binomial, 6 sigma)."""
    n = 1600
    tokens = minp_kernels.sample(torch.zeros(n, 8, device=DEVICE), 0.5, 1.0, seed=torch.arange(n, device=DEVICE),
                                 backend=backend).cpu()
    counts = torch.bincount(tokens, minlength=8).double()
    assert ((counts - n / 8).abs() < 6 * (n / 8 * 7 / 8) ** 0.5).all()
