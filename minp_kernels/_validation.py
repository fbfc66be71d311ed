"""Input checks shared by every backend.

Each helper raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape,
device or value) with a message of the form "<argument>: expected X, got Y".  None of them reads
tensor values, so the default path never synchronises with the device; ``strict=True`` adds the
value checks in :func:`check_values_strict`, which do.
"""

import math
import numbers
import reprlib

import numpy as np
import torch

from .params import MAX_VOCAB, RowParams, out_of_range

LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BACKENDS = ("auto", "triton", "torch")
INT64_MIN, INT64_MAX, UINT64_END = -(2**63), 2**63 - 1, 2**64

# Error messages quote a caller's value through this: a 128256-long list passed as logits must give a
# one-line message, not megabytes.  reprlib shortens containers and strings; the cap bounds the rest.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxstring, _SHORT.maxother = 2, 6, 6, 60, 60
MAX_REPR_CHARS = 120


def short_repr(value) -> str:
    """``repr(value)`` cut to at most :data:`MAX_REPR_CHARS` characters, whatever the value's size."""
    if isinstance(value, int) and value.bit_length() > 128:  # Python refuses str() past 4300 digits
        return f"<int of {value.bit_length()} bits>"
    try:
        text = _SHORT.repr(value)
    except Exception as error:  # a broken __repr__ must not replace the error being reported
        return f"<{type(value).__name__} whose repr raised {type(error).__name__}>"
    return text if len(text) <= MAX_REPR_CHARS else text[: MAX_REPR_CHARS - 3] + "..."


def _describe(value) -> str:
    """A tensor by shape, dtype and device; anything else by type and a short repr."""
    if isinstance(value, torch.Tensor):
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype}, device={value.device})"
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{name} {short_repr(value)}"


def _row_list(rows: list[int]) -> str:
    """``"[r0, r1, ...] (N rows)"``: bounded however many rows are bad, with the count when cut."""
    return short_repr(rows) + (f" ({len(rows)} rows)" if len(rows) > _SHORT.maxlist else "")


def validate_logits(logits: object) -> tuple[torch.Tensor, bool]:
    """Return ``(logits_2d, was_1d)`` with a unit-stride last dimension."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits: expected a torch.Tensor, got {_describe(logits)}")
    ndim = logits.ndim
    if ndim != 2 and ndim != 1:
        raise ValueError(f"logits: expected a 1-D [V] or 2-D [B, V] tensor, got shape {tuple(logits.shape)}")
    if logits.dtype not in LOGIT_DTYPES:
        raise TypeError(f"logits: expected dtype float32, float16 or bfloat16, got {logits.dtype}")
    logits_2d = logits if ndim == 2 else logits.unsqueeze(0)
    vocab = logits_2d.shape[1]
    if vocab == 0:
        raise ValueError(f"logits: expected a non-empty vocabulary (V >= 1), got shape {tuple(logits.shape)}")
    if vocab > MAX_VOCAB:  # before any copy: a stride-0 view of that size costs nothing until then
        raise ValueError(f"logits: expected a vocabulary of at most {MAX_VOCAB} tokens (32-bit token arithmetic), "
                         f"got V = {vocab}")
    if vocab > 1 and logits_2d.stride(1) != 1:
        logits_2d = logits_2d.contiguous()
    return logits_2d, ndim == 1


def validate_flag(name: str, value: object) -> bool:
    """A yes / no argument: a bool (NumPy's too), not a truthy string or number such as ``"False"``."""
    if type(value) is bool:  # the hot path
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{name}: expected a bool, got {_describe(value)}")


def _validate_row_tensor(name: str, value: torch.Tensor, batch: int, logits_2d: torch.Tensor) -> torch.Tensor:
    """A per-row tensor ``[B]``, or a 0-d tensor as ``[1]`` (one value for every row, read on the device)."""
    if value.ndim == 0:
        value = value.reshape(1)
    elif value.ndim != 1 or value.shape[0] != batch:
        raise ValueError(f"{name}: expected a scalar, a 0-d tensor or a tensor of shape [{batch}], got shape "
                         f"{tuple(value.shape)}")
    # Cheap properties instead of comparing torch.device objects (about 1 us each on the hot path).
    if (value.get_device(), value.is_cuda, value.is_meta) != (logits_2d.get_device(), logits_2d.is_cuda,
                                                              logits_2d.is_meta):
        raise ValueError(f"{name}: expected a tensor on {logits_2d.device} (the logits' device), got one on "
                         f"{value.device}")
    return value


def validate_row_float(name: str, value: object, batch: int, logits_2d: torch.Tensor,
                       upper: float | None = None) -> float | torch.Tensor:
    """Check a float parameter in ``[0, upper]`` (``upper=None``: no upper bound)."""
    if type(value) is float and 0.0 <= value <= (math.inf if upper is None else upper):  # the hot path
        return value
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
        return _validate_row_tensor(name, value, batch, logits_2d)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float or a tensor of shape [{batch}], got {_describe(value)}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond the float range: as large as a float gets, then the usual bounds
        value = math.inf if value > 0 else -math.inf
    if math.isnan(value) or value < 0 or (upper is not None and value > upper):
        bounds = f"[0, {upper}]" if upper is not None else ">= 0"
        raise ValueError(f"{name}: expected a value {bounds}, got {value}")
    return value


def validate_row_int(name: str, value: object, batch: int, logits_2d: torch.Tensor) -> int | torch.Tensor:
    """Check a seed or offset: a Python int (any 64-bit pattern) or an integer tensor ``[B]``."""
    if type(value) is int and 0 <= value <= INT64_MAX:  # the hot path: already a signed int64
        return value
    if isinstance(value, torch.Tensor):
        int64 = value.dtype == torch.int64
        if not int64 and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
            raise TypeError(f"{name}: expected an integer tensor, got dtype {value.dtype}")
        value = _validate_row_tensor(name, value, batch, logits_2d)
        return value if int64 else value.to(torch.int64)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int or an integer tensor of shape [{batch}], got {_describe(value)}")
    value = int(value)
    if not INT64_MIN <= value < UINT64_END:
        raise ValueError(f"{name}: expected an int in [-2**63, 2**64), got {short_repr(value)}")
    return (value - INT64_MIN) % UINT64_END + INT64_MIN  # the same 64 bits, as a signed int64


def validate_filters(logits_2d: torch.Tensor, top_k: object, top_p: object,
                     top_p_after_min_p: object) -> tuple[int | torch.Tensor | None, float | torch.Tensor | None, bool]:
    """``(top_k, top_p, top_p_after_min_p)`` for :class:`RowParams`; a scalar that leaves every row
    uncut (``top_k`` None, 0 or ``>= V``; ``top_p`` None or 1) becomes None, so it costs nothing."""
    batch, vocab = logits_2d.shape
    top_p_after_min_p = validate_flag("top_p_after_min_p", top_p_after_min_p)
    if isinstance(top_k, torch.Tensor):
        if top_k.is_floating_point() or top_k.is_complex() or top_k.dtype == torch.bool:
            raise TypeError(f"top_k: expected an integer tensor, got dtype {top_k.dtype}")
        top_k = _validate_row_tensor("top_k", top_k, batch, logits_2d).to(torch.int64)
    elif top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral):
            raise TypeError(f"top_k: expected None, an int or an integer tensor of shape [{batch}], got "
                            f"{_describe(top_k)}")
        if top_k < 0:
            raise ValueError(f"top_k: expected an int >= 0 (0: off), got {short_repr(top_k)}")
        top_k = int(top_k) if 0 < top_k < vocab else None
    if isinstance(top_p, torch.Tensor):
        if not top_p.is_floating_point():
            raise TypeError(f"top_p: expected a floating-point tensor, got dtype {top_p.dtype}")
        top_p = _validate_row_tensor("top_p", top_p, batch, logits_2d)
    elif top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, numbers.Real):
            raise TypeError(f"top_p: expected None, a float or a tensor of shape [{batch}], got {_describe(top_p)}")
        top_p = float(top_p)
        if not 0.0 < top_p <= 1.0:  # NaN fails too
            raise ValueError(f"top_p: expected a value in (0, 1] (1: off), got {top_p}")
        top_p = top_p if top_p < 1.0 else None
    return top_k, top_p, top_p_after_min_p


