"""Validated per-row sampling parameters, shared by every backend (no torch or Triton work here)."""

from dataclasses import dataclass
import torch

RowValue = float | torch.Tensor
RowInt = int | torch.Tensor


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
