"""Adversarial inputs, table-driven: each case either works as documented (inputs untouched, each row
giving what its expectation says, log-probs included) or raises the documented error; none crashes
the process.  Then invalid per-row parameter values: those rows give token -1 and log-prob NaN, the
other rows are unchanged, and ``strict=True`` names the rows."""

import math
from dataclasses import dataclass

import pytest
import torch

from minp_kernels.reference import kept_mask, minp_probs

from helpers import lm_like_logits, many_draws, over_backends, sample_on_device

FP16_MAX = 65504.0
INF, NAN = float("inf"), float("nan")

# What a row of an accepted case must give.
SAMPLED = "sampled"  # a kept token; log-prob finite and equal to log(minp_probs) of that token
GREEDY = "greedy"  # the first maximal logit (NaN read as -inf); log-prob 0
NO_FINITE = "no finite logit"  # token -1; log-prob NaN


@dataclass
class Case:
    logits: torch.Tensor
    p_base: float | torch.Tensor
    temp: float
    rows: str | tuple[str, ...] = SAMPLED  # what every row gives, or one kind per row
    raises: tuple[type[Exception], str] | None = None  # (error, message pattern) of a refused input

    def row_kinds(self):
        return (self.rows,) * self.logits.shape[0] if isinstance(self.rows, str) else self.rows


def cases():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 96, generator=g) * 3
    storage = torch.randn(4 * 96 + 48, generator=g)
    fp16_ties = torch.tensor([[FP16_MAX, FP16_MAX, 1.0]] * 2, dtype=torch.float16)
    nan_and_inf = torch.tensor([[NAN, 1.0, -INF, 0.5], [NAN] * 4, [INF, 0.0, INF, 1.0], [-INF, -INF, 2.0, NAN]])
    return {
        "fp16 near 65504": Case(torch.tensor([[FP16_MAX, 65472.0, -FP16_MAX, 0.0]] * 3, dtype=torch.float16),
                                0.5, 1.0),
        "fp16 max ties": Case(fp16_ties, 1.0, 2.0),
        "fp16 max ties, greedy": Case(fp16_ties, 1.0, 0.0, rows=GREEDY),
        "bf16 ties": Case(torch.randint(-2, 2, (5, 64), generator=g).to(torch.bfloat16), 0.3, 1.0),
        "V = 1": Case(torch.randn(6, 1, generator=g), 0.1, 1.0),
        "all equal": Case(torch.full((3, 50), 2.5), 0.9, 1.0),
        "all -inf": Case(torch.full((2, 9), -INF), 0.1, 1.0, rows=NO_FINITE),
        "NaN and +inf logits": Case(nan_and_inf, 0.2, 1.0, rows=(SAMPLED, NO_FINITE, SAMPLED, SAMPLED)),
        "huge V": Case(torch.randn(1, 300_000, generator=g) * 3, 0.05, 1.0),
        "non-contiguous rows": Case(base[::2], 0.1, 1.0),
        "non-contiguous last dim": Case(base.t().contiguous().t(), 0.1, 1.0),
        "stride-0 rows (expand)": Case(base[0].expand(5, -1), 0.1, 1.0),
        "overlapping rows": Case(storage.as_strided((4, 96), (48, 1)), 0.1, 1.0),
        "zero-size batch": Case(torch.empty(0, 96), 0.1, 1.0),
        "temp inf": Case(base, 0.1, INF),  # uniform over the kept set
        "tiny temp": Case(base, 0.1, 1e-30),  # 1/temp = 1e30 is finite: still a draw
        "subnormal temp": Case(base, 0.1, 1e-40, rows=GREEDY),  # 1/temp overflows float32: greedy
        "temp above float32 range": Case(base, 0.1, 1e39),  # float32 temp = inf: uniform over the kept set
        "tiny p_base": Case(base, 1e-38, 1.0),
        "zero vocab": Case(torch.empty(2, 0), 0.1, 1.0, raises=(ValueError, "non-empty vocabulary")),
        "3-D": Case(torch.randn(2, 2, 2), 0.1, 1.0, raises=(ValueError, "1-D")),
        "float64": Case(base.double(), 0.1, 1.0, raises=(TypeError, "float64")),
        "int": Case(base.long(), 0.1, 1.0, raises=(TypeError, "int64")),
        "negative temp": Case(base, 0.1, -0.5, raises=(ValueError, "temp")),
        "nan p_base": Case(base, NAN, 1.0, raises=(ValueError, "p_base")),
        "p_base tensor length": Case(base, torch.full((3,), 0.1), 1.0, raises=(ValueError, "shape")),
    }


