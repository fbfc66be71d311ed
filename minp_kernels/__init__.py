"""Fused min-p sampling for LLM serving: one Triton pass over the logits, an exact torch reference."""

from . import reference
from .api import sample, warmup
from .logprobs import SampleOutput, sample_with_logprobs

__version__ = "0.1.0"
__all__ = ["sample", "sample_with_logprobs", "SampleOutput", "warmup", "reference", "__version__"]
