"""Triton kernel (interpreted on CPU) against the torch backend: identical tokens, matching log-probs.

Under Triton's CPU interpreter a row costs about 10 ms per tile of columns it scans, so the shapes
here are chosen for the paths they reach (one tile, several tiles of the default plan with a ragged
last tile, row splits and their merge, many tiles per program, rescans), not for their size; a GPU runs
the real vocabulary sizes (here and in test_cuda).
"""

import itertools

import pytest
import torch

from minp_kernels.launch import INTERPRETED

from helpers import both_backends, lm_like_logits, over_dtypes, over_orders

P_BASES = [0.0, 0.05, 0.1, 0.5, 1.0]
TEMPS = [0.0, 0.5, 1.0, 1.5, 3.0]
GRID = list(itertools.product(P_BASES, TEMPS))  # 25 (p_base, temp) pairs, one per row
# Several tiles of the default plan (2048 columns today) with a ragged last tile: 5 tiles under the
# interpreter (the same code as at 16 tiles, a third of the time); a Llama-2-sized row on a GPU.
MULTI_TILE_VOCAB = 4 * 2048 + 3 if INTERPRETED else 32003
SCALAR_SHAPES = [(1, 32003), (3, 1000), (3, 7), (1, 1)]
LAUNCH_PLANS = [(3, 256), (5, 128), (1, 64)]  # (num_splits, block)


@over_orders
@pytest.mark.parametrize("vocab", [1, 7, 1000, MULTI_TILE_VOCAB], ids=lambda vocab: f"V={vocab}")
@over_dtypes
def test_per_row_grid_identical(dtype, vocab, temperature_first, device):
    """B = 64 rows, each (p_base, temp) pair of the grid on several rows, per-row tensors."""
    batch = 64
    logits = lm_like_logits(batch, vocab, dtype, device, seed=vocab)
    p_base = torch.tensor([GRID[i % 25][0] for i in range(batch)], device=device)
    temp = torch.tensor([GRID[i % 25][1] for i in range(batch)], device=device)
    seed = torch.arange(batch, device=device) * 7919 + vocab
    offset = torch.arange(batch, device=device) % 5
    (tok, lp), (tok_ref, lp_ref) = both_backends(logits, p_base, temp, seed, offset, temperature_first, True)
    assert torch.equal(tok, tok_ref)
    assert torch.allclose(lp, lp_ref, atol=1e-5, rtol=0, equal_nan=True)


@over_orders
@pytest.mark.parametrize("batch,vocab", SCALAR_SHAPES, ids=[f"B={batch}-V={vocab}" for batch, vocab in SCALAR_SHAPES])
def test_scalar_params_identical(batch, vocab, temperature_first, device):
    """Scalar p_base / temp / seed (rows share the seed; the row index separates their streams)."""
    logits = lm_like_logits(batch, vocab, torch.float32, device, seed=batch + vocab)
    for p_base, temp in [(0.0, 1.0), (0.1, 1.5), (1.0, 0.5), (0.05, 0.0)]:
        (tok, _), (tok_ref, _) = both_backends(logits, p_base, temp, 1234, 9, temperature_first)
        assert torch.equal(tok, tok_ref)


@pytest.mark.parametrize("num_splits,block", LAUNCH_PLANS,
                         ids=[f"splits={splits}-block={block}" for splits, block in LAUNCH_PLANS])
def test_split_and_tile_paths_identical(num_splits, block, device):
    """Force row splitting (merge kernel) and many tiles per program (tile records and rescans).

    Every fourth row is ascending.  The interpreter runs 24 rows (6 ascending), which reach the same
    paths as the 48 a GPU runs, in half the time."""
    batch, vocab = (24 if INTERPRETED else 48), 3000
    logits = lm_like_logits(batch, vocab, torch.float32, device, seed=num_splits)
    # Ascending logits put the row max in the last tile, so early tile candidates must be rescanned.
    logits[::4] = torch.linspace(-4, 4, vocab, device=device) + 0.3 * logits[::4]
    p_base = torch.rand(batch, generator=torch.Generator().manual_seed(1)).to(device) * 0.3
    temp = torch.full((batch,), 1.3, device=device)
    seed = torch.arange(batch, device=device)
    for temperature_first in (False, True):
        (tok, lp), (tok_ref, lp_ref) = both_backends(logits, p_base, temp, seed, 3, temperature_first, True,
                                                     num_splits=num_splits, block=block)
        assert torch.equal(tok, tok_ref)
        assert torch.allclose(lp, lp_ref, atol=1e-5, rtol=0)
