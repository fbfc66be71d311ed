"""Serving-stack integration: torch.compile custom op, Hugging Face decode loop and processor (with no
deprecated transformers API), vLLM / SGLang-style adapter against the vLLM-style torch path of the
benchmarks, and the README's Quickstart run as written."""

import contextlib
import logging
import math
import os
import re
import warnings

import pytest
import torch
from scipy import stats

import minp_kernels
from benchmarks.baselines import vllm_style
from minp_kernels.integrations.serving import min_p_sample
from minp_kernels.reference import kept_mask, minp_probs

from helpers import DEVICE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


@contextlib.contextmanager
def no_deprecation_notices():
    """Fail if the block sets off a deprecation notice, wherever it is raised.

    A deprecated keyword passed to a transformers model warns from inside torch's module machinery, so
    pytest.ini's per-module filters cannot see it: record every warning here instead, plus the
    once-per-process notices transformers logs (its ``warning_once`` cache is cleared first, so a
    notice an earlier test already set off is not hidden).
    """
    logged = []
    handler = logging.Handler()
    handler.emit = logged.append
    hf_logger = logging.getLogger("transformers")
    warning_once = getattr(logging.Logger, "warning_once", None)
    if hasattr(warning_once, "cache_clear"):
        warning_once.cache_clear()
    hf_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        hf_logger.removeHandler(handler)
    deprecations = [f"{w.category.__name__}: {w.message}" for w in caught
                    if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))]
    deprecations += [record.getMessage() for record in logged if "deprecat" in record.getMessage().lower()]
    assert not deprecations, deprecations


