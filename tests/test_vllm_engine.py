"""The vLLM plugin (``minp_kernels.integrations.vllm``) inside the real vLLM V1 engine.

The engine runs in its default multiprocess mode (front end, engine core, worker) on a tiny random
Llama built here with transformers and ``save_pretrained`` (2 layers, hidden 128, 2 heads so head_dim
64, V = 128256), its ``lm_head`` scaled so that min-p keeps a handful of tokens with moderate
probabilities.  The reference logits come from the same transformers model (same weights).

Three engine starts in all (20-60 s each on 2 cores): one with the plugin on, one with
``MINP_KERNELS_VLLM=0``, one with the plugin on and ``logprobs_mode="processed_logprobs"``.  With the
plugin on, every step is drawn by it, top-k / top-p rows included
(vLLM's order: temperature, min-p, then top-k and top-p over what min-p kept), which the plugin's
counters show.  Each is a module-scoped fixture that runs every request its tests need,
records the outputs and the plugin's counters (``worker_stats``, read from the worker process by
``collective_rpc``) and shuts the engine down, so only one engine is alive at a time.

Run by ``.ci/run``'s vLLM step in its own virtual environment (the README's vLLM line), which sets
``MINP_KERNELS_REQUIRE_VLLM=1``: there, with ``CI`` set, a missing vLLM fails the module instead of
skipping it.  In the main suite's environment (no vLLM) the module is skipped.
"""

import contextlib
import gc
import math
import os

import pytest
import torch
from scipy import stats

import minp_kernels
from minp_kernels.integrations.vllm import INT64_MAX, worker_stats

try:
    import vllm  # noqa: F401
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
except ImportError as error:
    if os.environ.get("CI") and os.environ.get("MINP_KERNELS_REQUIRE_VLLM") == "1":
        pytest.fail(f"vLLM is not importable in the vLLM CI step: {error!r} (install the README's vLLM line)",
                    pytrace=False)
    pytest.skip(f"vLLM is not installed ({error}); .ci/run's vLLM step runs this module", allow_module_level=True)

pytestmark = pytest.mark.slow

V = 128256
LM_HEAD_SCALE = 14.0  # logits std ~3: min-p 0.1 keeps a few tokens (see test_reference_rows_have_power)
MIN_P, TEMP = 0.1, 1.5  # T != 1 so that vLLM's order (temperature first) and the paper's keep different sets
CHI_PROMPT = [1, 2, 3, 0]
CHI_N = 2000  # first tokens of CHI_N requests with seeds CHI_SEED0 .. CHI_SEED0 + CHI_N - 1
CHI_SEED0 = 10_000
CHI_ALPHA = 1e-3  # false-alarm rate of the chi-square test for seeds drawn at random (these are fixed)
OFF_N = 200
TOL = 1e-3  # logit tolerance (vLLM's CPU model and transformers' differ in the last bits)
PROMPTS = [[1, 2, 3, 0], [5, 6, 7, 8], [100, 200, 300], [42] * 7, [9, 8, 7, 6, 5], [300, 20, 1], [77], [11, 12]]
MIXED_PROMPTS = PROMPTS + [[13, 14, 15]]
MIXED_SEEDED = 5  # the row of mixed_params() also sampled alone: seeded, with min-p, top-k and top-p
FILTER_N = 200  # first tokens of FILTER_N seeded requests with min-p, top-k and top-p (the documented draw)
FILTER_SEED0 = 50_000
FILTER = dict(min_p=0.02, top_k=12, top_p=0.8, temperature=1.3)


