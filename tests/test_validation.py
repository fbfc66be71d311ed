"""Every documented bad input raises a clear TypeError / ValueError naming the argument."""

import pytest
import torch

import minp_kernels

from helpers import DEVICE

X = torch.randn(3, 10, device=DEVICE)
P = pytest.param
CASES = [
    # (kwargs overriding a valid call, exception, message pattern), named by the case
    P(dict(logits=[1.0, 2.0]), TypeError, r"logits: expected a torch.Tensor, got list \[1.0, 2.0\]", id="logits-list"),
    P(dict(logits=torch.randn(2, 3, 4)), ValueError, r"logits: expected a 1-D .* got shape \(2, 3, 4\)",
      id="logits-3d"),
    P(dict(logits=torch.randn(())), ValueError, r"logits: expected a 1-D", id="logits-0d"),
    P(dict(logits=torch.randint(0, 5, (3, 10))), TypeError, r"logits: expected dtype .* got torch.int64",
      id="logits-int64"),
    P(dict(logits=torch.randn(3, 10, dtype=torch.float64)), TypeError, r"got torch.float64", id="logits-float64"),
    P(dict(logits=torch.randn(3, 0)), ValueError, r"logits: expected a non-empty vocabulary", id="logits-empty-vocab"),
    P(dict(p_base=1.5), ValueError, r"p_base: expected a value \[0, 1.0\], got 1.5", id="p_base-above-1"),
    P(dict(p_base=-0.1), ValueError, r"p_base: expected a value \[0, 1.0\], got -0.1", id="p_base-negative"),
    P(dict(p_base=float("nan")), ValueError, r"p_base: expected a value .* got nan", id="p_base-nan"),
    P(dict(p_base="0.1"), TypeError, r"p_base: expected a float .* got str '0.1'", id="p_base-str"),
    P(dict(p_base=torch.tensor([0.1, 0.2])), ValueError,
      r"p_base: expected a scalar, a 0-d tensor or a tensor of shape \[3\], got shape \(2,\)",
      id="p_base-wrong-length"),
    P(dict(p_base=torch.tensor([1, 2, 3])), TypeError,
      r"p_base: expected a floating-point tensor, got dtype torch.int64", id="p_base-int-tensor"),
    P(dict(temp=-1.0), ValueError, r"temp: expected a value >= 0, got -1.0", id="temp-negative"),
    P(dict(temp=float("nan")), ValueError, r"temp: expected a value >= 0, got nan", id="temp-nan"),
    P(dict(temp=torch.ones(3, 1)), ValueError, r"temp: expected a scalar, a 0-d tensor or a tensor of shape \[3\]",
      id="temp-2d"),
    P(dict(seed=torch.tensor([1.0, 2.0, 3.0])), TypeError, r"seed: expected an integer tensor, got dtype torch.float32",
      id="seed-float-tensor"),
    P(dict(seed=1.5), TypeError, r"seed: expected an int .* got float 1.5", id="seed-float"),
    P(dict(seed=2**64), ValueError, r"seed: expected an int in \[-2\*\*63, 2\*\*64\)", id="seed-above-64-bits"),
    P(dict(offset=torch.zeros(4, dtype=torch.int64)), ValueError,
      r"offset: expected a scalar, a 0-d tensor or a tensor of shape \[3\]", id="offset-wrong-length"),
    P(dict(offset="1"), TypeError, r"offset: expected an int", id="offset-str"),
    P(dict(backend="cuda"), ValueError, r"backend: expected one of \('auto', 'triton', 'torch'\), got 'cuda'",
      id="backend-unknown"),
    P(dict(generator=3), TypeError, r"generator: expected a torch.Generator or None, got int 3", id="generator-int"),
]


@pytest.mark.parametrize("override,error,pattern", CASES)
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bad_input(override, error, pattern, backend):
    kwargs = dict(logits=X, p_base=0.1, temp=1.0, seed=None, backend=backend)
    kwargs.update({k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v for k, v in override.items()})
    logits, p_base, temp = kwargs.pop("logits"), kwargs.pop("p_base"), kwargs.pop("temp")
    with pytest.raises(error, match=pattern):
        minp_kernels.sample(logits, p_base, temp, **kwargs)


