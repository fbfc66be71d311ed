"""Public entry points: :func:`sample` and :func:`warmup`."""

import itertools
from collections.abc import Sequence
from typing import Literal, overload

import torch

from ._op import call_op, run_backend
from ._validation import check_values_strict, validate_backend, validate_flag, validate_logits, validate_params

Backend = Literal["auto", "triton", "torch"]


@overload
def sample(logits: torch.Tensor, p_base: float | torch.Tensor, temp: float | torch.Tensor, *,
           seed: int | torch.Tensor | None = None, offset: int | torch.Tensor = 0,
           generator: torch.Generator | None = None, temperature_first: bool = False,
           top_k: int | torch.Tensor | None = None, top_p: float | torch.Tensor | None = None,
           top_p_after_min_p: bool = False, return_logprobs: Literal[False] = False, backend: Backend = "auto",
           strict: bool = False) -> torch.Tensor: ...


@overload
def sample(logits: torch.Tensor, p_base: float | torch.Tensor, temp: float | torch.Tensor, *,
           seed: int | torch.Tensor | None = None, offset: int | torch.Tensor = 0,
           generator: torch.Generator | None = None, temperature_first: bool = False,
           top_k: int | torch.Tensor | None = None, top_p: float | torch.Tensor | None = None,
           top_p_after_min_p: bool = False, return_logprobs: Literal[True], backend: Backend = "auto",
           strict: bool = False) -> tuple[torch.Tensor, torch.Tensor]: ...


