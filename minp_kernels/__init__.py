"""Fused min-p sampling for LLM serving: one Triton pass over the logits, an exact torch reference."""

from . import reference
from .api import sample, warmup

__version__ = "0.1.0"
__all__ = ["sample", "warmup", "reference", "__version__"]
