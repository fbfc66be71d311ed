"""Test set-up: run the real Triton kernels on CPU through the interpreter when there is no GPU.

Only set-up and fixtures live here; shared names (``DEVICE``, ``HAS_CUDA``, ``requires_cuda``, logit
generators) live in ``tests/helpers.py`` and tests import them from there.
"""

import dataclasses
import os

import pytest
import torch

if not torch.cuda.is_available():
    # Must be set before minp_kernels is imported: triton.jit decides at decoration time.
    os.environ["TRITON_INTERPRET"] = "1"


def _speed_up_interpreter():
    """Remove work Triton's interpreter repeats or throws away; what the kernels compute is unchanged.

    * It re-patches ``triton.language`` (an ``inspect.getmembers`` sweep) on every device-function
      call, about half of its run time on our kernels.  The patch is the same each time, so it is
      applied once per module here.
    * It checks every signed 32-bit integer add / sub / mul for overflow by redoing the operation in
      64 bits and comparing, then hands the result to ``device_assert``, which does nothing unless the
      options say ``debug`` (they never do in the interpreter).  Turning the check off when ``debug`` is
      off drops only that discarded work: about a fifth of the run time of our kernels (Philox is
      integer arithmetic).
    * It rebuilds a 19-entry dtype table on every ``_get_np_dtype`` call; the answers are cached.

    Each patch is applied only where this Triton version has the names it relies on.
    """
    try:
        import triton.runtime.interpreter as interp
    except ImportError:
        return
    if hasattr(interp, "_patch_lang") and hasattr(interp.InterpretedFunction, "rewrite"):
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

    builder = getattr(interp, "interpreter_builder", None)
    options = getattr(builder, "options", None)
    if dataclasses.is_dataclass(options) and getattr(options, "sanitize_overflow", False) and not options.debug:
        builder.options = dataclasses.replace(options, sanitize_overflow=False)

    np_dtype = getattr(interp, "_get_np_dtype", None)
    if np_dtype is not None:
        cache = {}

        def cached_np_dtype(tt_dtype):
            try:
                return cache[tt_dtype]
            except KeyError:
                cache[tt_dtype] = np_dtype(tt_dtype)
                return cache[tt_dtype]
            except TypeError:  # an unhashable dtype: no caching
                return np_dtype(tt_dtype)

        interp._get_np_dtype = cached_np_dtype


if os.environ.get("TRITON_INTERPRET") == "1":
    _speed_up_interpreter()

# One intra-op torch thread per test process.  The tests' tensors are small, and with more threads than
# free cores (pytest -n 2 on 2 cores, or any busy machine) torch's threads wait on each other at every
# operation: on this project's shared 2-core machine a 20,000 x 64 draw of the torch backend took 4.8 s
# of CPU with 2 threads and 0.09 s with 1.
torch.set_num_threads(1)

# Imported after TRITON_INTERPRET is set (helpers imports minp_kernels).
from helpers import DEVICE  # noqa: E402


@pytest.fixture
def device():
    """The device the tests run on: CUDA when there is a GPU, else CPU (Triton interpreted)."""
    return DEVICE
