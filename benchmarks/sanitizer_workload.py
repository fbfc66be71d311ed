"""The workload compute-sanitizer runs (memcheck, racecheck; see gpu_check.sh): every kernel path once.

Odd vocabularies (masked tails), one long row (split over programs, then merged), many rows, NaN and
-inf logits, a row with no finite logit, both orders, log-probs, scalar and per-row parameters, and
per-row parameters outside their domain (invalid rows: token -1).  Needs CUDA.
"""

import torch

import minp_kernels


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("sanitizer_workload: needs a CUDA device (torch sees none)")
    gen = torch.Generator("cuda").manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        for batch, vocab in ((3, 5003), (1, 40000), (64, 1000)):  # odd V, split + merge, many rows
            logits = (torch.randn(batch, vocab, device="cuda", generator=gen) * 3).to(dtype)
            logits[0, :7] = float("nan")
            if batch > 2:
                logits[2] = float("-inf")
            seeds = torch.arange(batch, device="cuda")
            for temperature_first in (False, True):
                minp_kernels.sample(logits, 0.1, 1.2, seed=seeds, temperature_first=temperature_first,
                                    return_logprobs=True)
            p_base = torch.rand(batch, device="cuda", generator=gen)
            temp = torch.rand(batch, device="cuda", generator=gen) * 2
            minp_kernels.sample(logits, p_base, temp, seed=3)
            # Out-of-domain per-row values: NaN / negative / > 1 p_base, NaN / negative temp.
            p_base[0], temp[-1] = float("nan"), -1.0
            if batch > 2:
                p_base[1], temp[1] = 1.5, float("nan")
            minp_kernels.sample(logits, p_base, temp, seed=seeds, return_logprobs=True)
    torch.cuda.synchronize()
    print("sanitizer_workload: done")


if __name__ == "__main__":
    main()
