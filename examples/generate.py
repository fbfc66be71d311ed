"""Generate text with min-p sampling and compare its speed with Hugging Face's own sampler.

Runs `minp_kernels.integrations.hf.generate` (a KV-cached decode loop drawing every token with
`minp_kernels.sample`) and `model.generate(do_sample=True, min_p=..., temperature=...)` on the same
model, prompt and settings, and prints the tokens/s of each side by side, plus the share of our
decode step spent in the sampler.

  python examples/generate.py --tiny                        # a small random Llama: any machine, seconds
  python examples/generate.py --model PATH --prompt "..."   # a Hugging Face causal LM you have

Both decode exactly --max-new-tokens steps per row, so the two figures count the same work; each
figure is the median of --repeats runs, the two paths taking turns so that a busy machine slows both alike.
"""

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from minp_kernels.integrations.hf import generate, tiny_llama

TINY_VOCAB = 32000  # a real vocabulary size (Llama 2): the sampler works on rows as wide as a real model's


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="local path or hub name of a causal LM (loaded with AutoModelForCausalLM)")
    source.add_argument("--tiny", action="store_true",
                        help=f"a small random Llama (vocabulary {TINY_VOCAB}) built from a config: no download")
    parser.add_argument("--prompt", default="The quick brown fox",
                        help="prompt text for --model; --tiny uses 8 random ids (default: %(default)r)")
    parser.add_argument("--p-base", type=float, default=0.1, help="min-p base in [0, 1] (default: %(default)s)")
    parser.add_argument("--temp", type=float, default=1.5, help="temperature > 0 (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="decode steps per row (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=1,
                        help="copies of the prompt, each with its own seed (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of row 0; row b uses seed + b (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of each path, alternating; medians are printed (default: %(default)s)")
    parser.add_argument("--paper-order", action="store_true",
                        help="ours applies min-p before temperature, as the paper does (default: Hugging Face's "
                             "order, temperature first, the same as model.generate)")
    return parser.parse_args(argv)


def seconds_of(run: Callable[[], torch.Tensor], device: str) -> tuple[torch.Tensor, float]:
    """``(output, wall seconds)`` of one synchronised call."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    out = run()
    sync()
    return out, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.tiny:
        model, tokenizer = tiny_llama(TINY_VOCAB), None
        input_ids = torch.randint(0, TINY_VOCAB, (1, 8), generator=torch.Generator().manual_seed(args.seed))
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype="auto").eval()
        input_ids = tokenizer(args.prompt, return_tensors="pt").input_ids
    model = model.to(device)
    input_ids = input_ids.to(device).expand(args.batch, -1)
    eos = getattr(tokenizer, "eos_token_id", None)
    pad = eos if eos is not None else 0

    def ours(steps: int, timing: bool = False):
        return generate(model, input_ids, steps, args.p_base, args.temp, args.seed,
                        temperature_first=not args.paper_order, eos_token_id=eos, return_timing=timing)

    def theirs(steps: int) -> torch.Tensor:
        # top_k=0 / top_p=1.0: only temperature and min-p, as ours; min_new_tokens: no early stop at EOS.
        return model.generate(input_ids, do_sample=True, min_p=args.p_base, temperature=args.temp, top_k=0,
                              top_p=1.0, max_new_tokens=steps, min_new_tokens=steps, pad_token_id=pad)

    ours(2), theirs(2)  # warm-up: kernel compile, allocator and cache set-up on both paths
    ours_runs, sampler_runs, hf_runs = [], [], []
    for _ in range(args.repeats):
        (ids, (_, sampler)), seconds = seconds_of(lambda: ours(args.max_new_tokens, timing=True), device)
        ours_runs.append(seconds)
        sampler_runs.append(sampler)
        hf_ids, seconds = seconds_of(lambda: theirs(args.max_new_tokens), device)
        hf_runs.append(seconds)
    ours_s, sampler, hf_s = (statistics.median(runs) for runs in (ours_runs, sampler_runs, hf_runs))

    new = ids[:, input_ids.shape[1]:]
    for row in new:
        print(tokenizer.decode(row) if tokenizer else row.tolist())
    tokens = args.batch * args.max_new_tokens
    print(f"{device}, B={args.batch}, {args.max_new_tokens} new tokens per row, p_base={args.p_base}, "
          f"temp={args.temp}, median of {args.repeats} runs each")
    print(f"  minp_kernels.integrations.hf.generate: {tokens / ours_s:8.1f} tokens/s (sampler "
          f"{100 * sampler / ours_s:.1f}% of decode time, {1e6 * sampler / args.max_new_tokens:.0f} us per step)")
    print(f"  model.generate(do_sample=True, min_p): {tokens / hf_s:8.1f} tokens/s "
          f"({hf_ids.shape[1] - input_ids.shape[1]} new tokens per row)")


if __name__ == "__main__":
    main()