def build_model(path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=V, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(LM_HEAD_SCALE)
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_llama")
    return str(path), build_model(path)


def teacher_forced(model, prompt, output):
    """Logits [len(output), V] that chose each output token (transformers, float32)."""
    ids = torch.tensor([list(prompt) + list(output)])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    return logits[len(prompt) - 1: len(prompt) - 1 + len(output)]


def next_logits(model, prompt):
    """Logits [V] of the first token after ``prompt``."""
    with torch.no_grad():
        return model(torch.tensor([list(prompt)])).logits[0, -1].float()


def kept(logits, min_p, temp):
    """vLLM's min-p kept set (temperature first), with TOL of slack on the logits."""
    return logits >= logits.max(-1, keepdim=True).values + temp * math.log(min_p) - TOL if min_p > 0 else \
        torch.isfinite(logits)


def in_kept_set(logits, tokens, params):
    """Whether each token is in vLLM's kept set of its row (temperature, min-p, then top-k and top-p over
    what min-p kept), minp_kernels.reference.kept_mask of the transformers logits, with the chosen
    token's logit raised by TOL (vLLM's CPU model and transformers differ in the last bits)."""
    rows = torch.arange(len(tokens))
    bumped = logits.clone()
    bumped[rows, tokens] += TOL
    mask = minp_kernels.reference.kept_mask(bumped, params.min_p, params.temperature, temperature_first=True,
                                            top_k=params.top_k, top_p=params.top_p, top_p_after_min_p=True)
    return mask[rows, tokens]


@contextlib.contextmanager
def engine(model_dir, plugin_on, **engine_args):
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ALLOW_INSECURE_SERIALIZATION": "1",  # collective_rpc(worker_stats)
           "MINP_KERNELS_VLLM": "1" if plugin_on else "0", "TRITON_INTERPRET": None}  # the suite's, not vLLM's
    saved = {key: os.environ.get(key) for key in env}
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    llm = None
    try:
        llm = LLM(model=model_dir, skip_tokenizer_init=True, enforce_eager=True, dtype="float32", max_model_len=256,
                  seed=0, **engine_args)
        yield llm
    finally:
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def generate(llm, prompts, params):
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outputs], outputs


def stats_of(llm):
    (result,) = llm.collective_rpc(worker_stats, kwargs={"reset": True})  # one worker
    return result


def batch_params():
    """A batch of 8: seeded and unseeded min-p rows, other temperatures and min-p values, greedy rows, one with
    log-probs (raw, vLLM's default mode).  Row 3 is the seeded request also sampled alone."""
    return [SamplingParams(min_p=0.1, temperature=1.0, max_tokens=6, seed=5, ignore_eos=True),
            SamplingParams(min_p=0.2, temperature=0.7, max_tokens=6, ignore_eos=True),
            SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True),
            SamplingParams(min_p=MIN_P, temperature=TEMP, max_tokens=6, seed=1234, ignore_eos=True),
            SamplingParams(min_p=0.05, temperature=1.2, max_tokens=6, seed=99, logprobs=3, ignore_eos=True),
            SamplingParams(min_p=0.5, temperature=2.0, max_tokens=6, ignore_eos=True),
            SamplingParams(temperature=0.0, max_tokens=6, min_p=0.3, ignore_eos=True),
            SamplingParams(min_p=0.1, temperature=1.0, max_tokens=6, seed=2**40 + 3, ignore_eos=True)]


def mixed_params():
    """Greedy rows, top-k / top-p rows (with and without min-p, seeded and not) and min-p rows, 6 steps,
    every one drawn by the plugin.  Row MIXED_SEEDED is also sampled alone."""
    return [SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True),
            SamplingParams(top_k=5, temperature=1.0, max_tokens=6, seed=3, ignore_eos=True),
            SamplingParams(min_p=0.1, temperature=1.0, max_tokens=6, seed=4, ignore_eos=True),
            SamplingParams(top_k=3, min_p=0.1, temperature=1.3, max_tokens=6, ignore_eos=True),
            SamplingParams(top_p=0.7, temperature=1.0, max_tokens=6, seed=7, ignore_eos=True),
            SamplingParams(top_k=20, top_p=0.9, min_p=0.05, temperature=1.5, max_tokens=6, seed=11, ignore_eos=True),
            SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True),
            SamplingParams(min_p=0.2, temperature=0.8, max_tokens=6, ignore_eos=True),
            SamplingParams(top_p=0.5, top_k=V, temperature=0.7, max_tokens=6, ignore_eos=True)]


def filter_params(count):
    return [SamplingParams(**FILTER, max_tokens=1, seed=FILTER_SEED0 + i) for i in range(count)]


def chi_params(count):
    return [SamplingParams(min_p=MIN_P, temperature=TEMP, max_tokens=1, seed=CHI_SEED0 + i) for i in range(count)]


