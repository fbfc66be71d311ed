"""The launcher: plan arithmetic, one launch at every batch size, keyword launches, a zeroed split
workspace per launch, stale split references rescanned, noise groups, invalid per-row values (kernel
side), plan classes and the words of 64-bit scalars."""

import math

import pytest
import torch

from minp_kernels import launch
from minp_kernels._validation import validate_logits, validate_params
from minp_kernels.torch_sampler import sample_torch

from helpers import DEVICE, lm_like_logits


def validated(logits, p_base, temp, seed, offset=0):
    logits_2d, _ = validate_logits(logits)
    return logits_2d, validate_params(logits_2d, p_base, temp, seed, offset, None)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 100, 1023, 1024, 1025, 128256])
def test_integer_helpers_match_math(n):
    assert launch._next_power_of_2(n) == 2 ** math.ceil(math.log2(n))
    for d in (1, 7, 1024):
        assert launch._cdiv(n, d) == math.ceil(n / d)


@pytest.mark.parametrize("batch,vocab,splits", [(1, 128256, None), (512, 128256, None), (4, 262144, 1), (3, 5000, 7)])
def test_plan_covers_every_column_within_the_record_limit(batch, vocab, splits):
    block = 1024
    cols, num_splits = launch.plan_splits(batch, vocab, block, sm_count=132, num_splits=splits)
    assert cols % block == 0 and cols // block <= launch.MAX_TILES_PER_PROGRAM
    assert (num_splits - 1) * cols < vocab <= num_splits * cols  # every split has columns, all are covered


def test_one_launch_with_keywords_at_every_batch_size(monkeypatch):
    """Small batches split rows over programs and still launch once; every argument is a keyword
    the kernel declares."""
    seen = []
    real = launch.launch_kernel

    def spy(kernel, grid, kwargs):
        seen.append((kernel, grid, kwargs))
        real(kernel, grid, kwargs)

    monkeypatch.setattr(launch, "launch_kernel", spy)
    logits = lm_like_logits(2, 3000, torch.float32, DEVICE, seed=3)
    logits_2d, params = validated(logits, 0.1, 1.0, torch.arange(2, device=DEVICE))
    tokens, _ = launch.sample_triton(logits_2d, params, num_splits=3, block=256)
    assert len(seen) == 1
    kernel, grid, kwargs = seen[0]
    assert grid == (2 * 3,) and kwargs["HAS_SPLITS"]  # program = row * splits + split
    options = {"num_warps", "enable_fp_fusion", "maxnreg"}
    assert set(kwargs) - options == set(kernel.arg_names)
    assert torch.equal(tokens, sample_torch(logits_2d, params)[0])


def test_each_split_launch_gets_its_own_zeroed_workspace(monkeypatch):
    """A launch with split rows allocates a zeroed workspace of its own (so CUDA-graph replays, streams
    and captures never share sync words), and the next launch draws the same tokens."""
    seen = []
    real = launch.launch_kernel

    def spy(kernel, grid, kwargs):
        seen.append((kwargs["split_workspace_ptr"], kwargs["split_workspace_ptr"].clone()))
        real(kernel, grid, kwargs)

    monkeypatch.setattr(launch, "launch_kernel", spy)
    logits = lm_like_logits(3, 4000, torch.bfloat16, DEVICE, seed=5)
    logits_2d, params = validated(logits, 0.05, 1.3, torch.arange(3, device=DEVICE), 2)
    first = launch.sample_triton(logits_2d, params, return_logprobs=True, num_splits=4, block=512)
    second = launch.sample_triton(logits_2d, params, return_logprobs=True, num_splits=4, block=512)
    (buffer_1, before_1), (buffer_2, before_2) = seen
    assert buffer_1 is not buffer_2  # a buffer of its own (the allocator may reuse the freed memory)
    assert int(before_1.abs().sum()) == int(before_2.abs().sum()) == 0  # zero when the kernel starts
    assert buffer_1.numel() == 3 * (2 + 4 * 6)  # per row: sync word, max key, 4 records of 6 words
    sync = buffer_1[:3]
    assert (sync & 0xFFFF).tolist() == [4] * 3 and (sync >> 16).tolist() == [4] * 3  # all arrived, all finished
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    expected = sample_torch(logits_2d, params, return_logprobs=True)
    assert torch.equal(first[0], expected[0])
    assert torch.allclose(first[1], expected[1], atol=1e-5, rtol=0)


def test_stale_split_references_are_rescanned_and_unsplit_rows_allocate_nothing(monkeypatch):
    """The interpreter runs a row's splits one after the other, so every split before the one holding
    the row max scores against a lower reference: the merge must rescan those and still draw the
    torch backend's tokens.  Rows whose max sits in the last split (ascending rows) make every other
    split stale; all-negative rows (log-softmax) check that a zeroed max key never reads as 0.0."""
    batch, vocab = 4, 4096
    logits = torch.linspace(-6, 6, vocab, device=DEVICE).repeat(batch, 1)
    logits[1] = torch.log_softmax(lm_like_logits(1, vocab, torch.float32, DEVICE, seed=8)[0], dim=-1)
    logits[3] = -logits[3] - 20
    logits_2d, params = validated(logits, 0.2, 0.8, torch.arange(batch, device=DEVICE) + 3, 1)
    for temperature_first in (False, True):
        tokens, logprobs = launch.sample_triton(logits_2d, params, temperature_first, True, num_splits=4, block=1024)
        expected, expected_lp = sample_torch(logits_2d, params, temperature_first, True)
        assert torch.equal(tokens, expected)
        assert torch.allclose(logprobs, expected_lp, atol=1e-5, rtol=0)
    seen = []
    monkeypatch.setattr(launch, "launch_kernel", lambda kernel, grid, kwargs: seen.append(kwargs))
    launch.sample_triton(logits_2d, params, num_splits=1)
    assert not seen[0]["HAS_SPLITS"] and seen[0]["split_workspace_ptr"].numel() == 2  # the shared stand-in


