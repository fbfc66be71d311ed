"""Names shared by the tests: the test device, parametrize marks, logit generators, backend runners.

Tests import these from here, never from ``conftest`` (which only sets up the interpreter and the
fixtures, and must run before ``minp_kernels`` is imported).

Three logit generators, one per purpose, each documented with why it differs from the others:

* :func:`lm_like_logits`: batches that look like LM logits, for bit-identity between backends and
  for any test that needs "ordinary" rows;
* :func:`logit_family`: one named adversarial shape per call (ties, huge, tiny, masked, ...), for the
  property tests and the parity with Hugging Face's warpers;
* :func:`distribution_row`: one fixed row whose kept set stays large and uneven at every ``p_base``,
  for the statistical tests (power comes from many kept tokens of different probability).
"""

import pytest
import torch

import minp_kernels
from minp_kernels._validation import validate_logits, validate_params
from minp_kernels.launch import INTERPRETED, sample_triton
from minp_kernels.torch_sampler import sample_torch

HAS_CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (run benchmarks/gpu_check.sh)")

# Kernel rows checked against the torch backend when a test needs more rows than Triton's CPU
# interpreter runs in reasonable time (about 40 ms per row): see sample_many_rows.
INTERPRETED_ROWS_CHECKED = 64

BACKENDS = ("torch", "triton")
over_backends = pytest.mark.parametrize("backend", BACKENDS)
over_orders = pytest.mark.parametrize("temperature_first", [False, True], ids=["paper_order", "temperature_first"])
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
over_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: str(dtype).removeprefix("torch."))


