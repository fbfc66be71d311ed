"""minp_probs against an independent float64 computation and the peers' worked examples."""

import pytest
import torch

from minp_kernels.reference import minp_probs

from helpers import HF_WORKED_EXAMPLES, HF_WORKED_MIN_P, lm_like_logits, over_orders

PARAMS = [(0.05, 1.0), (0.1, 0.7), (0.3, 2.0), (0.0, 1.5), (1.0, 1.0), (0.1, 0.0)]  # (p_base, temp)


def float64_minp(logits, p_base, temp, temperature_first):
    """Textbook min-p in float64: probabilities, mask p < p_base * p_max, temperature, renormalise."""
    logits = logits.double()
    if temp == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).double()
    tempered = torch.softmax(logits / temp, dim=-1)
    probs = tempered if temperature_first else torch.softmax(logits, dim=-1)
    keep = probs >= p_base * probs.amax(-1, keepdim=True)
    out = torch.where(keep, tempered, 0.0)
    return out / out.sum(-1, keepdim=True)


@over_orders
@pytest.mark.parametrize("p_base,temp", PARAMS, ids=[f"p_base={p_base}-temp={temp}" for p_base, temp in PARAMS])
def test_matches_float64(p_base, temp, temperature_first):
    logits = lm_like_logits(32, 500, seed=3)
    ours = minp_probs(logits, p_base, temp, temperature_first=temperature_first)
    expected = float64_minp(logits, p_base, temp, temperature_first)
    assert ours.dtype == torch.float32
    assert torch.equal(ours > 0, expected > 0)
    assert torch.allclose(ours.double(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("probs,kept", list(HF_WORKED_EXAMPLES.values()), ids=list(HF_WORKED_EXAMPLES))
def test_hf_worked_examples(probs, kept):
    out = minp_probs(torch.tensor(probs).log(), HF_WORKED_MIN_P, 1.0)
    assert torch.nonzero(out).flatten().tolist() == kept
    assert abs(out.sum().item() - 1) < 1e-6


def test_per_row_tensors_and_shapes():
    logits = lm_like_logits(4, 10, seed=0)
    p_base, temp = torch.tensor([0.0, 0.1, 0.5, 1.0]), torch.tensor([1.0, 0.5, 2.0, 1.0])
    out = minp_probs(logits, p_base, temp)
    for row in range(4):
        assert torch.allclose(out[row], minp_probs(logits[row], float(p_base[row]), float(temp[row])))
    assert minp_probs(logits[0], 0.1, 1.0).shape == (10,)


def test_empty_row_is_zero_and_nan_is_minus_inf():
    logits = torch.tensor([[float("-inf"), float("nan")], [float("nan"), 0.0]])
    out = minp_probs(logits, 0.1, 1.0)
    assert torch.equal(out, torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
