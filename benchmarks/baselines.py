"""The peers' sampling paths, as the benchmarks time them and the tests check them.

Every function takes ``(logits [B, V], p_base, temp, ...)`` with keyword-friendly defaults
(:data:`P_BASE`, :data:`TEMP`) and returns int64 tokens ``[B]``.  All of them apply the temperature
before min-p (the threshold ``x >= max + temp * ln(p_base)`` on the raw logits), as vLLM, SGLang and
Hugging Face do, so their kept set is ``minp_kernels.reference.kept_mask(..., temperature_first=True)``.

- :func:`vllm_style`: vLLM v1's torch path (softmax, ``amax``, mask, exponential race).
- :func:`hf_warpers`: Hugging Face ``TemperatureLogitsWarper`` + ``MinPLogitsWarper`` + softmax +
  ``torch.multinomial`` (transformers imported on first use).
- :func:`mrv2_triton`: a Triton pair in the style of vLLM's Model Runner V2 sampler, written here
  from its description: a min-p kernel (one program per row: a max pass, then a pass storing the
  tempered logits, ``-inf`` below ``max + ln(min_p)``, into a float32 copy) and a Gumbel kernel
  (``tl.rand`` keyed by seed and token id, an argmax per block of a row), then a torch reduction over
  the blocks.  Runs on CUDA and under ``TRITON_INTERPRET=1``.
- :func:`gumbel_max`: plain Gumbel-max without min-p (the speed of light of fused sampling).
- :func:`logprobs_after_sampling`: the log-prob path of serving stacks (vLLM's ``raw_logprobs`` /
  ``processed_logprobs``): a full ``log_softmax``, ``topk`` and ``gather`` beside HF-style sampling.
- :func:`hf_filters` and :func:`vllm_style_filters`: the same two paths with top-k and top-p
  (Hugging Face's ``TopKLogitsWarper`` / ``TopPLogitsWarper``; vLLM's sort-based
  ``apply_top_k_top_p``, written here from its source), for the filter benchmark.
- :func:`flashinfer_min_p`: FlashInfer's softmax + ``min_p_sampling_from_probs`` when it imports.
"""

import functools

import torch
import triton
import triton.language as tl

P_BASE = 0.1
TEMP = 1.0


def _per_row(value):
    """A per-row tensor ``[B]`` as a column ``[B, 1]`` that broadcasts over the vocabulary."""
    return value.unsqueeze(-1) if isinstance(value, torch.Tensor) else value


