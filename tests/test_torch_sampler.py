"""The torch backend's kept-token path against the dense reference and the Triton kernel.

The kept-token path (CPU) computes noise for kept tokens only; the dense reference scores every
token.  They must give identical tokens and log-probabilities within 1e-5 on every kind of row.
"""

import numpy as np
import pytest
import torch

from minp_kernels import torch_sampler
from minp_kernels._validation import validate_logits, validate_params
from minp_kernels.launch import sample_triton
from minp_kernels.params import RowParams
from minp_kernels.philox import (
    PACKED_MAX,
    counter_run_words,
    gumbel_from_words,
    gumbel_from_words_numpy,
    token_words,
    token_words_numpy,
)
from minp_kernels.reference import kept_mask, sample_reference, shard_candidates_reference
from minp_kernels.rows import FLT_MAX, gumbel_scores, kept_threshold, tempered
from minp_kernels.torch_sampler import CHUNK, sample_torch, shard_candidates_torch

from helpers import lm_like_logits

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
INF, NAN = float("inf"), float("nan")


@pytest.fixture(params=["pairs of live chunks", "pairs of whole rows", "live chunks", "whole rows"])
def noise_path(request, monkeypatch):
    """Force each path of the kept-token sampler whatever the data: noise per kept pair or per run,
    runs being the live chunks or the whole rows."""
    monkeypatch.setattr(torch_sampler, "PAIR_DENSITY", 0 if request.param.startswith("pairs") else 2**62)
    monkeypatch.setattr(torch_sampler, "WHOLE_ROWS_SHARE", 0.0 if request.param.endswith("rows") else 2.0)
    return request.param


