"""vLLM / SGLang-style adapter.

Their samplers hold ``logits [B, V]`` and per-request tensors (``min_p``, ``temperature``, seeds)
and apply temperature before min-p. :func:`min_p_sample` takes exactly that and returns the
sampled ids in one fused call, replacing the softmax / amax / mask / exponential-race sequence.
"""

import torch

from ..api import sample

GREEDY_EPS = 1e-5  # vLLM treats temperature below this as greedy


def min_p_sample(logits, min_p, temperature, seeds, steps, *, paper_order=False, return_logprobs=False):
    """Min-p sample with per-request parameters, vLLM / SGLang order by default.

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]`` float32 / float16 / bfloat16 (vLLM hands fp32).
    min_p, temperature : torch.Tensor
        ``[B]`` per-request values (float); temperatures below ``1e-5`` are greedy, as in vLLM.
    seeds, steps : torch.Tensor
        ``[B]`` int64 per-request seeds and decode steps (device tensors: CUDA-graph safe).
    paper_order : bool
        Apply min-p to the untempered distribution (the paper's order) instead of theirs.

    Returns
    -------
    torch.Tensor
        int64 ``[B]`` sampled ids (and float32 log-probs with ``return_logprobs``).

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[3.0, 2.9, -5.0], [0.0, 9.0, 1.0]])
    >>> ids = min_p_sample(logits, torch.tensor([0.1, 0.1]), torch.tensor([1.0, 0.0]),
    ...                    torch.tensor([1, 2]), torch.tensor([0, 0]))
    >>> ids[1].item()
    1
    """
    temperature = torch.where(temperature < GREEDY_EPS, 0.0, temperature)
    return sample(logits, min_p, temperature, seed=seeds, offset=steps, temperature_first=not paper_order,
                  return_logprobs=return_logprobs)