def validate_backend(backend: object, logits: torch.Tensor) -> str:
    """Resolve ``"auto"`` (Triton for CUDA logits); the launcher itself refuses CPU tensors without
    the interpreter."""
    if backend == "auto":
        return "triton" if logits.is_cuda else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {short_repr(backend)}")
    return backend


def validate_params(logits_2d: torch.Tensor, p_base: object, temp: object, seed: object, offset: object,
                    generator: object, top_k: object = None, top_p: object = None,
                    top_p_after_min_p: object = False) -> RowParams:
    """Validate the per-row parameters and draw a shared seed when ``seed`` is None."""
    batch = logits_2d.shape[0]
    p_base = validate_row_float("p_base", p_base, batch, logits_2d, upper=1.0)
    temp = validate_row_float("temp", temp, batch, logits_2d)
    offset = validate_row_int("offset", offset, batch, logits_2d)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {_describe(generator)}")
    if generator is not None and seed is not None:
        raise ValueError(f"generator: expected None when seed is given (the generator only draws a missing seed), "
                         f"got a generator and seed={_describe(seed)}")
    if seed is None:
        # One 64-bit seed drawn on the device: no host sync, and CUDA-graph safe with torch's generator.
        seed = torch.randint(INT64_MIN, UINT64_END // 2 - 1, (1,), device=logits_2d.device, dtype=torch.int64,
                             generator=generator)
        seed_shared = True
    else:
        # A scalar seed, a Python int or a 0-d tensor, is shared by the rows (the row index then keys the stream).
        seed_shared = not isinstance(seed, torch.Tensor) or seed.ndim == 0
        seed = validate_row_int("seed", seed, batch, logits_2d)
    return RowParams(p_base, temp, seed, offset, seed_shared,
                     *validate_filters(logits_2d, top_k, top_p, top_p_after_min_p))


def check_values_strict(logits_2d: torch.Tensor, params: RowParams) -> None:
    """Value checks that need the host to read device memory (``strict=True``)."""
    for name, value, upper in (("p_base", params.p_base, 1.0), ("temp", params.temp, None),
                               ("top_p", params.top_p, 1.0)):
        if isinstance(value, torch.Tensor):
            bad = out_of_range(value, upper) | ((value == 0) if name == "top_p" else False)
            rows = torch.nonzero(bad).flatten().tolist()
            if rows:
                bounds = "(0, 1]" if name == "top_p" else f"[0, {upper}]" if upper is not None else ">= 0"
                raise ValueError(f"{name}: expected values {bounds}, got {short_repr(value[rows].tolist())} "
                                 f"at rows {_row_list(rows)}")
    if isinstance(params.top_k, torch.Tensor):
        rows = torch.nonzero(params.top_k < 0).flatten().tolist()
        if rows:
            raise ValueError(f"top_k: expected values >= 0, got {short_repr(params.top_k[rows].tolist())} at rows "
                             f"{_row_list(rows)}")
    finite = torch.isfinite(logits_2d) | (logits_2d == float("inf"))
    rows = torch.nonzero(~finite.any(dim=-1)).flatten().tolist()
    if rows:
        raise ValueError(f"logits: expected at least one finite logit per row, got none in rows {_row_list(rows)}")
