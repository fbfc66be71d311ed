"""Serving-stack integration: torch.compile custom op, Hugging Face decode loop and processor,
vLLM / SGLang-style adapter against the vLLM-style torch path of the benchmark."""

import pytest
import torch
from scipy import stats

import minp_kernels
from benchmarks.run import vllm_style
from conftest import DEVICE
from minp_kernels.integrations.serving import min_p_sample
from minp_kernels.reference import kept_mask, minp_probs


def decode_step(logits, seed, offset):
    return minp_kernels.sample(logits * 1.0, 0.1, 1.3, seed=seed, offset=offset, backend="torch",
                               return_logprobs=True)


def test_custom_op_registered_with_fake():
    assert hasattr(torch.ops.minp_kernels, "sample")
    with torch._subclasses.fake_tensor.FakeTensorMode():
        tokens, logprobs = torch.ops.minp_kernels.sample(torch.empty(3, 10), torch.ones(1), torch.ones(1),
                                                         torch.ones(3, dtype=torch.int64),
                                                         torch.zeros(3, dtype=torch.int64), False, False, True, "torch")
    assert tokens.shape == (3,) and tokens.dtype == torch.int64 and logprobs.shape == (3,)


@pytest.mark.parametrize("seed_kind", ["tensor", "int", "drawn"])
def test_torch_compile_fullgraph_matches_eager(seed_kind):
    torch._dynamo.reset()
    logits = torch.randn(6, 500, generator=torch.Generator().manual_seed(1)) * 3
    offset = torch.full((6,), 4)
    if seed_kind == "tensor":
        step, seed = decode_step, torch.arange(6) * 11
    elif seed_kind == "int":
        step, seed = decode_step, 1234
    else:  # seed=None: drawn from torch's default generator inside the graph
        step = lambda x, s, o: minp_kernels.sample(x, 0.1, 1.3, offset=o, backend="torch")  # noqa: E731
        seed = None
    compiled = torch.compile(step, fullgraph=True)  # fullgraph: any graph break raises
    if seed_kind == "drawn":
        traced = compiled(logits, seed, offset)
        assert traced.shape == (6,) and kept_mask(logits, 0.1, 1.3)[torch.arange(6), traced].all()
        return
    eager_tokens, eager_lp = step(logits, seed, offset)
    tokens, lp = compiled(logits, seed, offset)
    assert torch.equal(tokens, eager_tokens) and torch.allclose(lp, eager_lp)
    moved_tokens, _ = compiled(logits, seed, offset + 1)  # a new step draws anew, as eager does
    assert torch.equal(moved_tokens, step(logits, seed, offset + 1)[0])


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_hf_generate_matches_stepwise_replay_and_greedy(backend):
    from minp_kernels.integrations.hf import generate, tiny_llama

    model = tiny_llama().to(DEVICE)
    prompt = torch.randint(0, 256, (3, 5), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    seeds = torch.tensor([7, 8, 9], device=DEVICE)
    ids = generate(model, prompt, 6, 0.05, 1.5, seeds, backend=backend)
    assert ids.shape == (3, 11)
    with torch.no_grad():  # replay: full forward each step (no cache), same seed and step offset
        replay = prompt
        for step in range(6):
            logits = model(replay).logits[:, -1, :]
            tok = minp_kernels.sample(logits, 0.05, 1.5, seed=seeds, offset=step, backend=backend)
            replay = torch.cat([replay, tok[:, None]], dim=1)
    assert torch.equal(ids, replay)
    greedy = generate(model, prompt, 6, 0.05, 0.0, seeds, backend=backend)
    reference = model.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(greedy, reference)


def test_hf_logits_processor_matches_kept_mask():
    from minp_kernels.integrations.hf import MinPLogitsProcessor

    scores = torch.randn(4, 100, generator=torch.Generator().manual_seed(3)) * 3
    for tf in (False, True):
        out = MinPLogitsProcessor(0.1, temp=2.0, temperature_first=tf)(None, scores)
        assert torch.equal(out > float("-inf"), kept_mask(scores, 0.1, 2.0, temperature_first=tf))
        assert torch.equal(out[out > float("-inf")], scores[out > float("-inf")])


def test_serving_adapter_against_vllm_style_path():
    """Same kept set as the vLLM-style path (probs < min_p * amax) and the same distribution:
    a two-sample chi-square on 20,000 draws each, alpha 1e-4."""
    vocab, n = 40, 20_000
    row = torch.randn(vocab, generator=torch.Generator().manual_seed(4)) * 2
    min_p, temp = 0.1, 1.5
    ours = min_p_sample(row.expand(n, -1).to(DEVICE), torch.full((n,), min_p, device=DEVICE),
                        torch.full((n,), temp, device=DEVICE), torch.arange(n, device=DEVICE),
                        torch.zeros(n, dtype=torch.int64, device=DEVICE)).cpu()
    torch.manual_seed(0)
    theirs = vllm_style(row.expand(n, -1), None, True, p_base=min_p, temp=temp)
    probs = torch.softmax(row / temp, -1)
    vllm_kept = probs >= min_p * probs.max()
    assert torch.equal(vllm_kept, kept_mask(row, min_p, temp, temperature_first=True))
    assert vllm_kept[ours].all() and vllm_kept[theirs].all()
    table = torch.stack([torch.bincount(ours, minlength=vocab), torch.bincount(theirs, minlength=vocab)])
    table = table[:, vllm_kept & (minp_probs(row, min_p, temp, temperature_first=True) * n > 5)]
    assert stats.chi2_contingency(table.numpy()).pvalue > 1e-4


def test_serving_adapter_greedy_below_epsilon():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(6)).to(DEVICE)
    ids = min_p_sample(logits, torch.full((3,), 0.1, device=DEVICE), torch.tensor([1e-6, 0.0, 1e-7], device=DEVICE),
                       torch.arange(3, device=DEVICE), torch.zeros(3, dtype=torch.int64, device=DEVICE))
    assert torch.equal(ids, logits.argmax(-1))
