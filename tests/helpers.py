"""Logit generators and small utilities shared by the tests."""

import torch

from minp_kernels._validation import validate_logits, validate_params
from minp_kernels.launch import sample_triton
from minp_kernels.torch_sampler import sample_torch


def lm_like_logits(batch, vocab, dtype=torch.float32, device="cpu", seed=0):
    """Gaussian logits with an LM-like spread (std 3), every third row peaked on a few tokens."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=gen) * 3.0
    peaked = torch.arange(batch) % 3 == 0
    hot = torch.randint(0, vocab, (batch, 3), generator=gen)
    boost = torch.zeros(batch, vocab).scatter_(1, hot, torch.rand(batch, 3, generator=gen) * 12 + 4)
    x = torch.where(peaked[:, None], x + boost, x)
    return x.to(dtype=dtype, device=device)


def both_backends(logits, p_base, temp, seed, offset=0, temperature_first=False, return_logprobs=False, **launch):
    """(triton result, torch result) on validated inputs; ``launch`` overrides the kernel plan."""
    logits_2d, _ = validate_logits(logits)
    params = validate_params(logits_2d, p_base, temp, seed, offset, None)
    fused = sample_triton(logits_2d, params, temperature_first, return_logprobs, **launch)
    ref = sample_torch(logits_2d, params, temperature_first, return_logprobs)
    return fused, ref
