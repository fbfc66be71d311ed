"""Every documented bad input raises a clear TypeError / ValueError naming the argument."""

import pytest
import torch

import minp_kernels
from conftest import DEVICE

X = torch.randn(3, 10, device=DEVICE)
CASES = [
    # (kwargs overriding a valid call, exception, message pattern)
    (dict(logits=[1.0, 2.0]), TypeError, r"logits: expected a torch.Tensor, got list"),
    (dict(logits=torch.randn(2, 3, 4)), ValueError, r"logits: expected a 1-D .* got shape \(2, 3, 4\)"),
    (dict(logits=torch.randn(())), ValueError, r"logits: expected a 1-D"),
    (dict(logits=torch.randint(0, 5, (3, 10))), TypeError, r"logits: expected dtype .* got torch.int64"),
    (dict(logits=torch.randn(3, 10, dtype=torch.float64)), TypeError, r"got torch.float64"),
    (dict(logits=torch.randn(3, 0)), ValueError, r"logits: expected a non-empty vocabulary"),
    (dict(p_base=1.5), ValueError, r"p_base: expected a value \[0, 1.0\], got 1.5"),
    (dict(p_base=-0.1), ValueError, r"p_base: expected a value \[0, 1.0\], got -0.1"),
    (dict(p_base=float("nan")), ValueError, r"p_base: expected a value .* got nan"),
    (dict(p_base="0.1"), TypeError, r"p_base: expected a float .* got str"),
    (dict(p_base=torch.tensor([0.1, 0.2])), ValueError, r"p_base: expected a scalar or a tensor of shape \[3\], got shape \(2,\)"),
    (dict(p_base=torch.tensor([1, 2, 3])), TypeError, r"p_base: expected a floating-point tensor, got dtype torch.int64"),
    (dict(temp=-1.0), ValueError, r"temp: expected a value >= 0, got -1.0"),
    (dict(temp=float("nan")), ValueError, r"temp: expected a value >= 0, got nan"),
    (dict(temp=torch.ones(3, 1)), ValueError, r"temp: expected a scalar or a tensor of shape \[3\]"),
    (dict(seed=torch.tensor([1.0, 2.0, 3.0])), TypeError, r"seed: expected an integer tensor, got dtype torch.float32"),
    (dict(seed=1.5), TypeError, r"seed: expected an int .* got float 1.5"),
    (dict(seed=2**64), ValueError, r"seed: expected an int in \[-2\*\*63, 2\*\*64\)"),
    (dict(offset=torch.zeros(4, dtype=torch.int64)), ValueError, r"offset: expected a scalar or a tensor of shape \[3\]"),
    (dict(offset="1"), TypeError, r"offset: expected an int"),
    (dict(backend="cuda"), ValueError, r"backend: expected one of \('auto', 'triton', 'torch'\), got 'cuda'"),
    (dict(generator=3), TypeError, r"generator: expected a torch.Generator or None, got int 3"),
]


@pytest.mark.parametrize("override,error,pattern", CASES, ids=[str(i) for i in range(len(CASES))])
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
    assert minp_kernels.sample(X, torch.full((3,), 0.1, device=DEVICE), torch.ones(3, device=DEVICE), seed=1, strict=True).shape == (3,)


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
