"""The torch backend (``backend="torch"``): same noise, same tokens as the Triton kernel.

Placeholder that forwards to the dense reference; the fast exact path replaces it.
"""

from .reference import sample_torch, shard_candidates_torch

__all__ = ["sample_torch", "shard_candidates_torch"]