@pytest.fixture(scope="module")
def on(hf_model):
    """Everything the plugin-on tests look at, from one engine."""
    path, _ = hf_model
    r = {}
    with engine(path, plugin_on=True) as llm:
        r["start"] = stats_of(llm)
        seeded = [SamplingParams(min_p=MIN_P, temperature=TEMP, max_tokens=6, seed=1234, ignore_eos=True)]
        r["alone"] = [generate(llm, [PROMPTS[3]], seeded)[0][0] for _ in range(2)]
        r["alone_stats"] = stats_of(llm)
        r["batch"], r["batch_out"] = generate(llm, PROMPTS, batch_params())
        r["batch_stats"] = stats_of(llm)
        r["mixed"], _ = generate(llm, MIXED_PROMPTS, mixed_params())
        r["mixed_stats"] = stats_of(llm)
        r["mixed_alone"] = [generate(llm, [MIXED_PROMPTS[MIXED_SEEDED]], [mixed_params()[MIXED_SEEDED]])[0][0]
                            for _ in range(2)]
        r["filter"] = [t[0] for t in generate(llm, [CHI_PROMPT] * FILTER_N, filter_params(FILTER_N))[0]]
        r["filter_stats"] = stats_of(llm)
        r["chi"] = [t[0] for t in generate(llm, [CHI_PROMPT] * CHI_N, chi_params(CHI_N))[0]]
        r["chi_stats"] = stats_of(llm)
    return r


@pytest.fixture(scope="module")
def off(hf_model, on):  # `on` first: one engine alive at a time
    path, _ = hf_model
    r = {}
    with engine(path, plugin_on=False) as llm:
        r["first"] = [t[0] for t in generate(llm, [CHI_PROMPT] * OFF_N, chi_params(OFF_N))[0]]
        r["stats"] = stats_of(llm)
    return r


def processed_params():
    """Seeded and unseeded rows asking for 5 processed log-probs: min-p alone, min-p + top-k + top-p, top-p
    alone, and a min-p row that keeps fewer than 5 tokens."""
    return [SamplingParams(min_p=MIN_P, temperature=TEMP, max_tokens=4, seed=21, logprobs=5, ignore_eos=True),
            SamplingParams(**FILTER, max_tokens=4, seed=22, logprobs=5, ignore_eos=True),
            SamplingParams(top_p=0.7, temperature=1.0, max_tokens=4, logprobs=5, ignore_eos=True),
            SamplingParams(min_p=0.5, temperature=0.8, max_tokens=4, seed=23, logprobs=5, ignore_eos=True)]


@pytest.fixture(scope="module")
def processed(hf_model, off):  # after `off`: one engine alive at a time
    """An engine with logprobs_mode="processed_logprobs": the plugin answers those requests itself."""
    path, _ = hf_model
    r = {}
    with engine(path, plugin_on=True, logprobs_mode="processed_logprobs") as llm:
        stats_of(llm)
        r["tokens"], r["out"] = generate(llm, PROMPTS[:4], processed_params())
        r["stats"] = stats_of(llm)
    return r


# ------------------------------------------------------------------------------------------- plugin on

def test_unknown_sampler_is_a_clear_start_up_error(monkeypatch):
    """A vLLM whose Sampler.sample is not the one the plugin knows: IncompatibleVLLMError from register(), which
    vLLM calls while it loads its plugins (before any engine process starts), naming what differs."""
    from vllm.v1.sample.sampler import Sampler

    from minp_kernels.integrations import vllm as plugin

    def sample(self, logits, metadata, generators):
        raise AssertionError("never called")

    monkeypatch.setattr(plugin._state, "original_sample", None)
    monkeypatch.setattr(Sampler, "sample", sample)
    with pytest.raises(plugin.IncompatibleVLLMError, match=r"Sampler\.sample takes .*MINP_KERNELS_VLLM=0"):
        plugin.register()


def test_reference_rows_have_power(hf_model):
    """The chi-square row keeps a few tokens with moderate probabilities (else the test could not fail)."""
    _, model = hf_model
    logits = next_logits(model, CHI_PROMPT)
    probs = minp_kernels.reference.minp_probs(logits[None], MIN_P, TEMP, temperature_first=True)[0]
    support = int((probs > 0).sum())
    assert 3 <= support <= 40, support
    assert int((probs * CHI_N >= 5).sum()) >= 3
    assert probs.max() < 0.8