def test_strict_checks_tensor_values():
    with pytest.raises(ValueError, match=r"p_base: expected values \[0, 1.0\], got \[1.5\] at rows \[1\]"):
        minp_kernels.sample(X, torch.tensor([0.1, 1.5, 0.2], device=DEVICE), 1.0, seed=1, strict=True)
    with pytest.raises(ValueError, match=r"temp: expected values >= 0, got \[nan\] at rows \[2\]"):
        minp_kernels.sample(X, 0.1, torch.tensor([1.0, 0.5, float("nan")], device=DEVICE), seed=1, strict=True)
    valid = minp_kernels.sample(X, torch.full((3,), 0.1, device=DEVICE), torch.ones(3, device=DEVICE), seed=1,
                                strict=True)
    assert valid.shape == (3,)


def test_seed_bit_patterns_agree():
    """A seed above 2**63 is the same 64-bit key as its negative int64 twin."""
    a = minp_kernels.sample(X, 0.0, 1.0, seed=2**64 - 5, backend="torch")
    b = minp_kernels.sample(X, 0.0, 1.0, seed=-5, backend="torch")
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for the cross-device case")
def test_param_on_other_device():
    with pytest.raises(ValueError, match=r"p_base: expected a tensor on cuda"):
        minp_kernels.sample(X.cuda(), torch.full((3,), 0.1), 1.0)  # p_base left on the CPU


def test_triton_backend_on_cpu_without_interpreter_is_a_clear_error():
    """Without TRITON_INTERPRET the kernels are GPU kernels: CPU tensors get a ValueError, not a crash."""
    import os
    import subprocess
    import sys

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the triton backend is real here and CPU tensors are another case")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import torch, minp_kernels\n"
            "try:\n"
            "    minp_kernels.sample(torch.randn(2, 5), 0.1, 1.0, backend='triton')\n"
            "except ValueError as e:\n"
            "    print('ValueError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "ValueError: backend: 'triton' expected CUDA tensors or TRITON_INTERPRET=1" in out.stdout, out.stderr


# Arguments of any size: the message stays short (the old one quoted the whole value: 2.6 MB for a
# 128256-long list).
HUGE = [
    P(dict(logits=[0.5] * 128256), TypeError, r"^logits: expected a torch.Tensor, got list \[0.5, 0.5, ", id="logits"),
    P(dict(p_base="0." + "1" * 100_000), TypeError, r"^p_base: expected a float .* got str '0.111", id="p_base"),
    P(dict(temp={i: list(range(100)) for i in range(1000)}), TypeError, r"^temp: expected a float .* got dict ",
      id="temp"),
    P(dict(seed=list(range(100_000))), TypeError, r"^seed: expected an int .* got list \[0, 1, 2, ", id="seed-list"),
    P(dict(seed=2**100_000), ValueError, r"^seed: expected an int in .* got <int of 100001 bits>", id="seed-int"),
    P(dict(backend="t" * 100_000), ValueError, r"^backend: expected one of .* got 'tttt", id="backend"),
    P(dict(generator=bytearray(10**6)), TypeError, r"^generator: expected a torch.Generator .* bytearray",
      id="generator"),
]


@pytest.mark.parametrize("override,error,pattern", HUGE)
def test_message_stays_short_whatever_the_argument_size(override, error, pattern):
    kwargs = dict(logits=X, p_base=0.1, temp=1.0, seed=None)
    kwargs.update(override)
    logits, p_base, temp = kwargs.pop("logits"), kwargs.pop("p_base"), kwargs.pop("temp")
    with pytest.raises(error, match=pattern) as raised:
        minp_kernels.sample(logits, p_base, temp, **kwargs)
    assert len(str(raised.value)) <= 300, str(raised.value)


def test_strict_message_stays_short_however_many_rows_are_bad():
    rows = 100_000
    logits = torch.zeros(rows, 4, device=DEVICE)
    with pytest.raises(ValueError, match=r"^p_base: expected values \[0, 1.0\], got \[1.5, 1.5, .*, \.\.\.\] "
                                         r"at rows \[0, 1, 2, .*, \.\.\.\] \(100000 rows\)$") as raised:
        minp_kernels.sample(logits, torch.full((rows,), 1.5, device=DEVICE), 1.0, seed=1, strict=True)
    assert len(str(raised.value)) <= 300
    logits[7:] = float("nan")
    with pytest.raises(ValueError, match=r"^logits: expected at least one finite logit per row, got none in rows "
                                         r"\[7, 8, 9, .*\] \(99993 rows\)$") as raised:
        minp_kernels.sample(logits, 0.1, 1.0, seed=1, strict=True)
    assert len(str(raised.value)) <= 300