def special_rows(logits):
    """Overwrite the first rows of ``logits`` [B >= 8, V >= 8] with edge cases, in place."""
    vocab = logits.shape[1]
    logits[0] = logits[0].round()  # many exact ties
    logits[1] = INF  # every token +inf: the kept set is the whole row
    logits[2, :: max(1, vocab // 3)] = INF
    logits[3, 1::2] = NAN
    logits[4] = -INF  # no finite logit: -1
    logits[5] = NAN  # likewise
    logits[6, :-1] = -INF  # the only finite logit in the last column (the tail chunk)
    logits[7] = 0.0  # flat: every token ties
    return logits


def row_params(batch, invalid, gen):
    """Per-row p_base / temp mixing greedy (0, a tiny temp whose 1/temp overflows), +inf and,
    with ``invalid``, rows with NaN or out-of-range values."""
    p_base = (torch.rand(batch, generator=gen, dtype=torch.float64) * 0.3).float()
    temp = torch.rand(batch, generator=gen) * 2 + 0.2
    p_base[8::7], p_base[9::7] = 0.0, 1.0
    temp[10::7], temp[11::7], temp[12::7] = 0.0, 1e-39, INF
    if invalid:
        p_base[13::11], p_base[14::11], p_base[15::11] = NAN, -0.25, 1.5
        temp[16::11], temp[17::11] = NAN, -1.0
    return p_base, temp


def assert_same_draws(logits, p_base, temp, seed, offset, temperature_first):
    """The kept-token path equals the dense reference: tokens exactly, log-probs within 1e-5."""
    logits_2d, _ = validate_logits(logits)
    params = validate_params(logits_2d, p_base, temp, seed, offset, None)
    tokens, logprobs = sample_torch(logits_2d, params, temperature_first, return_logprobs=True)
    tokens_ref, logprobs_ref = sample_reference(logits_2d, params, temperature_first, return_logprobs=True)
    assert torch.equal(tokens, tokens_ref)
    assert torch.equal(torch.isnan(logprobs), tokens == -1)
    assert torch.allclose(logprobs, logprobs_ref, atol=1e-5, rtol=0, equal_nan=True)
    alone, _ = sample_torch(logits_2d, params, temperature_first)  # without log-probs: same tokens
    assert torch.equal(alone, tokens)
    return tokens


@pytest.mark.parametrize("temperature_first", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_per_row_params_match_reference(dtype, temperature_first, noise_path):
    """Per-row p_base / temp / seed / offset, edge-case rows, invalid rows, several vocabularies."""
    gen = torch.Generator().manual_seed(11)
    for batch, vocab in [(40, 3 * CHUNK + 45), (24, 9000), (20, 8)]:
        logits = special_rows(lm_like_logits(batch, vocab, dtype, seed=vocab).float()).to(dtype)
        p_base, temp = row_params(batch, invalid=True, gen=gen)
        seed = torch.randint(-2**63, 2**63 - 1, (batch,), generator=gen)
        offset = torch.randint(0, 2**40, (batch,), generator=gen)
        tokens = assert_same_draws(logits, p_base, temp, seed, offset, temperature_first)
        invalid = p_base.isnan() | (p_base < 0) | (p_base > 1) | temp.isnan() | (temp < 0)
        no_finite = torch.zeros(batch, dtype=torch.bool)
        no_finite[4:6] = True
        assert torch.equal(tokens == -1, invalid | no_finite)


@pytest.mark.parametrize("temperature_first", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_shared_seed_scalar_params_match_reference(dtype, temperature_first, noise_path):
    """Scalar p_base / temp / seed: the rows share the seed and the row index is their stream."""
    logits = special_rows(lm_like_logits(32, 2 * CHUNK + 3, torch.float32, seed=5)).to(dtype)
    for p_base, temp, seed, offset in [(0.1, 1.0, 7, 0), (0.0, 1.5, -3, 2**33 + 1), (1.0, 0.5, 2**63, 5),
                                       (0.05, 0.0, 1, 1), (0.3, INF, 99, 12)]:
        assert_same_draws(logits, p_base, temp, seed, offset, temperature_first)


def test_one_token_vocabulary_and_empty_batch(noise_path):
    for value in [1.5, -INF, NAN, INF]:
        assert_same_draws(torch.full((3, 1), value), 0.1, 1.0, 4, 0, False)
    empty = torch.empty(0, 100)
    params = validate_params(empty, 0.1, 1.0, 0, 0, None)
    tokens, logprobs = sample_torch(empty, params, return_logprobs=True)
    assert tokens.shape == (0,) and tokens.dtype == torch.int64 and logprobs.shape == (0,)


def test_invalid_rows_judged_on_the_given_values(noise_path):
    """float64 p_base just above 1 and temp just below 0 are invalid, though float32 would round
    them to 1 and -0."""
    logits = lm_like_logits(4, 600, seed=2)
    p_base = torch.tensor([1 + 1e-12, 0.1, 0.1, 1.0], dtype=torch.float64)
    temp = torch.tensor([1.0, -1e-300, 0.0, 1.0], dtype=torch.float64)
    tokens = assert_same_draws(logits, p_base, temp, torch.arange(4), 0, False)
    assert tokens[:2].tolist() == [-1, -1] and (tokens[2:] >= 0).all()


@pytest.mark.parametrize("temperature_first", [False, True])
def test_flat_rows_keeping_thousands_of_tokens(temperature_first):
    """temp 3, p_base 0.02 on nearly flat rows: thousands of kept tokens per row, still exact."""
    batch, vocab = 8, 50_000
    logits = torch.randn(batch, vocab, generator=torch.Generator().manual_seed(3)) * 1.0
    kept = kept_mask(logits, 0.02, 3.0, temperature_first=temperature_first).sum(dim=1)
    assert kept.min() > 1000
    assert_same_draws(logits, 0.02, 3.0, torch.arange(batch) + 100, torch.arange(batch), temperature_first)


def test_ties_take_the_lowest_index(noise_path):
    """Greedy and p_base = 1 rows with repeated maxima: lowest index among equal scores."""
    logits = torch.zeros(4, 700)
    logits[:, [5, 300, 650]] = 2.0
    logits[3, 2] = INF
    logits[3, 600] = INF
    tokens = assert_same_draws(logits, 1.0, torch.tensor([0.0, 0.0, 1.0, 0.0]), 3, 0, False)
    assert tokens[[0, 1, 3]].tolist() == [5, 5, 2]
    assert tokens[2].item() in (5, 300, 650)


def test_rows_draw_the_same_token_wherever_they_sit():
    """Per-row seeds: a row's token depends on its own inputs only (batch invariance)."""
    logits = lm_like_logits(12, 5000, seed=8)
    p_base, temp = torch.full((12,), 0.05), torch.full((12,), 1.3)
    seed, offset = torch.arange(12) * 31, torch.arange(12) % 3
    logits_2d, _ = validate_logits(logits)
    full, _ = sample_torch(logits_2d, validate_params(logits_2d, p_base, temp, seed, offset, None))
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    part = logits_2d[perm[:5]]
    params = validate_params(part, p_base[:5], temp[:5], seed[perm[:5]], offset[perm[:5]], None)
    assert torch.equal(sample_torch(part, params)[0], full[perm[:5]])


@pytest.mark.parametrize("temperature_first", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_shards_match_reference_and_combine_to_the_full_draw(dtype, temperature_first, noise_path):
    """Uneven shards, any token_base alignment: identical records, and the best record over the
    shards (lowest global id among equal scores) is the unsharded token."""
    batch, vocab = 20, 2 * CHUNK + 300
    logits = special_rows(lm_like_logits(batch, vocab, torch.float32, seed=21)).to(dtype)
    gen = torch.Generator().manual_seed(4)
    p_base, temp = row_params(batch, invalid=True, gen=gen)
    params = validate_params(logits, p_base, temp, torch.arange(batch) * 5, 7, None)
    row_max = torch.nan_to_num(logits.float(), nan=-INF, posinf=torch.finfo(torch.float32).max).amax(dim=1)
    bounds = [0, 1, 3, CHUNK + 5, vocab]
    records, ids = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        shard = logits[:, lo:hi]
        fields, col = shard_candidates_torch(shard, row_max, params, temperature_first, lo)
        fields_ref, col_ref = shard_candidates_reference(shard, row_max, params, temperature_first, lo)
        assert torch.equal(col, col_ref)
        assert torch.equal(fields[:, :2], fields_ref[:, :2])
        assert torch.allclose(fields[:, 2], fields_ref[:, 2], rtol=1e-5, atol=0, equal_nan=True)
        records.append(fields[:, 0])
        ids.append(col + lo)
    scores, ids = torch.stack(records), torch.stack(ids)
    best = scores.max(dim=0).values
    winner = torch.where(scores == best, ids, vocab).min(dim=0).values
    tokens, _ = sample_torch(logits, params, temperature_first)
    assert torch.equal(torch.where(best == -INF, -1, winner), tokens)


def test_noise_only_for_kept_tokens(monkeypatch):
    """On LM-like rows the CPU path draws one noise word per kept token and none for the others."""
    logits = lm_like_logits(16, 50_000, seed=1)
    counted = []
    for name in ("token_words_numpy", "counter_run_words_numpy"):
        original = getattr(torch_sampler, name)

        def counting(*args, _original=original):
            words = _original(*args)
            counted.append(words.size)
            return words

        monkeypatch.setattr(torch_sampler, name, counting)
    params = validate_params(logits, 0.1, 1.0, torch.arange(16), 0, None)
    sample_torch(logits, params)
    assert sum(counted) == kept_mask(logits, 0.1, 1.0).sum() < logits.numel() / 100


def test_other_devices_take_the_dense_path_without_host_reads():
    """Off the CPU the backend is the dense reference, which never reads tensor values on the host
    (meta tensors hold no values: any such read would raise)."""
    logits = torch.empty(4, 1000, device="meta")
    per_row = RowParams(torch.full((4,), 0.1, device="meta"), torch.ones(4, device="meta"),
                        torch.arange(4, device="meta"), torch.zeros(4, dtype=torch.int64, device="meta"), False)
    for params in (per_row, RowParams(0.1, 1.0, 3, 2, True)):
        tokens, logprobs = sample_torch(logits, params, return_logprobs=True)
        assert tokens.shape == (4,) and tokens.dtype == torch.int64 and logprobs.shape == (4,)
        fields, col = shard_candidates_torch(logits, torch.empty(4, device="meta"), params, False, 5)
        assert fields.shape == (4, 3) and col.shape == (4,)


def test_counter_runs_match_token_words():
    """Runs of consecutive counters (the chunk path's noise), any start per row, equal the per-token
    definition."""
    gen = torch.Generator().manual_seed(2)
    seed = torch.randint(-2**63, 2**63 - 1, (5,), generator=gen)
    offset = torch.randint(-2**63, 2**63 - 1, (5,), generator=gen)
    stream = torch.arange(5)
    first_counter = torch.randint(0, 2**30, (5,), generator=gen)
    runs = counter_run_words(seed, offset, stream, first_counter, 9)
    tokens = 4 * first_counter[:, None] + torch.arange(36)
    assert torch.equal(runs, token_words(seed[:, None], tokens, stream[:, None], offset[:, None]))


@pytest.mark.slow
def test_matches_triton_kernel():
    """Same tokens and log-probs as the Triton kernel (interpreted on CPU), every dtype, both orders,
    invalid rows included."""
    batch, vocab = 12, 3000
    gen = torch.Generator().manual_seed(9)
    for dtype, temperature_first in [(torch.float32, False), (torch.bfloat16, True), (torch.float16, False)]:
        logits = lm_like_logits(batch, vocab, torch.float32, seed=vocab)
        logits[0] = logits[0].round()
        logits[1, ::7] = NAN
        logits[2, [4, 2000]] = INF
        logits[3] = -INF
        logits = logits.to(dtype)
        p_base, temp = row_params(batch, invalid=True, gen=gen)
        seed = torch.randint(0, 2**62, (batch,), generator=gen)
        params = validate_params(logits, p_base, temp, seed, torch.arange(batch), None)
        tokens, logprobs = sample_torch(logits, params, temperature_first, return_logprobs=True)
        tokens_kernel, logprobs_kernel = sample_triton(logits, params, temperature_first, return_logprobs=True)
        assert torch.equal(tokens, tokens_kernel)
        assert torch.allclose(logprobs, logprobs_kernel, atol=1e-5, rtol=0, equal_nan=True)


def test_numpy_row_math_is_the_torch_row_math_bit_for_bit():
    """The CPU path's numpy forms of the min-p threshold, the log-weight, the Gumbel score and the Gumbel
    noise are rows.kept_threshold, rows.tempered, rows.gumbel_scores and philox.gumbel_from_words to the
    bit, edge values included."""
    gen = torch.Generator().manual_seed(6)
    specials = torch.tensor([0.0, -0.0, INF, -INF, NAN, FLT_MAX, -FLT_MAX, 1e-45, -1e-45, 1e38, -1e38])
    row_max = torch.cat([specials, torch.randn(300, generator=gen) * 30])
    delta = torch.cat([torch.tensor([0.0, -INF, NAN, -FLT_MAX]), -torch.rand(row_max.shape[0] - 4, generator=gen) * 9])
    delta = delta[torch.randperm(delta.shape[0], generator=gen)]
    invalid = torch.rand(row_max.shape[0], generator=gen) < 0.2
    expected = kept_threshold(row_max, delta, invalid)
    with np.errstate(all="ignore"):
        got = torch_sampler.kept_threshold_numpy(row_max.numpy(), torch.where(invalid, NAN, delta).numpy())
    assert torch.equal(torch.from_numpy(got).view(torch.int32), expected.view(torch.int32))

    x = torch.cat([specials, torch.randn(500, generator=gen) * 20])
    m = x[torch.randperm(x.shape[0], generator=gen)]
    inv_temp = torch.cat([torch.tensor([0.0, INF, 1e38, 1e-38]), torch.rand(x.shape[0] - 4, generator=gen) * 5])
    words = torch.randint(0, 2**32, (x.shape[0],), generator=gen)
    words[:3] = torch.tensor([0, 2**32 - 1, 2**31])
    noise = gumbel_from_words(words)
    noise_numpy = gumbel_from_words_numpy(words.numpy())
    assert torch.equal(torch.from_numpy(noise_numpy).view(torch.int32), noise.view(torch.int32))
    with np.errstate(all="ignore"):  # as the sampler calls them: inf - inf and 0 * inf give NaN as in torch
        pairs = [(tempered(x, m, inv_temp), torch_sampler.tempered_numpy(x.numpy(), m.numpy(), inv_temp.numpy())),
                 (gumbel_scores(x, m, inv_temp, noise),
                  torch_sampler.gumbel_scores_numpy(x.numpy(), m.numpy(), inv_temp.numpy(), noise_numpy))]
    for expected, got in pairs:
        got = torch.from_numpy(got)
        assert ((got.view(torch.int32) == expected.view(torch.int32)) | (expected.isnan() & got.isnan())).all()


@pytest.mark.parametrize("count", [0, 1, 5, PACKED_MAX, PACKED_MAX + 1, 3000])
def test_token_words_numpy_matches_token_words(count):
    """Both numpy paths of the pairs' noise words (packed integers for few tokens, numpy arrays for
    more), with per-token or shared keys, equal the torch definition."""
    gen = torch.Generator().manual_seed(count)
    seed, offset = (torch.randint(-2**63, 2**63 - 1, (count,), generator=gen) for _ in range(2))
    token = torch.randint(0, 2**31 - 1, (count,), generator=gen)
    stream = torch.randint(0, 2**32, (count,), generator=gen)
    expected = token_words(seed, token, stream, offset)
    got = token_words_numpy(seed.numpy(), token.numpy(), stream.numpy(), offset.numpy())
    assert torch.equal(torch.from_numpy(got), expected)
    shared = token_words(seed[:1], token, stream[:1], offset[:1]) if count else expected
    got = token_words_numpy(np.int64(seed[0]) if count else 0, token.numpy(), int(stream[0]) if count else 0,
                            np.int64(offset[0]) if count else 0)
    assert torch.equal(torch.from_numpy(got), shared)


def test_remembered_constants_follow_the_values_not_the_tensor():
    """The CPU path remembers per-row constants by the parameters' values: a p_base / temp tensor
    changed in place between calls gives the new values' draw, as the dense reference does."""
    logits = lm_like_logits(3, 2000, seed=4)
    p_base, temp = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.0, 0.5, 2.0])
    seed = torch.arange(3)
    for _ in range(3):
        params = validate_params(logits, p_base, temp, seed, 0, None)
        assert torch.equal(sample_torch(logits, params, True)[0], sample_reference(logits, params, True)[0])
        p_base.mul_(0.5)
        temp[1] = 0.0 if temp[1] else 1.5  # greedy and back