def test_plugin_active_in_worker(on):
    start = on["start"]
    assert start["installed"] and start["enabled"] and start["env_enabled"] and start["backend"] == "torch"
    assert on["alone_stats"]["handled_steps"] == 12 and not on["alone_stats"]["fallback"], on["alone_stats"]


def test_seeded_request_reproducible_and_batch_invariant(on):
    first, second = on["alone"]
    assert len(first) == 6 and first == second
    assert on["batch"][3] == first  # the same request inside a batch of 8


def test_batch_tokens_in_kept_set_and_greedy_is_argmax(on, hf_model):
    _, model = hf_model
    assert on["batch_stats"]["handled_rows"] == 8 * 6 and not on["batch_stats"]["fallback"], on["batch_stats"]
    for prompt, params, tokens in zip(PROMPTS, batch_params(), on["batch"], strict=True):
        logits = teacher_forced(model, prompt, tokens)
        rows = torch.arange(len(tokens))
        if params.temperature == 0:
            assert (logits[rows, tokens] >= logits.max(-1).values - TOL).all(), (prompt, tokens)
        else:
            assert kept(logits, params.min_p, params.temperature)[rows, tokens].all(), (prompt, params, tokens)


def test_raw_logprobs_keep_vllm_meaning(on, hf_model):
    """Log-probs (vLLM's default raw_logprobs mode) of the sampled tokens: log_softmax of the raw logits."""
    _, model = hf_model
    output = on["batch_out"][4].outputs[0]
    logits = teacher_forced(model, PROMPTS[4], output.token_ids)
    expected = logits.log_softmax(-1)
    assert output.logprobs is not None and len(output.logprobs) == len(output.token_ids)
    for step, (token, entry) in enumerate(zip(output.token_ids, output.logprobs, strict=True)):
        assert token in entry and len(entry) >= 3
        assert abs(entry[token].logprob - expected[step, token].item()) < 1e-3


def test_mixed_batch_greedy_topk_topp_minp(on, hf_model):
    """Every step of a batch mixing greedy, top-k, top-p and min-p rows is drawn by the plugin, and every
    token is in its row's kept set in vLLM's order (reference.kept_mask of the transformers logits)."""
    _, model = hf_model
    mixed_stats, params = on["mixed_stats"], mixed_params()
    steps = params[0].max_tokens
    # The only steps not drawn here hold greedy rows alone (vLLM's argmax: the engine may start the batch
    # before every request has arrived), so every sampled row of the batch was drawn by the plugin.
    greedy_only = mixed_stats["fallback"].get("all_greedy", 0)
    assert set(mixed_stats["fallback"]) <= {"all_greedy"}, mixed_stats
    assert mixed_stats["handled_steps"] == mixed_stats["filter_steps"] >= steps, mixed_stats
    greedy_rows = sum(p.temperature == 0 for p in params)
    assert mixed_stats["handled_rows"] + greedy_only * greedy_rows >= steps * len(MIXED_PROMPTS), mixed_stats
    for prompt, params, tokens in zip(MIXED_PROMPTS, mixed_params(), on["mixed"], strict=True):
        logits = teacher_forced(model, prompt, tokens)
        rows = torch.arange(len(tokens))
        assert len(tokens) == params.max_tokens
        if params.temperature == 0:
            assert (logits[rows, tokens] >= logits.max(-1).values - TOL).all(), (prompt, tokens)
        else:
            assert in_kept_set(logits, tokens, params).all(), (prompt, params, tokens)
        if params.top_k and params.top_k < V:  # never beyond the k-th largest logit
            assert (logits[rows, tokens] >= logits.topk(params.top_k, -1).values[:, -1] - TOL).all()


def test_seeded_top_k_top_p_request_reproducible_and_batch_invariant(on):
    first, second = on["mixed_alone"]
    assert len(first) == 6 and first == second
    assert on["mixed"][MIXED_SEEDED] == first  # the same request inside the mixed batch of 9


