"""Property-based tests (hypothesis): random shapes, dtypes, logit families, parameters and seeds,
both orders and both backends (the Triton kernel under the interpreter on CPU, so shapes stay small)."""

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minp_kernels.reference import kept_mask, minp_probs

from helpers import DTYPES, FAMILIES, logit_family, sample_on_device

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
P_BASES = [0.0, 0.02, 0.05, 0.1, 0.3, 0.5, 1.0]


cases = st.fixed_dictionaries(dict(
    family=st.sampled_from(FAMILIES), batch=st.integers(1, 6), vocab=st.integers(1, 300),
    dtype=st.sampled_from(DTYPES), p_base=st.sampled_from(P_BASES), temp=st.sampled_from([0.0, 0.3, 1.0, 1.5, 3.0]),
    seed=st.integers(0, 2**63 - 1), offset=st.integers(0, 2**40), temperature_first=st.booleans(),
    data_seed=st.integers(0, 10_000)))


def run(case, logits, backend, temp=None):
    """minp_kernels.sample on the test device with the case's parameters (``temp`` overrides)."""
    return sample_on_device(logits, case["p_base"], case["temp"] if temp is None else temp, seed=case["seed"],
                            offset=case["offset"], temperature_first=case["temperature_first"], backend=backend)


@SETTINGS
@given(case=cases)
def test_kept_set_membership_and_backend_identity(case):
    logits = logit_family(case["family"], case["batch"], case["vocab"], case["data_seed"], case["dtype"])
    fused = run(case, logits, "triton")
    ref = run(case, logits, "torch")
    assert torch.equal(fused, ref)
    no_finite = ~(torch.isfinite(logits.float()) | (logits.float() == float("inf"))).any(-1)
    assert torch.equal(fused == -1, no_finite)
    kept = kept_mask(logits, case["p_base"], case["temp"], temperature_first=case["temperature_first"])
    if case["temp"] == 0:  # greedy: the first max, always kept
        kept = minp_probs(logits, case["p_base"], 0.0) > 0
    rows = torch.nonzero(~no_finite).flatten()
    assert kept[rows, fused[rows]].all(), "a token outside the kept set"
    assert ((fused >= -1) & (fused < case["vocab"])).all()


@SETTINGS
@given(case=cases, shift=st.integers(-16, 16))
def test_shift_invariance(case, shift):
    """Adding a constant to a row never changes the token.  Logits sit on a 1/8 grid and temperatures
    are powers of two, so the shift itself is exact in float32 (the property is about the sampler,
    not about rounding the shifted input)."""
    gaussian = logit_family("gaussian", case["batch"], case["vocab"], case["data_seed"])
    logits = torch.round(gaussian * 8) / 8
    temp = [0.0, 0.5, 1.0, 2.0][case["data_seed"] % 4]
    for backend in ("torch", "triton"):
        assert torch.equal(run(case, logits, backend, temp), run(case, logits + shift, backend, temp))


@SETTINGS
@given(case=cases, p_low=st.floats(0, 1), p_high=st.floats(0, 1))
def test_kept_set_monotone_in_p_base(case, p_low, p_high):
    p_low, p_high = min(p_low, p_high), max(p_low, p_high)
    logits = logit_family(case["family"], case["batch"], case["vocab"], case["data_seed"], case["dtype"])
    temp = max(case["temp"], 0.3)
    wide = kept_mask(logits, p_low, temp, temperature_first=case["temperature_first"])
    narrow = kept_mask(logits, p_high, temp, temperature_first=case["temperature_first"])
    assert not (narrow & ~wide).any()
    only_max = kept_mask(logits, 1.0, temp, temperature_first=case["temperature_first"])
    x = torch.where(torch.isnan(logits.float()), -math.inf, logits.float())
    assert torch.equal(only_max, (x == x.amax(-1, keepdim=True)) & (x > -math.inf))


@SETTINGS
@given(case=cases)
def test_greedy_is_argmax(case):
    logits = logit_family(case["family"], case["batch"], case["vocab"], case["data_seed"], case["dtype"])
    x = torch.where(torch.isnan(logits.float()), -math.inf, logits.float())
    expected = torch.where(x.amax(-1) == -math.inf, -1, x.argmax(-1))
    for backend in ("torch", "triton"):
        assert torch.equal(run(case, logits, backend, temp=0.0), expected)


@SETTINGS
@given(case=cases)
def test_half_precision_equals_upcast(case):
    logits = logit_family(case["family"], case["batch"], case["vocab"], case["data_seed"],
                         [torch.float16, torch.bfloat16][case["data_seed"] % 2])
    for backend in ("torch", "triton"):
        assert torch.equal(run(case, logits, backend), run(case, logits.float(), backend))
