"""Validated per-row sampling parameters, shared by every backend (no torch or Triton work here)."""

from dataclasses import dataclass

import torch

RowValue = float | torch.Tensor
RowInt = int | torch.Tensor

# Largest vocabulary (global token id + 1, for a shard) the kernels index with 32-bit column and
# Philox counter arithmetic: a split's end (start + columns per program, up to 64 tiles of 2048) and
# the last tile's group ids stay below 2**31.  Both backends refuse more, so they agree everywhere.
MAX_VOCAB = 2**31 - 2**18


@dataclass
class RowParams:
    """Per-row sampling parameters after validation.

    Each field is a Python scalar shared by all rows or a 1-D tensor on the logits' device with one
    entry per row.  ``seed`` may also be a 1-element tensor (a seed drawn from a generator) shared by
    all rows; ``seed_shared`` says whether rows share one seed, in which case the row index becomes
    part of the Philox counter so that rows still draw independent noise.
    """

    p_base: RowValue
    temp: RowValue
    seed: RowInt
    offset: RowInt
    seed_shared: bool
    top_k: RowInt | None = None  # None: off (also 0 or >= V, per row)
    top_p: RowValue | None = None  # None: off (also 1.0, per row)
    top_p_after_min_p: bool = False  # top-p's mass over the min-p set too (vLLM's order)
    threshold: torch.Tensor | None = None  # the kept set's threshold with the filters, when known already


def out_of_range(value: torch.Tensor, upper: float | None) -> torch.Tensor:
    """Boolean mask of the entries of a per-row float tensor that are NaN, negative or above
    ``upper`` (``None``: no upper bound): the one rule for invalid ``p_base`` / ``temp`` values."""
    bad = value.isnan() | (value < 0)
    return bad | (value > upper) if upper is not None else bad


def invalid_rows(params: RowParams, batch: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[B]``: rows whose per-row ``p_base`` is NaN or outside ``[0, 1]``, whose per-row
    ``temp`` is NaN or negative, whose per-row ``top_k`` is negative or whose per-row ``top_p`` is NaN,
    ``<= 0`` or above 1; they sample token -1 (scalars were checked by validation).

    Plain tensor ops, no host sync.
    """
    invalid = torch.zeros(batch, dtype=torch.bool, device=device)
    if isinstance(params.p_base, torch.Tensor):
        invalid = invalid | out_of_range(params.p_base, 1.0)
    if isinstance(params.temp, torch.Tensor):
        invalid = invalid | out_of_range(params.temp, None)
    if isinstance(params.top_k, torch.Tensor):
        invalid = invalid | (params.top_k < 0)
    if isinstance(params.top_p, torch.Tensor):
        invalid = invalid | out_of_range(params.top_p, 1.0) | (params.top_p == 0)
    return invalid
