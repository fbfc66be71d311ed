"""Test set-up: run the real Triton kernels on CPU through the interpreter when there is no GPU."""

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    # Must be set before minp_kernels is imported: triton.jit decides at decoration time.
    os.environ["TRITON_INTERPRET"] = "1"


def _speed_up_interpreter():
    """Patch each module's language only once instead of at every nested @triton.jit call.

    Triton's interpreter re-patches ``triton.language`` (an ``inspect.getmembers`` sweep) on every
    device-function call, which is about half of its run time on our kernel.  The patch it applies is
    the same each time, so doing it once per module changes nothing but the speed.
    """
    try:
        import triton.runtime.interpreter as interp
    except ImportError:
        return
    if not hasattr(interp, "_patch_lang") or not hasattr(interp.InterpretedFunction, "rewrite"):
        return
    patched = set()

    def call(self, *args, **kwargs):
        if id(self.fn.__globals__) not in patched:
            patched.add(id(self.fn.__globals__))
            interp._patch_lang(self.fn)
        try:
            return self.rewrite()(*args, **kwargs)
        except Exception as e:
            raise interp.InterpreterError(repr(e)) from e

    interp.InterpretedFunction.__call__ = call


if not HAS_CUDA:
    _speed_up_interpreter()

DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (run benchmarks/gpu_check.sh)")


@pytest.fixture
def device():
    return DEVICE
