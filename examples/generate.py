"""Generate text with min-p sampling: ``python examples/generate.py --tiny`` (random model, runs
anywhere) or ``--model PATH_OR_NAME --prompt "..."`` for a real Hugging Face model you have.

Prints tokens/s and the sampler's share of each decode step.
"""

import argparse

import torch

from minp_kernels.integrations.hf import generate, tiny_llama


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="local path or hub name of a causal LM")
    source.add_argument("--tiny", action="store_true", help="a small random Llama built from a config")
    parser.add_argument("--prompt", default="The quick brown fox")
    parser.add_argument("--p-base", type=float, default=0.1)
    parser.add_argument("--temp", type=float, default=1.5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1, help="copies of the prompt, each with its own seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paper-order", action="store_true", help="min-p before temperature (default: HF order)")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    if args.tiny:
        model, tokenizer = tiny_llama(), None
        input_ids = torch.randint(0, 256, (1, 8), generator=torch.Generator().manual_seed(args.seed))
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype="auto").eval()
        input_ids = tokenizer(args.prompt, return_tensors="pt").input_ids
    model = model.to(device)
    input_ids = input_ids.to(device).expand(args.batch, -1)
    generate(model, input_ids, 2, args.p_base, args.temp, args.seed)  # warm-up: kernel compile, caches
    ids, (total, sampler) = generate(model, input_ids, args.max_new_tokens, args.p_base, args.temp, args.seed,
                                     temperature_first=not args.paper_order,
                                     eos_token_id=getattr(tokenizer, "eos_token_id", None), return_timing=True)
    new = ids[:, input_ids.shape[1]:]
    for row in new:
        print(tokenizer.decode(row) if tokenizer else row.tolist())
    print(f"{new.numel() / total:.1f} tokens/s on {device}; sampler {100 * sampler / total:.1f}% of decode time "
          f"({1e6 * sampler / args.max_new_tokens:.0f} us per step)")


if __name__ == "__main__":
    main()
