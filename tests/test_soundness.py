"""Issue 17's CPU-checkable items: rows of huge or +inf logits draw from the distribution the
reference describes, flags are bools, 0-d tensors are scalars, ``seed`` excludes ``generator``, the
vocabulary bound, 64-bit scalars never change a launch's argument types, and the CLI's errors.

Statistical tests: Pearson's chi-square of first-token counts against ``reference.minp_probs`` with
fixed seeds; each test's false-alarm rate is ``ALPHA`` (Bonferroni over the rows it checks).
"""

import subprocess
import sys

import pytest
import scipy.stats
import torch

import minp_kernels
from minp_kernels import launch
from minp_kernels.__main__ import main as cli_main
from minp_kernels.distributed import sample as distributed_sample
from minp_kernels.integrations.serving import min_p_sample
from minp_kernels.params import MAX_VOCAB
from minp_kernels.reference import kept_mask, minp_probs

from helpers import DEVICE, over_backends

ALPHA = 1e-4
INF = float("inf")
DRAWS = 4000  # rows per call, one seed each: one call draws them all
KERNEL_ROWS = 256  # rows of the same batch checked bit for bit against the interpreted kernel

# (name, logits, p_base, temp): rows whose logits times 1/temp swallow Gumbel noise in float32.
HUGE_ROWS = [
    ("two_inf", [0.0, INF, 5.0, INF], 0.1, 1.0),
    ("two_huge", [1e30, 1e30, 0.0], 0.1, 1.0),
    ("inf_and_huge_tempered", [INF, 3e38, INF, -2.0], 0.0, 0.7),  # p_base 0: every finite logit kept
    ("offset_1.6e7", [16_000_000.0, 15_999_999.0, 15_999_998.0, 15_999_990.0], 0.01, 0.7),
    ("offset_-1e6_hot", [-1e6, -1e6 - 0.5, -1e6 - 1.0, -1e6 - 3.0], 0.05, 2.0),
]


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of Pearson's test of ``counts`` against ``probs`` over the tokens with probability > 0
    (a draw outside them fails the test outright)."""
    support = probs > 0
    assert counts[~support].sum() == 0, f"draws outside the kept set: {counts.tolist()}"
    if int(support.sum()) == 1:
        return 1.0
    expected = probs[support].double() * counts.sum()
    return float(scipy.stats.chisquare(counts[support].double(), expected / expected.sum() * counts.sum()).pvalue)


@over_backends
@pytest.mark.parametrize("name,row,p_base,temp", HUGE_ROWS, ids=[r[0] for r in HUGE_ROWS])
def test_huge_and_infinite_rows_draw_the_reference_distribution(backend, name, row, p_base, temp):
    """Today's failure: ``[0, inf, 5, inf]`` drew token 1 for every seed (FLT_MAX / T + G is FLT_MAX);
    scoring against the row max keeps the noise, so the draws match ``minp_probs`` (0.5 / 0.5)."""
    logits = torch.tensor(row, device=DEVICE).repeat(DRAWS if backend == "torch" else KERNEL_ROWS, 1)
    seeds = torch.arange(logits.shape[0], device=DEVICE) + 1000
    tokens = minp_kernels.sample(logits, p_base, temp, seed=seeds, backend=backend)
    if backend == "triton":  # the interpreter is slow: bit-identity on a subset, the statistics on the torch backend
        expected = minp_kernels.sample(logits, p_base, temp, seed=seeds, backend="torch")
        assert torch.equal(tokens, expected)
        return
    probs = minp_probs(logits[:1], p_base, temp)[0].cpu()
    counts = torch.bincount(tokens.cpu(), minlength=len(row))
    assert chi_square_p(counts, probs) > ALPHA, (counts.tolist(), probs.tolist())


@over_backends
def test_huge_rows_log_probs_describe_the_draws(backend):
    """The log-prob returned with a +inf row's token is the reference's (log 1/2 for two +inf)."""
    logits = torch.tensor([[0.0, INF, 5.0, INF], [1e30, 1e30, 0.0, -INF]], device=DEVICE)
    tokens, logprobs = minp_kernels.sample(logits, 0.1, 1.0, seed=torch.arange(2, device=DEVICE), backend=backend,
                                           return_logprobs=True)
    probs = minp_probs(logits, 0.1, 1.0)
    assert torch.allclose(logprobs, probs.gather(1, tokens[:, None])[:, 0].log(), atol=1e-6)


FLAG_CALLS = [
    ("sample.temperature_first", lambda x, v: minp_kernels.sample(x, 0.1, 1.0, seed=1, temperature_first=v)),
    ("sample.return_logprobs", lambda x, v: minp_kernels.sample(x, 0.1, 1.0, seed=1, return_logprobs=v)),
    ("sample.strict", lambda x, v: minp_kernels.sample(x, 0.1, 1.0, seed=1, strict=v)),
    ("kept_mask.temperature_first", lambda x, v: kept_mask(x, 0.1, 1.0, temperature_first=v)),
    ("minp_probs.temperature_first", lambda x, v: minp_probs(x, 0.1, 1.0, temperature_first=v)),
    ("min_p_sample.paper_order", lambda x, v: min_p_sample(x, torch.full((2,), 0.1), torch.ones(2),
                                                           torch.arange(2), torch.zeros(2, dtype=torch.int64),
                                                           paper_order=v)),
    ("distributed.temperature_first", lambda x, v: distributed_sample(x, 0.1, 1.0, vocab_start=0, seed=1,
                                                                      temperature_first=v)),
    ("warmup.per_row", lambda x, v: minp_kernels.warmup(8, per_row=v)),
]


@pytest.mark.parametrize("value", ["False", "yes", 1, 0, None], ids=["str-False", "str-yes", "int-1", "int-0", "None"])
@pytest.mark.parametrize("name,call", FLAG_CALLS, ids=[c[0] for c in FLAG_CALLS])
def test_flags_must_be_bools(name, call, value):
    """``temperature_first="False"`` used to be taken as True; now every flag names itself in a TypeError."""
    logits = torch.randn(2, 8)
    with pytest.raises(TypeError, match=rf"{name.split('.')[1]}: expected a bool, got"):
        call(logits, value)


@over_backends
def test_zero_dim_tensors_are_scalars(backend):
    """0-d tensors on the logits' device act as the scalars they hold: the same tokens, no host sync."""
    logits = torch.randn(6, 3000, device=DEVICE) * 3
    as_scalars = minp_kernels.sample(logits, 0.1, 1.3, seed=77, offset=5, backend=backend, return_logprobs=True)
    as_tensors = minp_kernels.sample(logits, torch.tensor(0.1, device=DEVICE), torch.tensor(1.3, device=DEVICE),
                                     seed=torch.tensor(77, device=DEVICE), offset=torch.tensor(5, device=DEVICE),
                                     backend=backend, return_logprobs=True)
    assert torch.equal(as_scalars[0], as_tensors[0])
    assert torch.allclose(as_scalars[1], as_tensors[1], atol=1e-6, rtol=0)


