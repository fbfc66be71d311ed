"""Parity with peers: Hugging Face transformers' warpers (temperature_first=True is their order) and
the worked examples from the peers' own unit tests, on both backends."""

import pytest
import torch

import minp_kernels
from conftest import DEVICE
from minp_kernels.reference import kept_mask

transformers = pytest.importorskip("transformers")  # CI installs it (test extra)
from transformers.generation.logits_process import MinPLogitsWarper, TemperatureLogitsWarper  # noqa: E402


def hf_kept(logits, p_base, temp):
    scores = TemperatureLogitsWarper(temp)(None, logits.float()) if temp != 1.0 else logits.float()
    return MinPLogitsWarper(p_base)(None, scores) > float("-inf")


def adversarial_rows(vocab=512):
    gen = torch.Generator().manual_seed(11)
    rows = [
        torch.randn(vocab, generator=gen) * 3,                            # LM-like
        torch.randint(-2, 3, (vocab,), generator=gen).float(),            # many ties
        torch.randn(vocab, generator=gen) * 40,                           # huge spread: one survivor
        torch.randn(vocab, generator=gen) * 1e-4,                         # near-uniform: all survive
        torch.where(torch.rand(vocab, generator=gen) < 0.5, float("-inf"), torch.randn(vocab, generator=gen)),
        torch.full((vocab,), 7.0),                                        # all equal
        torch.cat([torch.tensor([30.0, 29.0]), torch.randn(vocab - 2, generator=gen)]),  # two peaks
    ]
    return torch.stack(rows)


@pytest.mark.parametrize("p_base", [0.0, 0.02, 0.05, 0.1, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("temp", [0.3, 0.7, 1.0, 1.5, 3.0])
def test_kept_set_equals_hf(p_base, temp):
    logits = torch.cat([torch.randn(32, 512, generator=torch.Generator().manual_seed(5)) * 3, adversarial_rows()])
    ours = kept_mask(logits, p_base, temp, temperature_first=True)
    theirs = hf_kept(logits, p_base, temp) & torch.isfinite(logits)
    assert torch.equal(ours, theirs)
    tokens = minp_kernels.sample(logits.to(DEVICE), p_base, temp, seed=torch.arange(len(logits), device=DEVICE),
                                 temperature_first=True, backend="triton").cpu()
    assert theirs[torch.arange(len(logits)), tokens].all()


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("probs,kept", [
    ([0.9, 0.0274, 0.047, 0.0274], {0, 2}),
    ([0.15, 0.3, 0.3, 0.25], {0, 1, 2, 3}),
    ([0.97, 0.01, 0.01, 0.01], {0}),
])
def test_worked_examples_sampled(backend, probs, kept):
    """min_p = 0.05 examples from the HF unit test: 500 draws land exactly on the kept set (the rarest
    kept token has probability 0.05, so missing it has probability 0.95**500 < 1e-11)."""
    logits = torch.tensor(probs).log().expand(500, -1).to(DEVICE)
    tokens = minp_kernels.sample(logits, 0.05, 1.0, seed=torch.arange(500, device=DEVICE), backend=backend)
    assert set(tokens.cpu().tolist()) == kept