def test_top_k_top_p_first_token_is_the_documented_draw(on, hf_model):
    """Seeded requests with min-p, top-k and top-p: the engine's first token is minp_kernels.sample on the
    transformers logits with temperature_first=True, top_p_after_min_p=True (vLLM's order) and the row's
    documented key, and it is in the kept set."""
    _, model = hf_model
    stats = on["filter_stats"]
    # At least one row per request (more where the scheduler split the prompts: a partial prefill is sampled,
    # its token thrown away and its generator rewound), every step with top-k / top-p, none on vLLM's path.
    assert stats["handled_rows"] >= FILTER_N and not stats["fallback"], stats
    assert stats["filter_steps"] == stats["handled_steps"] >= 1, stats
    logits = next_logits(model, CHI_PROMPT)
    seeds = torch.arange(FILTER_SEED0, FILTER_SEED0 + FILTER_N, dtype=torch.int64)
    offsets = torch.cat([torch.randint(0, INT64_MAX, (1,), generator=torch.Generator().manual_seed(int(s)))
                         for s in seeds])
    expected = minp_kernels.sample(logits.expand(FILTER_N, V), FILTER["min_p"], FILTER["temperature"], seed=seeds,
                                   offset=offsets, temperature_first=True, top_k=FILTER["top_k"],
                                   top_p=FILTER["top_p"], top_p_after_min_p=True)
    mismatches = int((expected != torch.tensor(on["filter"])).sum())
    print(f"top-k / top-p: {mismatches} of {FILTER_N} first tokens differ from minp_kernels.sample on transformers' "
          f"logits; {len(set(on['filter']))} distinct tokens")
    assert mismatches <= FILTER_N // 100, mismatches
    drawn = torch.tensor(sorted(set(on["filter"])))
    assert drawn.shape[0] >= 3  # the filters leave a choice: the test has power
    assert in_kept_set(logits.expand(drawn.shape[0], V), drawn, filter_params(1)[0]).all(), drawn


def test_first_token_is_the_documented_draw(on, hf_model):
    """The engine's token is minp_kernels.sample on the transformers logits with the row's documented key:
    the request seed, and an offset drawn from a generator seeded like vLLM's per-request one."""
    _, model = hf_model
    logits = next_logits(model, CHI_PROMPT)
    seeds = torch.arange(CHI_SEED0, CHI_SEED0 + CHI_N, dtype=torch.int64)
    offsets = torch.cat([torch.randint(0, INT64_MAX, (1,), generator=torch.Generator().manual_seed(int(s)))
                         for s in seeds])
    expected = minp_kernels.sample(logits.expand(CHI_N, V), MIN_P, TEMP, seed=seeds, offset=offsets,
                                   temperature_first=True)
    mismatches = int((expected != torch.tensor(on["chi"])).sum())
    print(f"plugin on: {mismatches} of {CHI_N} first tokens differ from minp_kernels.sample on transformers' logits")
    assert mismatches <= CHI_N // 500, mismatches  # only near-ties of the scores may differ (logits' last bits)


def test_first_token_frequencies_match_min_p(on, hf_model):
    """Chi-square of CHI_N first tokens (fixed seeds) against the exact min-p probabilities."""
    _, model = hf_model
    assert on["chi_stats"]["handled_rows"] == CHI_N and not on["chi_stats"]["fallback"], on["chi_stats"]
    logits = next_logits(model, CHI_PROMPT)
    probs = minp_kernels.reference.minp_probs(logits[None], MIN_P, TEMP, temperature_first=True)[0].double()
    counts = torch.bincount(torch.tensor(on["chi"]), minlength=V).double()
    assert counts[probs == 0].sum() == 0  # nothing outside the kept set
    expected = probs * CHI_N
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum().reshape(1)])
    wanted = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    if wanted[-1] < 5:  # fold a small pooled bin into the smallest large one
        observed, wanted = observed[:-1], wanted[:-1]
        observed[wanted.argmin()] += counts[~big].sum()
        wanted[wanted.argmin()] += expected[~big].sum()
    p_value = stats.chisquare(observed.numpy(), wanted.numpy() * observed.sum().item() / wanted.sum().item()).pvalue
    print(f"chi-square: {len(observed)} bins, {int((probs > 0).sum())} kept tokens, p = {p_value:.4f}")
    assert p_value > CHI_ALPHA, (p_value, observed.tolist(), wanted.tolist())


