"""Parity with peers: Hugging Face transformers' warpers (temperature_first=True is their order) and
the worked examples from the peers' own unit tests, on both backends."""

import pytest
import torch

from minp_kernels.reference import kept_mask

from helpers import (
    HF_FAMILIES,
    HF_WORKED_EXAMPLES,
    HF_WORKED_MIN_P,
    lm_like_logits,
    logit_family,
    many_draws,
    over_backends,
    sample_many_rows,
)

transformers = pytest.importorskip("transformers")  # CI installs it (test extra)
from transformers.generation.logits_process import MinPLogitsWarper, TemperatureLogitsWarper  # noqa: E402

P_BASES = [0.0, 0.02, 0.05, 0.1, 0.3, 0.7, 1.0]
TEMPS = [0.3, 0.7, 1.0, 1.5, 3.0]


def hf_kept(logits, p_base, temp):
    scores = TemperatureLogitsWarper(temp)(None, logits.float()) if temp != 1.0 else logits.float()
    return MinPLogitsWarper(p_base)(None, scores) > float("-inf")


def peer_test_logits():
    """32 LM-like rows, then two rows of each adversarial family Hugging Face's softmax can represent."""
    families = [logit_family(family, 2, 512, seed=11 + i) for i, family in enumerate(HF_FAMILIES)]
    return torch.cat([lm_like_logits(32, 512, seed=5), *families])


LOGITS = peer_test_logits()


@pytest.mark.parametrize("p_base", P_BASES, ids=lambda p_base: f"p_base={p_base}")
@pytest.mark.parametrize("temp", TEMPS, ids=lambda temp: f"temp={temp}")
def test_kept_set_equals_hf(p_base, temp):
    """Our kept set is HF's, and the kernel's tokens lie in it (under the interpreter: 8 rows spread over
    the families equal the torch backend's, whose tokens for every row lie in it; see sample_many_rows)."""
    ours = kept_mask(LOGITS, p_base, temp, temperature_first=True)
    theirs = hf_kept(LOGITS, p_base, temp) & torch.isfinite(LOGITS)
    assert torch.equal(ours, theirs)
    tokens = sample_many_rows(LOGITS, p_base, temp, seed=torch.arange(len(LOGITS)), temperature_first=True,
                              backend="triton", rows_checked=8)
    assert theirs[torch.arange(len(LOGITS)), tokens].all()


@over_backends
@pytest.mark.parametrize("probs,kept", list(HF_WORKED_EXAMPLES.values()), ids=list(HF_WORKED_EXAMPLES))
def test_worked_examples_sampled(backend, probs, kept):
    """min_p = 0.05 examples from the HF unit test: 500 draws land exactly on the kept set (the rarest
    kept token has probability 0.05, so missing it has probability 0.95**500 < 1e-11).  Under the
    interpreter the kernel draws a subset that must equal the torch backend's draws (many_draws)."""
    tokens = many_draws(torch.tensor(probs).log(), HF_WORKED_MIN_P, 1.0, backend=backend, draws=500)
    assert set(tokens.tolist()) == set(kept)
