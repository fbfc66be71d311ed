"""vLLM / SGLang-style adapter.

Their samplers hold ``logits [B, V]`` and per-request tensors (``min_p``, ``temperature``, seeds)
and apply temperature before min-p. :func:`min_p_sample` takes exactly that and returns the
sampled ids in one fused call, replacing the softmax / amax / mask / exponential-race sequence.
"""

import torch

from .._validation import validate_flag
from ..api import sample

GREEDY_EPS = 1e-5  # vLLM treats temperature below this as greedy


def min_p_sample(logits: torch.Tensor, min_p: torch.Tensor, temperature: torch.Tensor, seeds: torch.Tensor,
                 steps: torch.Tensor, *, top_k: torch.Tensor | None = None, top_p: torch.Tensor | None = None,
                 top_p_after_min_p: bool = True, paper_order: bool = False,
                 return_logprobs: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Min-p sample with per-request parameters, vLLM / SGLang order by default.

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]`` float32 / float16 / bfloat16 (vLLM hands fp32).
    min_p, temperature : torch.Tensor
        ``[B]`` per-request values (float).  Temperatures in ``[0, 1e-5)`` are greedy, as in vLLM.
        A row whose ``min_p`` is NaN or outside ``[0, 1]``, or whose temperature is NaN or
        negative, is invalid: token ``-1`` (log-prob NaN), the other rows unaffected, no host sync.
    seeds, steps : torch.Tensor
        ``[B]`` int64 per-request seeds and decode steps (device tensors: CUDA-graph safe).
    top_k, top_p : torch.Tensor, optional
        ``[B]`` per-request top-k (0: off) and top-p (1.0: off), as :func:`minp_kernels.sample` takes them.
    top_p_after_min_p : bool
        vLLM's order (min-p, top-k, then top-p over what min-p kept), the default; False for
        SGLang's (top-k, top-p, then min-p).
    paper_order : bool
        Apply min-p to the untempered distribution (the paper's order) instead of theirs.
    return_logprobs : bool
        Also return the float32 log-probability of each sampled id.

    Returns
    -------
    torch.Tensor or tuple of torch.Tensor
        int64 ``[B]`` sampled ids (and float32 ``[B]`` log-probs with ``return_logprobs``).

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[3.0, 2.9, -5.0], [0.0, 9.0, 1.0]])
    >>> ids = min_p_sample(logits, torch.tensor([0.1, 0.1]), torch.tensor([1.0, 0.0]),
    ...                    torch.tensor([1, 2]), torch.tensor([0, 0]))
    >>> ids[1].item()
    1
    """
    # Only a valid near-zero temperature becomes greedy: a NaN or negative one stays as it is, so the
    # sampler marks that row invalid instead of quietly answering with the argmax.
    paper_order = validate_flag("paper_order", paper_order)
    greedy = (temperature >= 0) & (temperature < GREEDY_EPS)
    temperature = torch.where(greedy, 0.0, temperature)
    return sample(logits, min_p, temperature, seed=seeds, offset=steps, temperature_first=not paper_order,
                  top_k=top_k, top_p=top_p, top_p_after_min_p=top_p_after_min_p, return_logprobs=return_logprobs)