def test_zero_dim_tensor_values_are_not_read_on_the_host():
    """A 0-d p_base out of range is a per-row value: token -1 for every row, no error, no sync."""
    tokens = minp_kernels.sample(torch.randn(3, 50), torch.tensor(1.5), 1.0, seed=1)
    assert tokens.tolist() == [-1, -1, -1]


def test_seed_with_generator_is_an_error():
    logits = torch.randn(2, 10)
    with pytest.raises(ValueError, match=r"generator: expected None when seed is given"):
        minp_kernels.sample(logits, 0.1, 1.0, seed=3, generator=torch.Generator().manual_seed(1))
    minp_kernels.sample(logits, 0.1, 1.0, generator=torch.Generator().manual_seed(1))  # alone: fine


def test_vocabulary_bound_is_checked_before_any_copy():
    """A stride-0 row of MAX_VOCAB + 1 tokens costs no memory: the check must come before the
    contiguous copy, name the argument and give the bound."""
    too_wide = torch.zeros(1, 1).expand(1, MAX_VOCAB + 1)
    for backend in ("torch", "triton"):
        with pytest.raises(ValueError, match=rf"logits: expected a vocabulary of at most {MAX_VOCAB}"):
            minp_kernels.sample(too_wide, 0.1, 1.0, seed=1, backend=backend)


def test_shard_token_ids_bound():
    """A shard whose global ids pass 32 bits would switch tl.philox to Philox-4x64: refused on the host."""
    local = torch.randn(2, 64)
    with pytest.raises(ValueError, match=r"vocab_start: expected an int >= 0 with vocab_start \+ V_local"):
        distributed_sample(local, 0.1, 1.0, vocab_start=MAX_VOCAB - 10, seed=1)


def test_scalar_seeds_and_offsets_keep_one_argument_signature(monkeypatch):
    """Seeds and offsets on both sides of 2**31 give launches whose integer arguments all fit int32,
    so the JIT types them alike and compiles one variant (offset 2**31 used to turn them into i64)."""
    seen = []
    monkeypatch.setattr(launch, "launch_kernel", lambda kernel, grid, kwargs: seen.append(kwargs))
    logits = torch.randn(2, 64)
    for value in (0, 1, 16, 2**31 - 1, 2**31, 2**40, 2**63 - 1):
        minp_kernels.sample(logits, 0.1, 1.0, seed=value, offset=value, backend="triton")
    kinds = {tuple((name, "i32" if -(2**31) <= v < 2**31 else "i64") for name, v in kwargs.items()
                   if type(v) is int and not name.isupper() and name not in ("num_warps", "maxnreg"))
             for kwargs in seen}
    assert len(kinds) == 1 and all(kind == "i32" for _, kind in next(iter(kinds)))


@pytest.mark.parametrize("argv,message", [
    (["--batch", "0"], "argument --batch: expected an integer >= 1, got 0"),
    (["--batch", "-3"], "argument --batch: expected an integer >= 1, got -3"),
    (["--vocab", "0"], "argument --vocab: expected an integer in"),
    (["--p-base", "1.5"], "argument --p-base: expected a number in [0, 1], got 1.5"),
    (["--p-base", "nan"], "argument --p-base: expected a number in [0, 1], got nan"),
    (["--temp", "-1"], "argument --temp: expected a number >= 0, got -1"),
    (["--repeats", "x"], "argument --repeats: expected an integer >= 1, got 'x'"),
], ids=["batch-0", "batch-negative", "vocab-0", "p_base-above-1", "p_base-nan", "temp-negative", "repeats-text"])
def test_cli_rejects_bad_numbers_with_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_error_has_no_traceback():
    result = subprocess.run([sys.executable, "-m", "minp_kernels", "--batch", "-3"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--batch" in result.stderr


def test_warmup_arguments():
    assert minp_kernels.warmup([32000, 128256], (torch.float32, torch.bfloat16), 64, per_row=(True, False),
                               device="cpu") == 0  # nothing to compile off CUDA
    with pytest.raises(ValueError, match=r"max_batch: expected an int >= 1, got 0"):
        minp_kernels.warmup(32000, max_batch=0)