def test_no_deprecation_notices_catches_the_old_cache_keyword():
    """The check above sees what the old decode loop did (``past_key_values=`` in, ``.past_key_values`` out)."""
    from minp_kernels.integrations.hf import cache_argument_name, tiny_llama

    model = tiny_llama()
    if cache_argument_name(model) == "past_key_values":
        pytest.skip("this transformers predates the `cache` argument: `past_key_values` is not deprecated here")
    with pytest.raises(AssertionError, match="past_key_values"), no_deprecation_notices(), torch.no_grad():
        out = model(input_ids=torch.zeros(1, 3, dtype=torch.int64), past_key_values=None, use_cache=True)
        assert out.past_key_values is not None


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_hf_generate_matches_stepwise_replay_and_greedy(backend):
    from minp_kernels.integrations.hf import generate, tiny_llama

    model = tiny_llama().to(DEVICE)
    prompt = torch.randint(0, 256, (3, 5), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    seeds = torch.tensor([7, 8, 9], device=DEVICE)
    with no_deprecation_notices():
        ids = generate(model, prompt, 6, 0.05, 1.5, seeds, backend=backend)
    assert ids.shape == (3, 11)
    with torch.no_grad():  # replay: full forward each step (no cache), same seed and step offset
        replay = prompt
        for step in range(6):
            logits = model(replay).logits[:, -1, :]
            tok = minp_kernels.sample(logits, 0.05, 1.5, seed=seeds, offset=step, backend=backend)
            replay = torch.cat([replay, tok[:, None]], dim=1)
    assert torch.equal(ids, replay)
    with no_deprecation_notices():
        greedy = generate(model, prompt, 6, 0.05, 0.0, seeds, backend=backend)
    reference = model.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(greedy, reference)


def test_hf_logits_processor_matches_kept_mask():
    from minp_kernels.integrations.hf import MinPLogitsProcessor

    scores = torch.randn(4, 100, generator=torch.Generator().manual_seed(3)) * 3
    for temperature_first in (False, True):
        with no_deprecation_notices():
            out = MinPLogitsProcessor(0.1, temp=2.0, temperature_first=temperature_first)(None, scores)
        assert torch.equal(out > float("-inf"), kept_mask(scores, 0.1, 2.0, temperature_first=temperature_first))
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
    theirs = vllm_style(row.expand(n, -1), p_base=min_p, temp=temp)
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


def test_serving_adapter_invalid_rows_get_minus_one_not_greedy():
    """A NaN or negative temperature (even -1e-7, inside vLLM's greedy band) and a min_p that is NaN or
    outside [0, 1] make the row invalid: token -1, log-prob NaN.  Only 0 <= t < 1e-5 is greedy, and the
    valid rows draw what they draw on their own."""
    nan = float("nan")
    temperature = [nan, -1.0, -1e-7, 1e-6, 0.0, 1.3, 1.3, 1.3, 1.3]
    min_p = [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, nan, 1.5, -0.1]
    invalid = torch.tensor([True, True, True, False, False, False, True, True, True], device=DEVICE)
    greedy = torch.tensor([False, False, False, True, True, False, False, False, False], device=DEVICE)
    batch = len(temperature)
    logits = (torch.randn(batch, 50, generator=torch.Generator().manual_seed(7)) * 3).to(DEVICE)
    seeds, steps = torch.arange(batch, device=DEVICE) + 100, torch.full((batch,), 3, device=DEVICE)
    ids, logprobs = min_p_sample(logits, torch.tensor(min_p, device=DEVICE), torch.tensor(temperature, device=DEVICE),
                                 seeds, steps, return_logprobs=True)
    assert torch.equal(ids[invalid], torch.full_like(ids[invalid], -1)), ids
    assert logprobs[invalid].isnan().all(), logprobs
    assert torch.equal(ids[greedy], logits[greedy].argmax(-1))
    assert torch.equal(logprobs[greedy], torch.zeros(2, device=DEVICE))
    row = 5  # the sampled valid row: the same token and log-prob as in a batch of its own
    alone, alone_lp = min_p_sample(logits[row:row + 1], torch.tensor([min_p[row]], device=DEVICE),
                                   torch.tensor([temperature[row]], device=DEVICE), seeds[row:row + 1],
                                   steps[row:row + 1], return_logprobs=True)
    assert ids[row] == alone[0] and logprobs[row] == alone_lp[0]
    assert kept_mask(logits[row], min_p[row], temperature[row], temperature_first=True)[ids[row]]


def readme_quickstart() -> str:
    """The first ```python block under the README's "## Quickstart" heading."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_quickstart_runs_as_written():
    """The Quickstart is executed verbatim (on the GPU where there is one, else on the CPU), so it cannot
    rot; then what its comments promise is checked."""
    namespace = {}
    exec(compile(readme_quickstart(), "README.md:Quickstart", "exec"), namespace)
    logits, tokens, logprobs, probs = (namespace[name] for name in ("logits", "tokens", "logprobs", "probs"))
    batch, vocab = logits.shape
    assert tokens.shape == logprobs.shape == (batch,) and tokens.dtype == torch.int64
    assert (probs.gather(1, tokens[:, None]) > 0).all()  # every token inside its row's kept set
    assert torch.allclose(logprobs, probs.gather(1, tokens[:, None]).squeeze(1).log(), atol=1e-4)
    assert namespace["token"].shape == () and 0 <= namespace["token"] < vocab  # 1-D logits: one 0-d token
    assert math.isclose(probs.sum(-1).max().item(), 1.0, rel_tol=1e-5)


def test_torch_compile_rounds_out_of_range_scalars_like_eager():
    """A scalar temp above the float32 range becomes inf (uniform over the kept set) in the custom
    op's tensors exactly as in the eager launch, instead of overflowing."""
    logits = torch.randn(4, 64, generator=torch.Generator().manual_seed(9)).to(DEVICE)

    def step(x):
        return minp_kernels.sample(x, 0.1, 1e39, seed=3)

    assert torch.equal(torch.compile(step, fullgraph=True, backend="eager")(logits), step(logits))


def test_processor_and_serving_adapter_take_top_k_and_top_p():
    """The HF processor masks exactly the kept set with the filters; min_p_sample draws what sample()
    draws in vLLM's order (temperature first, top-p after min-p)."""
    from minp_kernels.integrations.hf import MinPLogitsProcessor
    from minp_kernels.integrations.serving import min_p_sample

    logits = torch.randn(4, 300) * 3
    processor = MinPLogitsProcessor(0.05, 1.2, temperature_first=True, top_k=20, top_p=0.8)
    keep = kept_mask(logits, 0.05, 1.2, temperature_first=True, top_k=20, top_p=0.8)
    assert torch.equal(processor(None, logits).isfinite(), keep)
    top_k, top_p = torch.tensor([0, 5, 50, 300]), torch.tensor([0.9, 1.0, 0.5, 0.7])
    seeds, steps = torch.arange(4), torch.zeros(4, dtype=torch.int64)
    tokens = min_p_sample(logits, torch.full((4,), 0.05), torch.full((4,), 1.2), seeds, steps, top_k=top_k, top_p=top_p)
    expected = minp_kernels.sample(logits, torch.full((4,), 0.05), torch.full((4,), 1.2), seed=seeds, offset=steps,
                                   temperature_first=True, top_k=top_k, top_p=top_p, top_p_after_min_p=True)
    assert torch.equal(tokens, expected)