def lm_like_logits(batch: int, vocab: int, dtype: torch.dtype = torch.float32, device="cpu", seed: int = 0, *,
                   peaked_every: int = 3) -> torch.Tensor:
    """Gaussian logits with an LM-like spread (std 3); rows 0, ``peaked_every``, ... peaked on a few tokens.

    The peaked rows (three tokens boosted by 4-16) give small kept sets, the plain rows large ones, so one
    batch exercises both.  ``peaked_every=0`` gives only plain Gaussian rows (for tests that need every
    row to spread its draws over many tokens).  The Gaussian part is ``torch.randn(batch, vocab) * 3``
    from a generator seeded with ``seed``, whatever ``peaked_every`` is.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=gen) * 3.0
    if peaked_every:
        peaked = torch.arange(batch) % peaked_every == 0
        hot = torch.randint(0, vocab, (batch, 3), generator=gen)
        boost = torch.zeros(batch, vocab).scatter_(1, hot, torch.rand(batch, 3, generator=gen) * 12 + 4)
        x = torch.where(peaked[:, None], x + boost, x)
    return x.to(dtype=dtype, device=device)


# Adversarial row shapes.  Every family but "sprinkled" holds only finite and -inf logits, which is what
# Hugging Face's softmax-based warpers can represent (NaN and +inf turn their probabilities into NaN).
FAMILIES = ("gaussian", "peaked", "ties", "huge", "tiny", "masked", "constant", "two_peaks", "sprinkled")
HF_FAMILIES = tuple(family for family in FAMILIES if family != "sprinkled")


def logit_family(family: str, batch: int, vocab: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[batch, vocab]`` logits of one adversarial shape (CPU).

    Families: ``gaussian`` (std 3), ``peaked`` (one token +12 above the rest), ``ties`` (integers in
    [-3, 3): many exact ties, at the max too), ``huge`` (std 3e30, 3e3 in float16: one survivor, products
    near overflow), ``tiny`` (std 3e-6: near-uniform, everything survives), ``masked`` (half the tokens
    -inf), ``constant`` (all equal), ``two_peaks`` (30 and 29 on the first two tokens),
    ``sprinkled`` (-inf, NaN and +inf mixed in, row 0 with no finite logit).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=gen) * 3
    if family == "peaked":
        x[:, torch.randint(0, vocab, (1,), generator=gen)] += 12
    elif family == "ties":
        x = torch.randint(-3, 3, (batch, vocab), generator=gen).float()
    elif family == "huge":
        x = x * 1e3 if dtype == torch.float16 else x * 1e30
    elif family == "tiny":
        x = x * 1e-6
    elif family == "masked":
        x = torch.where(torch.rand(batch, vocab, generator=gen) < 0.5, float("-inf"), x)
    elif family == "constant":
        x = torch.full((batch, vocab), 7.0)
    elif family == "two_peaks":
        x[:, :2] = torch.tensor([30.0, 29.0])[:vocab]
    elif family == "sprinkled":
        mask = torch.rand(batch, vocab, generator=gen)
        x = torch.where(mask < 0.2, float("-inf"), x)
        x = torch.where(mask > 0.9, float("nan"), x)
        x = torch.where((mask > 0.85) & (mask <= 0.86), float("inf"), x)
        x[0] = float("-inf")  # one row with no finite logit
    elif family != "gaussian":
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    return x.to(dtype)


def distribution_row(vocab: int) -> torch.Tensor:
    """A fixed float32 row for frequency tests: a few strong tokens (+3 .. +0.5) over a Gaussian tail.

    Narrower than :func:`lm_like_logits` (std 1.5, not 3) on purpose: the kept set stays large and
    uneven for every ``p_base`` of the distribution grid, which is what gives a frequency test power.
    """
    x = torch.randn(vocab, generator=torch.Generator().manual_seed(vocab)) * 1.5
    x[: max(1, vocab // 8)] += torch.linspace(3, 0.5, max(1, vocab // 8))
    return x


# The worked examples of Hugging Face's min-p unit test, at min_p = 0.05: name: (probabilities, kept tokens).
HF_WORKED_MIN_P = 0.05
HF_WORKED_EXAMPLES = {
    "0.047 kept, 0.0274 dropped": ([0.9, 0.0274, 0.047, 0.0274], [0, 2]),  # 0.047 > 0.9 * 0.05 = 0.045
    "flat: all kept": ([0.15, 0.3, 0.3, 0.25], [0, 1, 2, 3]),
    "one dominant token": ([0.97, 0.01, 0.01, 0.01], [0]),
}


def on_device(value):
    """``value`` moved to the test device when it is a tensor, unchanged otherwise."""
    return value.to(DEVICE) if isinstance(value, torch.Tensor) else value


def sample_on_device(logits, p_base, temp, *, backend: str, **kwargs):
    """:func:`minp_kernels.sample` with every tensor argument on the test device, results back on CPU."""
    out = minp_kernels.sample(on_device(logits), on_device(p_base), on_device(temp), backend=backend,
                              **{name: on_device(value) for name, value in kwargs.items()})
    return tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu()


def sample_many_rows(logits: torch.Tensor, p_base, temp, *, backend: str, seed: torch.Tensor,
                     rows_checked: int = INTERPRETED_ROWS_CHECKED, **kwargs) -> torch.Tensor:
    """Tokens (on CPU) of a batch too large to run row by row under Triton's CPU interpreter.

    Under the interpreter each row costs one program run (about 40 ms), so for ``backend="triton"``
    there the kernel samples only ``rows_checked`` rows spread evenly over the batch, which must equal
    the torch backend's tokens for those rows, and the torch backend samples the whole batch.  That
    carries the test over to the kernel because the two backends return identical tokens for identical
    inputs (asserted bit for bit over wide grids in test_equivalence and test_properties), and a row
    with its own seed draws the same token in any batch.  On a GPU the kernel samples every row itself.

    ``seed`` must be a per-row tensor (so that a row draws the same token in the subset as in the batch).
    """
    batch = logits.shape[0]
    if not (backend == "triton" and INTERPRETED and batch > rows_checked):
        return sample_on_device(logits, p_base, temp, backend=backend, seed=seed, **kwargs)
    assert "return_logprobs" not in kwargs, "sample_many_rows compares tokens only"
    tokens = sample_on_device(logits, p_base, temp, backend="torch", seed=seed, **kwargs)
    rows = torch.linspace(0, batch - 1, rows_checked).round().long().unique()
    pick = lambda value: value[rows] if isinstance(value, torch.Tensor) and value.dim() == 1 else value
    kernel = sample_on_device(logits[rows], pick(p_base), pick(temp), backend="triton", seed=seed[rows],
                              **{name: pick(value) for name, value in kwargs.items()})
    assert torch.equal(kernel, tokens[rows]), f"the kernel's tokens differ from the torch backend's in rows {rows}"
    return tokens


def many_draws(row: torch.Tensor, p_base: float, temp: float, *, backend: str, draws: int, first_seed: int = 0,
               **kwargs) -> torch.Tensor:
    """``draws`` tokens of one logit row (CPU): ``draws`` copies in one call, seeds ``first_seed + i``.

    Under Triton's CPU interpreter the kernel draws a subset that must match the torch backend, which
    draws them all (see :func:`sample_many_rows`).
    """
    return sample_many_rows(row.expand(draws, -1), p_base, temp, backend=backend,
                            seed=torch.arange(draws) + first_seed, **kwargs)


def both_backends(logits, p_base, temp, seed, offset=0, temperature_first=False, return_logprobs=False, *,
                  top_k=None, top_p=None, top_p_after_min_p=False, **launch):
    """(triton result, torch result) on validated inputs; ``launch`` overrides the kernel plan."""
    logits_2d, _ = validate_logits(logits)
    params = validate_params(logits_2d, p_base, temp, seed, offset, None, top_k, top_p, top_p_after_min_p)
    fused = sample_triton(logits_2d, params, temperature_first, return_logprobs, **launch)
    ref = sample_torch(logits_2d, params, temperature_first, return_logprobs)
    return fused, ref
