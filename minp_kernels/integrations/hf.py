"""Hugging Face transformers integration.

* :class:`MinPLogitsProcessor`: a ``LogitsProcessor`` applying the min-p mask with this package's
  semantics (paper order by default), for ``model.generate(logits_processor=...)``.
* :func:`generate`: a KV-cached decode loop that draws every token with :func:`minp_kernels.sample`,
  keyed by (seed, decode step), so a sequence is reproducible token for token.
"""

from __future__ import annotations

import inspect
import time
from typing import TYPE_CHECKING

import torch

from ..api import sample
from ..reference import kept_mask

if TYPE_CHECKING:  # only for the annotations: transformers stays an optional dependency
    from transformers import PreTrainedModel

try:
    from transformers import LogitsProcessor
except ImportError:  # pragma: no cover - transformers is optional
    LogitsProcessor = object


class MinPLogitsProcessor(LogitsProcessor):
    """Mask to ``-inf`` the tokens outside the min-p kept set (optionally cut by top-k / top-p too).

    Parameters
    ----------
    p_base : float
        Min-p base in ``[0, 1]``.
    temp : float
        Temperature used for the threshold when ``temperature_first`` (``x >= m + temp * ln p``);
        the processor does not rescale the scores (leave that to a temperature warper or the sampler).
    temperature_first : bool
        HF order (threshold on tempered probabilities) instead of the paper's.
    top_k, top_p, top_p_after_min_p
        The optional filters of :func:`minp_kernels.sample`, applied in the same mask (the default
        ``top_p_after_min_p=False`` is Hugging Face's order: top-k, top-p, then min-p).

    Examples
    --------
    >>> import torch
    >>> proc = MinPLogitsProcessor(0.05)
    >>> proc(None, torch.tensor([[0.9, 0.0274, 0.047, 0.0274]]).log()).isfinite().tolist()
    [[True, False, True, False]]
    """

    def __init__(self, p_base: float, temp: float = 1.0, temperature_first: bool = False, *,
                 top_k: int | None = None, top_p: float | None = None, top_p_after_min_p: bool = False) -> None:
        self.p_base, self.temp, self.temperature_first = p_base, temp, temperature_first
        self.filters = dict(top_k=top_k, top_p=top_p, top_p_after_min_p=top_p_after_min_p)

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.FloatTensor) -> torch.FloatTensor:
        keep = kept_mask(scores, self.p_base, self.temp, temperature_first=self.temperature_first, **self.filters)
        return scores.masked_fill(~keep, float("-inf"))


def cache_argument_name(model: PreTrainedModel) -> str:
    """The keyword the model's ``forward`` takes its KV cache under.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns and goes away in
    5.40); older releases only know ``past_key_values``.  The output field carries the same name.
    """
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def generate(model: PreTrainedModel, input_ids: torch.Tensor, max_new_tokens: int,
             p_base: float | torch.Tensor, temp: float | torch.Tensor, seed: int | torch.Tensor, *,
             temperature_first: bool = False, top_k: int | torch.Tensor | None = None,
             top_p: float | torch.Tensor | None = None, top_p_after_min_p: bool = False,
             eos_token_id: int | None = None, backend: str = "auto",
             return_timing: bool = False) -> torch.Tensor | tuple[torch.Tensor, tuple[float, float]]:
    """Decode ``max_new_tokens`` tokens with KV cache, sampling each with :func:`minp_kernels.sample`.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM taking ``input_ids`` and a KV cache (``cache=`` in transformers >= 5.24,
        ``past_key_values=`` before) with ``use_cache=True``.
    input_ids : torch.Tensor
        ``[B, T]`` prompt ids (no padding).
    max_new_tokens : int
        Tokens to add.
    p_base, temp : float or torch.Tensor
        Min-p base and temperature (scalars or ``[B]``).  A row whose tensor value is invalid (NaN,
        negative, ``p_base > 1``) samples token ``-1``, which the model cannot embed: check
        request parameters before the loop.
    seed : int or torch.Tensor
        Request seed(s); row ``b`` uses ``seed[b]`` (an int seeds row ``b`` with ``seed + b``) and the
        decode step as the Philox offset.
    temperature_first : bool
        Hugging Face order (threshold on the tempered distribution) instead of the paper's.
    top_k, top_p, top_p_after_min_p
        The optional filters of :func:`minp_kernels.sample`.
    eos_token_id : int, optional
        Rows that emit it keep emitting it.
    backend : {"auto", "triton", "torch"}
        Passed to :func:`minp_kernels.sample`.
    return_timing : bool
        Also return ``(total_seconds, sampler_seconds)`` measured with device synchronisation.

    Returns
    -------
    torch.Tensor
        ``[B, T + max_new_tokens]`` ids (and the timing tuple when asked).
    """
    batch = input_ids.shape[0]
    device = input_ids.device
    seeds = seed if isinstance(seed, torch.Tensor) else seed + torch.arange(batch, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cache_name = cache_argument_name(model)
    ids, cache, current = input_ids, None, input_ids
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    sampler_seconds, start = 0.0, time.perf_counter()
    for step in range(max_new_tokens):
        out = model(input_ids=current, use_cache=True, **{cache_name: cache})
        cache = out[cache_name]
        if return_timing:
            sync()
            t0 = time.perf_counter()
        tokens = sample(out.logits[:, -1, :], p_base, temp, seed=seeds, offset=step,
                        temperature_first=temperature_first, top_k=top_k, top_p=top_p,
                        top_p_after_min_p=top_p_after_min_p, backend=backend)
        if return_timing:
            sync()
            sampler_seconds += time.perf_counter() - t0
        if eos_token_id is not None:
            tokens = torch.where(done, eos_token_id, tokens)
            done |= tokens == eos_token_id
        ids = torch.cat([ids, tokens[:, None]], dim=1)
        current = tokens[:, None]
    sync()
    return (ids, (time.perf_counter() - start, sampler_seconds)) if return_timing else ids


def tiny_llama(vocab_size: int = 256, seed: int = 0) -> PreTrainedModel:
    """A small random ``LlamaForCausalLM`` built from a config (no download), for tests and demos."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()
