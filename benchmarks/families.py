"""Row families of the benchmark grid: what the logits look like, and the p_base / temp they are sampled at.

Each family stresses a different part of a min-p sampler:

- ``gaussian``: LM-like rows, std 3; a few tens of kept tokens out of 128k.
- ``peaked``: one dominant token (about 90% of the probability) on a Zipf-like tail; the kept set is
  that one token.
- ``flat``: std 1 at temp 3 with p_base 0.02; a large kept set (about a third of the row in the
  paper's order, nearly all of it with the temperature first).
- ``adversarial``: each row is sorted ascending, so the running max rises in every tile and a
  single-pass sampler finds candidates everywhere; the kept set is the Gaussian one, at the row's end.

Rows are deterministic: the generator seed is derived from (family, batch, vocab, copy), so a rerun or
another machine of the same device type samples the same logits.
"""

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Family:
    """A row family: its float32 generator and the sampling parameters it is timed at."""

    name: str
    summary: str
    p_base: float
    temp: float
    generate: Callable[[int, int, torch.Generator, torch.device], torch.Tensor]  # (batch, vocab, gen, device)


def _gaussian(batch, vocab, gen, device, std=3.0):
    return torch.randn(batch, vocab, generator=gen, device=device) * std


# Peaked rows: logit of the token of tail rank r (1-based) is -ZIPF_EXPONENT * ln(r) (probability ~ r^-1.1);
# the dominant token sits DOMINANCE above the tail's first rank: exp(4.5) / (exp(4.5) + zeta(1.1) - 1)
# puts about 90% of the probability on it.
ZIPF_EXPONENT = 1.1
DOMINANCE = 4.5


def _peaked(batch, vocab, gen, device):
    ranks = torch.arange(1, vocab + 1, device=device, dtype=torch.float32)
    values = -ZIPF_EXPONENT * torch.log(ranks)
    values[0] += DOMINANCE
    # A random place for every rank in every row (one sort of uniform keys per row).
    places = torch.rand(batch, vocab, generator=gen, device=device).argsort(dim=1)
    return torch.empty(batch, vocab, device=device).scatter_(1, places, values.expand(batch, vocab))


def _flat(batch, vocab, gen, device):
    return _gaussian(batch, vocab, gen, device, std=1.0)


def _adversarial(batch, vocab, gen, device):
    return _gaussian(batch, vocab, gen, device).sort(dim=1).values


FAMILIES = {family.name: family for family in (
    Family("gaussian", "LM-like rows: Gaussian, std 3", 0.1, 1.0, _gaussian),
    Family("peaked", "one dominant token (~90%) on a Zipf-like tail (r^-1.1)", 0.1, 1.0, _peaked),
    Family("flat", "Gaussian std 1 at temp 3, p_base 0.02: a large kept set", 0.02, 3.0, _flat),
    Family("adversarial", "Gaussian std 3 sorted ascending: the running max rises every tile", 0.1, 1.0,
           _adversarial),
)}


def family_seed(name: str, batch: int, vocab: int, copy: int = 0) -> int:
    """Deterministic generator seed of one buffer of a grid point (stable across runs and machines)."""
    return zlib.crc32(f"{name}/{batch}/{vocab}/{copy}".encode())


def make_logits(name: str, batch: int, vocab: int, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu", copy: int = 0) -> torch.Tensor:
    """Logits ``[batch, vocab]`` of family ``name`` in ``dtype`` on ``device``.

    Parameters
    ----------
    name : str
        A key of :data:`FAMILIES`.
    batch, vocab : int
        Shape of the logits.
    dtype : torch.dtype
        Output dtype (rows are generated in float32, then rounded).
    device : str or torch.device
        Where to generate them (a CUDA generator on CUDA: fast, and deterministic per device type).
    copy : int
        Index of the buffer when a benchmark rotates several copies of a point (each differs).

    Returns
    -------
    torch.Tensor
        The logits, contiguous.
    """
    if name not in FAMILIES:
        raise ValueError(f"name: expected one of {sorted(FAMILIES)}, got {name!r}")
    device = torch.device(device)
    gen = torch.Generator(device).manual_seed(family_seed(name, batch, vocab, copy))
    return FAMILIES[name].generate(batch, vocab, gen, device).to(dtype)