# ------------------------------------------------------------------------------------------------
# vLLM v1 torch path, plain Gumbel-max, FlashInfer
# ------------------------------------------------------------------------------------------------
def vllm_style(logits: torch.Tensor, p_base: float | torch.Tensor = P_BASE, temp: float | torch.Tensor = TEMP, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """vLLM v1's torch min-p path: float32, divide by ``temp``, softmax, drop ``probs < p_base * amax``,
    then the exponential race ``argmax(probs / Exp(1))`` (a Gumbel-max draw in probability space).

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]`` logits, any float dtype.
    p_base, temp : float or torch.Tensor
        Min-p base and temperature (``> 0``), scalars or per-row tensors ``[B]``.
    generator : torch.Generator, optional
        Source of the exponential noise (default: torch's generator of the device).

    Returns
    -------
    torch.Tensor
        int64 tokens ``[B]``.
    """
    probs = torch.softmax(logits.float() / _per_row(temp), dim=-1)
    probs = probs.masked_fill(probs < _per_row(p_base) * probs.amax(dim=-1, keepdim=True), 0.0)
    return probs.div_(torch.empty_like(probs).exponential_(generator=generator)).argmax(dim=-1)


def gumbel_max(logits: torch.Tensor, temp: float | torch.Tensor = TEMP, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain Gumbel-max sampling at temperature ``temp``, no min-p: ``argmax(x / temp + G)``."""
    x = logits.float() / _per_row(temp)
    uniform = torch.rand(x.shape, device=x.device, generator=generator)
    return (x - torch.log(-torch.log(uniform))).argmax(dim=-1)


def flashinfer_min_p(logits: torch.Tensor, p_base: float = P_BASE, temp: float = TEMP) -> torch.Tensor:
    """FlashInfer: ``sampling.softmax(logits, temperature)`` then ``min_p_sampling_from_probs``."""
    import flashinfer

    probs = flashinfer.sampling.softmax(logits.float(), temperature=temp)
    return flashinfer.sampling.min_p_sampling_from_probs(probs, p_base)


# ------------------------------------------------------------------------------------------------
# Hugging Face transformers: warpers, softmax, multinomial
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _hf_warper_list(p_base: float, temp: float):
    """The warpers ``generate(do_sample=True, temperature=temp, min_p=p_base)`` builds once per call
    (no temperature warper at ``temp == 1``, as ``generate`` does)."""
    from transformers.generation.logits_process import LogitsProcessorList, MinPLogitsWarper, TemperatureLogitsWarper

    warpers = LogitsProcessorList()
    if temp != 1.0:
        warpers.append(TemperatureLogitsWarper(temp))
    warpers.append(MinPLogitsWarper(p_base))
    return warpers


def hf_warpers(logits: torch.Tensor, p_base: float = P_BASE, temp: float = TEMP, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Hugging Face's sampling step: float32 logits, ``TemperatureLogitsWarper`` + ``MinPLogitsWarper``,
    softmax, ``torch.multinomial`` (what ``generate(do_sample=True, min_p=...)`` runs per token).

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]`` logits, any float dtype (converted to float32 as ``generate`` does).
    p_base, temp : float
        Min-p base and temperature (``> 0``); the warpers take Python floats.
    generator : torch.Generator, optional
        Source of the multinomial draw.

    Returns
    -------
    torch.Tensor
        int64 tokens ``[B]``.
    """
    scores = _hf_warper_list(float(p_base), float(temp))(None, logits.float())
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def hf_filters(logits: torch.Tensor, p_base: float = P_BASE, temp: float = TEMP, *, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hugging Face's ``generate(do_sample=True, temperature, top_k, top_p, min_p)`` step: its warpers
    in its order (temperature, top-k, top-p, min-p), softmax, ``torch.multinomial``."""
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    scores = logits.float()
    if temp != 1.0:
        scores = TemperatureLogitsWarper(temp)(None, scores)
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None and top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    if p_base > 0:
        scores = MinPLogitsWarper(p_base)(None, scores)
    return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1, generator=generator).squeeze(1)


def logprobs_after_sampling(logits: torch.Tensor, p_base: float = P_BASE, temp: float = TEMP, *, top_n: int = 20,
                            processed: bool = False) -> tuple[torch.Tensor, ...]:
    """HF-style min-p sampling (:func:`_hf_warper_list`, softmax, multinomial) plus log-probs as vLLM
    computes them after sampling: ``log_softmax`` over ``[B, V]`` (of the raw logits, or of the
    processed ones with ``processed``), ``topk(top_n)`` and ``gather`` of the sampled ids.  Returns
    (tokens, their log-probs, top log-probs, top ids)."""
    raw = logits.float()
    scores = _hf_warper_list(float(p_base), float(temp))(None, raw)
    tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)
    logprobs = torch.log_softmax(scores if processed else raw, dim=-1)
    top = logprobs.topk(top_n, dim=-1)
    return tokens[:, 0], logprobs.gather(1, tokens)[:, 0], top.values, top.indices


def speculative_full_softmax(target_logits: torch.Tensor, draft_ids: torch.Tensor, p_base: float = P_BASE,
                             temp: float = TEMP, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rejection sampling of one-hot drafts the direct way: full min-p softmaxes over ``[B, K+1, V]``
    (temperature first), accept ``d_j`` when ``u < p_j(d_j)``, a multinomial from ``p_j`` without
    ``d_j`` at the first rejection, else from ``p_K``.  Returns the ``[B, K+1]`` tokens (-1 after)."""
    probs = torch.softmax(target_logits.float() / temp, dim=-1)
    probs = probs.masked_fill(probs < p_base * probs.amax(dim=-1, keepdim=True), 0.0)
    probs = probs / probs.sum(dim=-1, keepdim=True)
    batch, drafts = draft_ids.shape
    p_draft = probs[:, :drafts].gather(2, draft_ids[..., None])[..., 0]
    uniform = torch.rand(batch, drafts, generator=generator, device=target_logits.device)
    accepted = (uniform < p_draft).long().cumprod(dim=1).sum(dim=1)
    rows = torch.arange(batch, device=target_logits.device)
    final = probs[rows, accepted].clone()
    rejected = accepted < drafts
    final[rows[rejected], draft_ids[rows[rejected], accepted[rejected]]] = 0.0
    token = torch.multinomial(final / final.sum(dim=-1, keepdim=True), 1, generator=generator)[:, 0]
    out = torch.where(torch.arange(drafts + 1, device=target_logits.device)[None, :] < accepted[:, None],
                      torch.cat([draft_ids, draft_ids[:, :1]], dim=1), -1)
    return out.scatter_(1, accepted[:, None], token[:, None])


def vllm_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor | None, top_p: torch.Tensor | None) -> torch.Tensor:
    """vLLM v1's torch ``apply_top_k_top_p``: one ascending sort, the k-th value's mask, the
    cumulative softmax's ``<= 1 - p`` mask (the largest token always kept), scattered back."""
    logits_sort, logits_idx = logits.sort(dim=-1, descending=False)
    if top_k is not None:
        kth = logits_sort.gather(1, (logits_sort.size(1) - top_k.to(torch.long)).unsqueeze(1))
        logits_sort.masked_fill_(logits_sort < kth, float("-inf"))
    if top_p is not None:
        probs_sum = torch.cumsum(logits_sort.softmax(dim=-1), dim=-1)
        top_p_mask = probs_sum <= 1 - top_p.unsqueeze(1)
        top_p_mask[:, -1] = False
        logits_sort.masked_fill_(top_p_mask, float("-inf"))
    return logits_sort.scatter(dim=-1, index=logits_idx, src=logits_sort)


def vllm_style_filters(logits: torch.Tensor, p_base: float = P_BASE, temp: float = TEMP, *,
                       top_k: int | None = None, top_p: float | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """vLLM v1's order: temperature, min-p (softmax, ``amax``, mask), top-k / top-p
    (:func:`vllm_top_k_top_p`), then the exponential race over the softmax."""
    x = logits.float() / _per_row(temp)
    if p_base > 0:
        probs = torch.softmax(x, dim=-1)
        x = x.masked_fill(probs < _per_row(p_base) * probs.amax(dim=-1, keepdim=True), float("-inf"))
    batch = x.shape[0]
    k = torch.full((batch,), top_k, device=x.device) if top_k else None
    p = torch.full((batch,), top_p, device=x.device) if top_p is not None and top_p < 1.0 else None
    if k is not None or p is not None:
        x = vllm_top_k_top_p(x, k, p)
    probs = torch.softmax(x, dim=-1)
    return probs.div_(torch.empty_like(probs).exponential_(generator=generator)).argmax(dim=-1)


# ------------------------------------------------------------------------------------------------
# vLLM Model Runner V2 style Triton pair (our code, from the description of that design)
# ------------------------------------------------------------------------------------------------
MRV2_MIN_P_BLOCK = 1024  # columns per loop step of the one-program-per-row min-p kernel
MRV2_GUMBEL_BLOCK = 1024  # columns per program of the Gumbel kernel
MRV2_NUM_WARPS = 4


@triton.jit
def _mrv2_min_p_kernel(logits_ptr, logits_row_stride, masked_ptr, masked_row_stride, n_cols,
                       min_p_arr_ptr, min_p_val, temp_arr_ptr, temp_val,
                       HAS_MIN_P_ARR: tl.constexpr, HAS_TEMP_ARR: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    """One program per row: the row max, then ``x / temp`` or ``-inf`` below ``max / temp + ln(min_p)``.

    Reads the row twice (``2 * n_cols * itemsize`` bytes) and writes a float32 copy (``4 * n_cols``).
    """
    row = tl.program_id(0).to(tl.int64)
    row_logits_ptr = logits_ptr + row * logits_row_stride
    row_masked_ptr = masked_ptr + row * masked_row_stride
    if HAS_MIN_P_ARR:
        min_p = tl.load(min_p_arr_ptr + row).to(tl.float32)
    else:
        min_p = min_p_val
    if HAS_TEMP_ARR:
        temp = tl.load(temp_arr_ptr + row).to(tl.float32)
    else:
        temp = temp_val

    # Pass 1: an element-wise running max over the row's blocks, reduced once at the end.
    running_max = tl.full([BLOCK_SIZE], float("-inf"), tl.float32)
    for start in range(0, n_cols, BLOCK_SIZE):
        cols = start + tl.arange(0, BLOCK_SIZE)
        x = tl.load(row_logits_ptr + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        running_max = tl.maximum(running_max, x)
    # Temperature first, as vLLM applies it: min-p acts on the tempered logits.
    threshold = tl.max(running_max, axis=0) / temp + tl.log(min_p)

    # Pass 2: the tempered logits with everything below the threshold set to -inf.
    for start in range(0, n_cols, BLOCK_SIZE):
        cols = start + tl.arange(0, BLOCK_SIZE)
        in_row = cols < n_cols
        x = tl.load(row_logits_ptr + cols, mask=in_row, other=float("-inf")).to(tl.float32) / temp
        tl.store(row_masked_ptr + cols, tl.where(x >= threshold, x, float("-inf")), mask=in_row)


@triton.jit
def _mrv2_gumbel_kernel(masked_ptr, masked_row_stride, n_cols, seed_arr_ptr, seed_val,
                        block_max_ptr, block_argmax_ptr, n_blocks,
                        HAS_SEED_ARR: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    """Program ``(row, block)``: the best ``x + Gumbel`` of one block of the masked row, and its token.

    The noise of token ``t`` is ``tl.rand(seed of the row, t)``, so it does not depend on the grid.
    """
    row = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    cols = block * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    in_row = cols < n_cols
    x = tl.load(masked_ptr + row * masked_row_stride + cols, mask=in_row, other=float("-inf"))
    if HAS_SEED_ARR:
        seed = tl.load(seed_arr_ptr + row)
    else:
        seed = seed_val
    uniform = tl.rand(seed, cols)
    # uniform == 0 gives -inf noise: such a token loses, as it would with a tiny positive uniform.
    score = x - tl.log(-tl.log(uniform))
    best_score, best_col = tl.max(score, axis=0, return_indices=True, return_indices_tie_break_left=True)
    tl.store(block_max_ptr + row * n_blocks + block, best_score)
    tl.store(block_argmax_ptr + row * n_blocks + block, block * BLOCK_SIZE + best_col)


def _scalar_or_array(value, dummy, dtype):
    """``(array pointer, scalar value, has_array)`` kernel arguments for a scalar-or-``[B]`` parameter."""
    if isinstance(value, torch.Tensor):
        return value.contiguous(), 0, True
    return dummy, dtype(value), False


def mrv2_triton(logits: torch.Tensor, p_base: float | torch.Tensor = P_BASE, temp: float | torch.Tensor = TEMP, *,
                seed: int | torch.Tensor = 0) -> torch.Tensor:
    """vLLM Model Runner V2 style min-p sampling: two Triton kernels and a torch reduction.

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]`` logits (unit stride along the vocabulary), any float dtype, on CUDA (or CPU under
        ``TRITON_INTERPRET=1``).
    p_base, temp : float or torch.Tensor
        Min-p base in ``[0, 1]`` and temperature ``> 0``, scalars or per-row tensors ``[B]``.
    seed : int or torch.Tensor
        One seed for the batch or an int64 tensor ``[B]`` of per-row seeds.

    Returns
    -------
    torch.Tensor
        int64 tokens ``[B]``.
    """
    if logits.dim() != 2 or logits.stride(-1) != 1:
        raise ValueError(f"logits: expected a [B, V] tensor with unit column stride, got shape "
                         f"{tuple(logits.shape)} and strides {logits.stride()}")
    if not isinstance(temp, torch.Tensor) and not temp > 0:
        raise ValueError(f"temp: expected > 0 (this baseline has no greedy path), got {temp}")
    batch, vocab = logits.shape
    masked = torch.empty((batch, vocab), device=logits.device, dtype=torch.float32)
    min_p_arr, min_p_val, has_min_p_arr = _scalar_or_array(p_base, masked, float)
    temp_arr, temp_val, has_temp_arr = _scalar_or_array(temp, masked, float)
    _mrv2_min_p_kernel[(batch,)](
        logits_ptr=logits, logits_row_stride=logits.stride(0), masked_ptr=masked, masked_row_stride=vocab,
        n_cols=vocab, min_p_arr_ptr=min_p_arr, min_p_val=min_p_val, temp_arr_ptr=temp_arr, temp_val=temp_val,
        HAS_MIN_P_ARR=has_min_p_arr, HAS_TEMP_ARR=has_temp_arr, BLOCK_SIZE=MRV2_MIN_P_BLOCK,
        num_warps=MRV2_NUM_WARPS)

    n_blocks = triton.cdiv(vocab, MRV2_GUMBEL_BLOCK)
    block_max = torch.empty((batch, n_blocks), device=logits.device, dtype=torch.float32)
    block_argmax = torch.empty((batch, n_blocks), device=logits.device, dtype=torch.int64)
    seed_arr, seed_val, has_seed_arr = _scalar_or_array(seed, block_argmax, int)
    _mrv2_gumbel_kernel[(batch, n_blocks)](
        masked_ptr=masked, masked_row_stride=vocab, n_cols=vocab, seed_arr_ptr=seed_arr, seed_val=seed_val,
        block_max_ptr=block_max, block_argmax_ptr=block_argmax, n_blocks=n_blocks,
        HAS_SEED_ARR=has_seed_arr, BLOCK_SIZE=MRV2_GUMBEL_BLOCK, num_warps=MRV2_NUM_WARPS)
    # Second, small reduction over the blocks of each row.
    best_block = block_max.argmax(dim=1, keepdim=True)
    return block_argmax.gather(1, best_block).squeeze(1)
