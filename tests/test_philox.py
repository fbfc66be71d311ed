"""The torch Philox twin against published answers and against Triton's own tl.philox, and the
statistics of its noise (uniformity, independence of neighbouring seeds, offsets and rows).

The statistical checks use fixed seeds (a pass is reproducible); each of the five p-value checks rejects
at alpha = 1e-4 and each correlation bound sits at 5 standard errors (two-sided tail 6e-7), so together
they raise a false alarm with probability below 5.1e-4.
"""

import pytest
import torch
import triton
import triton.language as tl
from scipy import stats

from minp_kernels.philox import gumbel_noise, philox4x32, philox_words, token_words, uniform_from_words

from helpers import DEVICE

ALPHA = 1e-4

# Known-answer vectors of Philox-4x32-10 from the Random123 distribution (kat_vectors).
KAT = [
    ((0, 0), (0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 2, (0xFFFFFFFF,) * 4, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0xA4093822, 0x299F31D0), (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def test_known_answers():
    for key, counter, expected in KAT:
        words = philox4x32(torch.tensor(key[0]), torch.tensor(key[1]), *(torch.tensor(c) for c in counter))
        assert tuple(int(w) for w in words) == expected


@triton.jit
def _triton_words_kernel(out_ptr, seed, offset_lo, offset_hi, stream, n, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    words = tl.philox(seed, cols, stream.to(tl.uint32), offset_lo.to(tl.uint32), offset_hi.to(tl.uint32))
    for k in tl.static_range(4):
        tl.store(out_ptr + k * n + cols, words[k].to(tl.int64) & 0xFFFFFFFF, mask=cols < n)


def test_matches_triton_philox():
    n = 1000
    for seed, offset, stream in [(0, 0, 0), (123456789012345, 2**40 + 17, 5), (-1, -2, 2**31 + 3)]:
        out = torch.empty(4, n, dtype=torch.int64, device=DEVICE)
        offset_u = offset % 2**64
        _triton_words_kernel[(1,)](out, seed, offset_u & 0xFFFFFFFF, offset_u >> 32, stream % 2**32, n, BLOCK=1024)
        ours = philox_words(torch.tensor(seed), torch.arange(n), torch.tensor(stream % 2**32), torch.tensor(offset))
        assert torch.equal(out.cpu(), torch.stack(ours))


def test_token_words_use_all_four_outputs():
    seed, stream, offset = torch.tensor(3), torch.tensor(1), torch.tensor(9)
    words = philox_words(seed, torch.arange(5), stream, offset)
    tokens = token_words(seed, torch.arange(20), stream, offset)
    assert torch.equal(tokens, torch.stack(words, dim=1).flatten())


def test_uniforms_open_interval_and_exact():
    words = torch.tensor([0, 1, 511, 512, 2**32 - 1, 2**31])
    u = uniform_from_words(words)
    assert u.min() > 0 and u.max() < 1
    assert torch.equal(u.double(), ((words >> 9).double() * 2 + 1) / 2**24)
    assert torch.isfinite(-torch.log(-torch.log(u))).all()


def test_noise_is_keyed_by_row_inputs_only():
    seed, offset, stream = torch.tensor([7, 7, 8]), torch.tensor([3, 4, 3]), torch.tensor([0, 0, 0])
    g = gumbel_noise(seed, offset, stream, 64)
    assert not torch.equal(g[0], g[1]) and not torch.equal(g[0], g[2])
    assert torch.equal(g[0], gumbel_noise(seed[:1], offset[:1], stream[:1], 64)[0])
    assert torch.equal(g[0, :10], gumbel_noise(seed[:1], offset[:1], stream[:1], 10)[0])
    assert torch.equal(g[0, 7:30], gumbel_noise(seed[:1], offset[:1], stream[:1], 23, token_base=7)[0])


def test_uniforms_are_uniform():
    """Kolmogorov-Smirnov on 200,000 uniforms from one stream, and on the first token across seeds."""
    u = uniform_from_words(token_words(torch.tensor(42), torch.arange(200_000), torch.tensor(0), torch.tensor(0)))
    assert stats.kstest(u.numpy(), "uniform").pvalue > ALPHA
    across_seeds = uniform_from_words(token_words(torch.arange(200_000), torch.tensor(0), torch.tensor(0),
                                                   torch.tensor(0)))
    assert stats.kstest(across_seeds.numpy(), "uniform").pvalue > ALPHA


@pytest.mark.parametrize("neighbour", ["seed", "offset", "stream"])
def test_streams_independent(neighbour):
    """Uniforms of adjacent seeds / offsets / rows: the 10x10 joint histogram is uniform (chi-square)
    and the correlation is within 5 standard errors of 0."""
    n = 100_000
    token = torch.arange(n)
    base = dict(seed=torch.tensor(7), stream=torch.tensor(3), offset=torch.tensor(11))
    moved = dict(base)
    moved[neighbour] = base[neighbour] + 1
    a = uniform_from_words(token_words(base["seed"], token, base["stream"], base["offset"]))
    b = uniform_from_words(token_words(moved["seed"], token, moved["stream"], moved["offset"]))
    joint = torch.bincount((a * 10).long() * 10 + (b * 10).long(), minlength=100).numpy()
    assert stats.chisquare(joint).pvalue > ALPHA
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 5 / n**0.5