def sample(logits: torch.Tensor, p_base: float | torch.Tensor, temp: float | torch.Tensor, *,
           seed: int | torch.Tensor | None = None, offset: int | torch.Tensor = 0,
           generator: torch.Generator | None = None, temperature_first: bool = False,
           top_k: int | torch.Tensor | None = None, top_p: float | torch.Tensor | None = None,
           top_p_after_min_p: bool = False, return_logprobs: bool = False, backend: Backend = "auto",
           strict: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row with min-p sampling, fused in one pass over the logits.

    Keeps the tokens whose probability is at least ``p_base`` times the row's largest
    (``logit >= max + ln(p_base)``), optionally cut by top-k and top-p too, then samples among them
    at temperature ``temp`` with the Gumbel-max trick (Nguyen et al., arXiv 2407.01082).

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]`` (a batch of rows) or ``[V]`` (one row: the results are then 0-d), float32 /
        float16 / bfloat16, CPU or CUDA, any row stride.
    p_base : float or torch.Tensor
        Min-p base in ``[0, 1]``: a scalar, or a float tensor ``[B]`` (or 0-d, one value for all rows)
        on the logits' device.
        ``0`` samples from all finite logits; ``1`` keeps only the tokens equal to the max.
    temp : float or torch.Tensor
        Temperature ``>= 0``, scalar, ``[B]`` or 0-d; ``0`` is greedy (lowest index among ties), ``inf``
        uniform over the kept set.
    seed, offset : int or torch.Tensor, optional
        Philox key and counter (e.g. request seed and decode step), Python ints, 0-d or ``[B]``
        integer tensors (always 64-bit).  A row with its own seed (a ``[B]`` tensor) draws the same
        token whatever batch it sits in; a scalar seed (int or 0-d tensor) is shared and the row
        index keeps rows independent, as with ``seed=None``, where one seed is drawn on the device
        from ``generator`` (no host sync).
    generator : torch.Generator, optional
        Source of the seed when ``seed`` is None (default: torch's generator of that device);
        passing both is a ``ValueError``.
    temperature_first : bool
        Threshold on the tempered distribution, ``logit >= max + temp * ln(p_base)``
        (Hugging Face / vLLM / SGLang order), instead of the paper's untempered one.  Applies to
        top-p's mass too (``softmax(logits / temp)`` instead of ``softmax(logits)``).
    top_k : int or torch.Tensor, optional
        Keep only the tokens at least the ``top_k``-th largest logit (ties with it kept).  None, 0
        or ``>= V``: off.  A scalar or an integer tensor ``[B]`` (0-d: every row); a per-row value
        below 0 makes that row invalid.
    top_p : float or torch.Tensor, optional
        Keep the smallest value-prefix of the tokens whose mass reaches ``top_p`` (a tie at the
        boundary kept whole), over the top-k set (and over the min-p set too with
        ``top_p_after_min_p``).  None or 1: off.  A scalar in ``(0, 1]`` or a float tensor ``[B]``; a
        per-row value NaN, ``<= 0`` or above 1 makes that row invalid.
    top_p_after_min_p : bool
        Take top-p's mass over the min-p set as well (vLLM: min-p, top-k, then top-p); default:
        over the top-k set only (Hugging Face, SGLang, llama.cpp: top-k, top-p, then min-p).
    return_logprobs : bool
        Also return each token's log-probability under the final (truncated, tempered) distribution.
    backend : {"auto", "triton", "torch"}
        ``"auto"``: Triton on CUDA, torch on CPU.  ``"triton"`` on CPU needs ``TRITON_INTERPRET=1``.
    strict : bool
        Read the tensor values before sampling and raise ``ValueError`` naming the rows whose
        ``p_base`` / ``temp`` is invalid or whose logits hold no finite value (this syncs with the
        device; the default path never does).

    Returns
    -------
    torch.Tensor or tuple of torch.Tensor
        int64 tokens ``[B]`` (0-d for 1-D logits) on the logits' device; with ``return_logprobs``
        also float32 log-probabilities of the same shape (0 for greedy rows).

    Raises
    ------
    TypeError
        A wrong kind of argument or dtype, a flag that is not a bool.
    ValueError
        A wrong shape or device, a vocabulary above ``params.MAX_VOCAB``, a scalar ``p_base``
        outside ``[0, 1]``, a scalar ``temp`` below 0 or NaN, ``seed`` together with ``generator``;
        with ``strict=True`` also bad tensor values (see Notes).

    Notes
    -----
    Invalid rows: tensor values are not read on the default path (no host sync), so a row whose
    ``p_base`` is NaN, below 0 or above 1, or whose ``temp`` is NaN or below 0, is not an error: it
    gets token ``-1`` and log-prob NaN, as does a row with no finite logit, and the other rows are
    unaffected.  Check for ``-1`` or pass ``strict=True`` to raise instead.

    Examples
    --------
    >>> import torch, minp_kernels
    >>> logits = torch.tensor([[2.0, 1.9, -3.0, 0.5]])
    >>> tokens = minp_kernels.sample(logits, p_base=0.1, temp=1.0, seed=1234)
    >>> tokens.shape, tokens.dtype, tokens.item() in (0, 1, 3)
    (torch.Size([1]), torch.int64, True)
    """
    logits_2d, was_1d = validate_logits(logits)
    backend = validate_backend(backend, logits_2d)
    temperature_first = validate_flag("temperature_first", temperature_first)
    return_logprobs = validate_flag("return_logprobs", return_logprobs)
    strict = validate_flag("strict", strict)
    params = validate_params(logits_2d, p_base, temp, seed, offset, generator, top_k, top_p, top_p_after_min_p)
    if strict:
        check_values_strict(logits_2d, params)
    if logits_2d.shape[0] == 0:
        tokens, logprobs = (torch.empty(0, dtype=torch.int64, device=logits_2d.device),
                            torch.empty(0, dtype=torch.float32, device=logits_2d.device))
    elif torch.compiler.is_compiling():  # opaque to dynamo / inductor: no graph break, same tokens
        tokens, logprobs = call_op(logits_2d, params, temperature_first, return_logprobs, backend)
    else:
        tokens, logprobs = run_backend(backend, logits_2d, params, temperature_first, return_logprobs)
    if was_1d:
        tokens = tokens[0]
        logprobs = logprobs[0] if logprobs is not None else None
    return (tokens, logprobs) if return_logprobs else tokens


def _choices(name: str, value: bool | tuple[bool, ...]) -> tuple[bool, ...]:
    values = value if isinstance(value, tuple) else (value,)
    return tuple(validate_flag(name, v) for v in values)


def warmup(vocab_sizes: int | Sequence[int], dtypes: torch.dtype | Sequence[torch.dtype] = torch.bfloat16,
           max_batch: int = 256, *, per_row: bool | tuple[bool, ...] = True,
           temperature_first: bool | tuple[bool, ...] = False, return_logprobs: bool | tuple[bool, ...] = False,
           filters: bool | tuple[bool, ...] = False, device: torch.device | str | None = None) -> int:
    """Compile every kernel variant a server will launch, before it serves.

    The Triton kernel compiles a variant on first use of each plan class (rows split over
    programs or not; see :func:`minp_kernels.launch.launch_plan`), logits dtype, kind of argument
    and flag set.  This launches one small batch of each so that no request waits for a compile.

    Parameters
    ----------
    vocab_sizes : int or sequence of int
        The vocabularies served (the logits' ``V``).
    dtypes : torch.dtype or sequence of torch.dtype
        Logits dtypes served: float32, float16, bfloat16.
    max_batch : int
        The largest batch the server samples at once; every batch size up to it is covered.
    per_row : bool or tuple of bool
        ``True``: ``p_base``, ``temp``, ``seed`` and ``offset`` come as ``[B]`` tensors (the serving
        case); ``False``: as Python scalars; ``(True, False)``: both.  ``seed=None`` (a drawn seed)
        is a third kind, compiled on its first use.
    temperature_first, return_logprobs : bool or tuple of bool
        The flag values served; a tuple covers each.
    filters : bool or tuple of bool
        Whether requests use top-k / top-p (the kernel then takes a per-row threshold: a variant of
        its own); ``(False, True)``: both.  0-d tensor arguments compile their own variant on first
        use, as ``seed=None`` does.
    device : torch.device or str, optional
        Default: the current CUDA device.

    Returns
    -------
    int
        The number of launches made (one per variant).  On a device without the Triton backend
        (the CPU) nothing is compiled and 0 is returned.

    Examples
    --------
    >>> import minp_kernels, torch
    >>> minp_kernels.warmup(128256, (torch.bfloat16, torch.float32), max_batch=512)  # doctest: +SKIP
    """
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch: expected an int >= 1, got {max_batch!r}")
    vocab_sizes = (vocab_sizes,) if isinstance(vocab_sizes, int) else tuple(vocab_sizes)
    dtypes = (dtypes,) if isinstance(dtypes, torch.dtype) else tuple(dtypes)
    flag_sets = list(itertools.product(_choices("per_row", per_row), _choices("temperature_first", temperature_first),
                                       _choices("return_logprobs", return_logprobs), _choices("filters", filters)))
    device = torch.device(device) if device is not None else (
        torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu"))
    if device.type != "cuda":
        return 0
    from .launch import plan_classes

    launches = 0
    for vocab, dtype in itertools.product(vocab_sizes, dtypes):
        validate_logits(torch.empty(1, vocab, dtype=dtype, device="meta"))
        for batch in plan_classes(device, vocab, dtype.itemsize, max_batch).values():
            # Real rows (a row stride of V, as served, selects the variant too), one kept token each.
            logits = torch.zeros(batch, vocab, dtype=dtype, device=device)
            logits[:, 0] = 10.0
            rows = torch.arange(batch, device=device)
            for tensors, order, logprobs, filtered in flag_sets:
                params = ((torch.full((batch,), 0.1, device=device), torch.ones(batch, device=device), rows, rows)
                          if tensors else (0.1, 1.0, 0, 0))
                top_k = (torch.full((batch,), 50, device=device) if tensors else 50) if filtered else None
                sample(logits, *params[:2], seed=params[2], offset=params[3], temperature_first=order,
                       return_logprobs=logprobs, top_k=top_k, backend="triton")
                launches += 1
    return launches