CASES = cases()


@over_backends
@pytest.mark.parametrize("name", list(CASES))
def test_adversarial_table(name, backend):
    case = CASES[name]
    if case.raises:
        error, pattern = case.raises
        with pytest.raises(error, match=pattern):
            sample_on_device(case.logits, case.p_base, case.temp, seed=1, backend=backend)
        return
    before = case.logits.clone()
    batch = case.logits.shape[0]
    tokens, logprobs = sample_on_device(case.logits, case.p_base, case.temp, seed=torch.arange(batch),
                                        backend=backend, return_logprobs=True)
    torch.testing.assert_close(case.logits, before, rtol=0, atol=0, equal_nan=True)  # inputs are never written
    assert tokens.shape == (batch,) and tokens.dtype == torch.int64
    assert logprobs.shape == (batch,) and logprobs.dtype == torch.float32
    x = case.logits.float()
    first_max = torch.where(torch.isnan(x), -INF, x).argmax(-1)
    kept = kept_mask(case.logits, case.p_base, case.temp)
    probs = minp_probs(case.logits, case.p_base, case.temp)
    for row, kind in enumerate(case.row_kinds()):
        token, logprob = tokens[row].item(), logprobs[row].item()
        if kind == NO_FINITE:
            assert token == -1 and math.isnan(logprob), (row, token, logprob)
        elif kind == GREEDY:
            assert token == first_max[row].item() and logprob == 0.0, (row, token, logprob)
        else:
            assert 0 <= token < case.logits.shape[-1] and kept[row, token], (row, token)
            assert math.isfinite(logprob), (row, logprob)
            assert abs(logprob - probs[row, token].log().item()) <= 1e-5, (row, logprob, probs[row, token].item())


@over_backends
def test_uniform_row_draws_uniformly(backend):
    """A row of equal logits: each of 8 tokens near 1/8 of 1,600 draws (binomial, 6 sigma)."""
    n = 1600
    tokens = many_draws(torch.zeros(8), 0.5, 1.0, backend=backend, draws=n)
    counts = torch.bincount(tokens, minlength=8).double()
    assert ((counts - n / 8).abs() < 6 * (n / 8 * 7 / 8) ** 0.5).all()


# Invalid values inside per-row tensors (scalars are refused at validation, see the table above):
# (argument, value put in BAD_ROWS); the other rows hold valid edge values (greedy, temp = +inf, p_base 0 and 1).
INVALID_ROW_VALUES = {
    "p_base NaN": ("p_base", NAN),
    "p_base -0.1": ("p_base", -0.1),
    "p_base 1.5": ("p_base", 1.5),
    "temp NaN": ("temp", NAN),
    "temp -1": ("temp", -1.0),
}
BAD_ROWS = [1, 4]
VALID_P_BASE = torch.tensor([0.1, 0.2, 0.0, 1.0, 0.05, 0.3])
VALID_TEMP = torch.tensor([1.0, 0.7, INF, 0.0, 1.3, 1.5])


@over_backends
@pytest.mark.parametrize("argument,bad_value", list(INVALID_ROW_VALUES.values()), ids=list(INVALID_ROW_VALUES))
def test_invalid_row_values(argument, bad_value, backend):
    """Invalid rows give token -1 and log-prob NaN; valid rows draw what they draw alone; strict names the rows."""
    batch = len(VALID_P_BASE)
    logits = lm_like_logits(batch, 96, seed=5)
    row_params = {"p_base": VALID_P_BASE.clone(), "temp": VALID_TEMP.clone()}
    row_params[argument][BAD_ROWS] = bad_value
    seed, offset = torch.arange(batch) * 17 + 3, torch.arange(batch)
    tokens, logprobs = sample_on_device(logits, row_params["p_base"], row_params["temp"], seed=seed, offset=offset,
                                        backend=backend, return_logprobs=True)
    bad = torch.zeros(batch, dtype=torch.bool)
    bad[BAD_ROWS] = True
    assert (tokens[bad] == -1).all() and torch.isnan(logprobs[bad]).all(), (tokens, logprobs)
    good = ~bad
    alone, alone_logprobs = sample_on_device(logits[good], row_params["p_base"][good], row_params["temp"][good],
                                             seed=seed[good], offset=offset[good], backend=backend,
                                             return_logprobs=True)
    assert torch.equal(tokens[good], alone)
    assert torch.allclose(logprobs[good], alone_logprobs, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=rf"{argument}: .*rows \[1, 4\]"):
        sample_on_device(logits, row_params["p_base"], row_params["temp"], seed=seed, offset=offset,
                         backend=backend, strict=True)