def test_plan_class_does_not_depend_on_the_batch_size():
    """One compiled variant for every split batch size of a vocabulary and dtype (no recompiles as the
    batch changes while serving), and at most two classes in all."""
    device = torch.device("meta")
    for itemsize in (4, 2):
        classes = launch.plan_classes(device, 128256, itemsize, 2048, sm_count=132)
        assert min(classes.values()) == 1  # B = 1 splits
        assert sorted(dict(c)["HAS_SPLITS"] for c in classes) in ([True], [False, True])


@pytest.mark.parametrize("value", [0, 1, 2**31 - 1, 2**31, 2**32 + 5, 2**63 - 1, -1, -(2**63)])
def test_scalar_seed_and_offset_words_rebuild_the_int64(value):
    """Scalar seeds / offsets reach the kernel as two int32 words whatever their size, so the argument
    types (and the compiled variant) never change with the value."""
    low, high = launch._words(value)
    assert -(2**31) <= low < 2**31 and -(2**31) <= high < 2**31
    assert (high << 32) | (low & 0xFFFFFFFF) == value


def test_large_scalar_seeds_draw_what_seed_tensors_draw():
    """Word-split scalar seeds and offsets (beyond 2**31, negative) give the noise of int64 tensors."""
    logits = lm_like_logits(3, 3000, torch.float32, DEVICE, seed=4)
    for seed, offset in ((2**40 + 3, 2**33 + 1), (-5, 2**31), (7, 0)):
        logits_2d, scalar = validated(logits, 0.1, 1.0, seed, offset)
        tokens, _ = launch.sample_triton(logits_2d, scalar)
        assert torch.equal(tokens, sample_torch(logits_2d, scalar)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_several_noise_groups_per_tile(dtype):
    """One warp per program: a 64-row tile holds two 32-row noise groups, skipped one by one.
    Ascending rows put the row max in the last tile."""
    batch, vocab = 6, 3000
    logits = lm_like_logits(batch, vocab, dtype, DEVICE, seed=11)
    logits[::2] = (torch.linspace(-4, 4, vocab, device=DEVICE) + 0.3 * logits[::2].float()).to(dtype)
    block = 64 * 16 // logits.element_size()
    p_base = torch.linspace(0.0, 0.4, batch, device=DEVICE)
    for temperature_first in (False, True):
        logits_2d, params = validated(logits, p_base, 1.1, torch.arange(batch, device=DEVICE) + 40)
        tokens, logprobs = launch.sample_triton(logits_2d, params, temperature_first, True, block=block, num_warps=1)
        expected, expected_lp = sample_torch(logits_2d, params, temperature_first, True)
        assert torch.equal(tokens, expected)
        assert torch.allclose(logprobs, expected_lp, atol=1e-5, rtol=0)


def test_invalid_per_row_values_give_minus_one_in_the_kernel():
    """NaN / out-of-range p_base and NaN / negative temp rows: token -1, log-prob NaN; the other
    rows draw what they draw alone (own seeds), with and without row splits."""
    nan = float("nan")
    p_base = torch.tensor([0.1, nan, -0.1, 1.5, 0.2, 0.1, 0.1], device=DEVICE)
    temp = torch.tensor([1.0, 1.0, 1.0, 1.0, nan, -1.0, 0.7], device=DEVICE)
    logits = lm_like_logits(7, 2000, torch.float32, DEVICE, seed=2)
    seed = torch.arange(7, device=DEVICE) + 9
    valid = [0, 6]
    for num_splits in (1, 2):
        logits_2d, params = validated(logits, p_base, temp, seed)
        tokens, logprobs = launch.sample_triton(logits_2d, params, return_logprobs=True, num_splits=num_splits)
        assert tokens[1:6].tolist() == [-1] * 5 and logprobs[1:6].isnan().all()
        alone_2d, alone = validated(logits[valid], p_base[valid], temp[valid], seed[valid])
        expected, expected_lp = launch.sample_triton(alone_2d, alone, return_logprobs=True)
        assert torch.equal(tokens[valid], expected) and torch.equal(logprobs[valid], expected_lp)


def test_merge_in_chunks(monkeypatch):
    """More splits than the merge holds at once (chunks of 2 for 5-7 splits): the same tokens and
    log-probs as the torch backend, rescans included (the interpreter makes every early split stale)."""
    monkeypatch.setattr(launch, "MERGE_CHUNK", 2)
    launch.launch_plan.cache_clear()
    try:
        logits = lm_like_logits(3, 6000, torch.float32, DEVICE, seed=14)
        logits_2d, params = validated(logits, 0.05, 1.1, torch.arange(3, device=DEVICE))
        for splits in (5, 7):
            tokens, logprobs = launch.sample_triton(logits_2d, params, False, True, num_splits=splits, block=512)
            assert launch.launch_plan(DEVICE, 3, 6000, 4, splits, 512).constexprs["MERGE_CHUNK"] == 2
            expected, expected_lp = sample_torch(logits_2d, params, False, True)
            assert torch.equal(tokens, expected)
            assert torch.allclose(logprobs, expected_lp, atol=1e-5, rtol=0)
    finally:
        launch.launch_plan.cache_clear()


def test_num_splits_bound():
    with pytest.raises(ValueError, match=r"num_splits: expected at most 32767 splits per row"):
        launch.plan_splits(1, 40000 * 16, 16, 132, num_splits=40000)