# ------------------------------------------------------------------------------------------ plugin off

def test_plugin_off_draws_nothing(off):
    assert not off["stats"]["env_enabled"] and off["stats"]["handled_steps"] == 0, off["stats"]


def test_plugin_off_gives_vllms_own_tokens(off, on, hf_model):
    """With MINP_KERNELS_VLLM=0 the tokens are vLLM's CPU sampler's: temperature, its MinPLogitsProcessor, then
    torch.ops._C.fused_gumbel_argmax keyed by one randint(0, 2**31) per step from the request's generator."""
    import vllm._custom_ops  # noqa: F401  (loads torch.ops._C)

    _, model = hf_model
    logits = next_logits(model, CHI_PROMPT) / TEMP
    probs = logits.softmax(-1)
    logits = logits.masked_fill(probs < probs.max() * MIN_P, float("-inf")).expand(OFF_N, V).contiguous()
    keys = torch.tensor([torch.randint(0, 2**31, (1,), generator=torch.Generator().manual_seed(CHI_SEED0 + i)).item()
                         for i in range(OFF_N)], dtype=torch.long)
    expected = torch.ops._C.fused_gumbel_argmax(logits, keys)
    mismatches = int((expected != torch.tensor(off["first"])).sum())
    print(f"plugin off: {mismatches} of {OFF_N} first tokens differ from vLLM's CPU sampler on transformers' logits")
    assert mismatches <= OFF_N // 100, mismatches
    assert off["first"] != on["chi"][:OFF_N]  # the plugin's draw differs (same distribution, other noise)


# ----------------------------------------------------------------------------- processed log-probs, plugin on

def test_processed_logprobs_are_the_sampled_distribution(processed, hf_model):
    """logprobs_mode="processed_logprobs": every step drawn by the plugin (no fallback), and the returned
    log-probs are those of the distribution it sampled: the sampled token's is log(minp_probs(transformers
    logits, temperature_first=True, top_k, top_p, top_p_after_min_p=True)), the top 5 are the 5 most likely
    kept tokens (-inf past the kept set), with their log-probs, and the ranks count the larger ones."""
    _, model = hf_model
    stats, params = processed["stats"], processed_params()
    assert not stats["fallback"] and stats["handled_steps"] >= params[0].max_tokens, stats
    assert stats["logprob_steps"] == stats["handled_steps"], stats
    short = 0  # steps whose kept set has fewer than 5 tokens: the -inf padding is checked too
    for prompt, p, tokens, out in zip(PROMPTS, params, processed["tokens"], processed["out"], strict=False):
        output = out.outputs[0]
        logits = teacher_forced(model, prompt, tokens)
        probs = minp_kernels.reference.minp_probs(logits, p.min_p, p.temperature, temperature_first=True,
                                                  top_k=p.top_k if p.top_k > 0 else None, top_p=p.top_p,
                                                  top_p_after_min_p=True).double()
        expected = probs.log()
        assert output.logprobs is not None and len(output.logprobs) == len(tokens) == p.max_tokens
        for step, (token, entry) in enumerate(zip(tokens, output.logprobs, strict=True)):
            assert probs[step, token] > 0, (p, step, token)
            assert abs(entry[token].logprob - expected[step, token].item()) < 1e-4, (p, step, entry[token])
            assert entry[token].rank == 1 + int((probs[step] > probs[step, token]).sum()), (p, step, entry)
            top = {t: lp for t, lp in entry.items() if lp.rank <= 5 and math.isfinite(lp.logprob)}
            n_kept = min(5, int((probs[step] > 0).sum()))
            short += n_kept < 5
            want = probs[step].topk(n_kept).indices.tolist()
            assert sorted(top) == sorted(want), (p, step, top, want)
            for t in want:
                assert abs(top[t].logprob - expected[step, t].item()) < 1e-4, (p, step, t, top[t])
            ranked = [lp for lp in entry.values() if lp.rank <= 5]
            assert len(ranked) == 5 and sum(not math.isfinite(lp.logprob) for lp in ranked) == 5 - n_kept
    assert short >= 1, "no step kept fewer than 5 tokens"
