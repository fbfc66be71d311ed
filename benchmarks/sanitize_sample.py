"""Small sampling workload for compute-sanitizer (memcheck, racecheck): every kernel path once."""

import torch

import minp_kernels

for dtype in (torch.float32, torch.bfloat16):
    for batch, vocab in ((3, 5003), (1, 40000), (64, 1000)):  # odd V, split + merge, many rows
        logits = (torch.randn(batch, vocab, device="cuda") * 3).to(dtype)
        logits[0, :7] = float("nan")
        if batch > 2:
            logits[2] = float("-inf")
        for tf in (False, True):
            minp_kernels.sample(logits, 0.1, 1.2, seed=torch.arange(batch, device="cuda"), temperature_first=tf,
                                return_logprobs=True)
        minp_kernels.sample(logits, torch.rand(batch, device="cuda"), torch.rand(batch, device="cuda") * 2, seed=3)
torch.cuda.synchronize()
print("sanitize_sample: done")
