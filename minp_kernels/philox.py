"""Counter-based Philox-4x32-10 noise, written with torch integer ops.

This module is the one description of the project's noise stream.  The Triton kernel
(:mod:`minp_kernels.kernels`) draws it with ``tl.philox``; the functions here are its bit-exact
torch twin, used by both torch samplers, so every backend sees identical Gumbel noise.

Stream layout (one Philox call serves four consecutive tokens):

* key     ``(k0, k1)``          = low and high 32 bits of the request ``seed``
* counter ``(c0, c1, c2, c3)``  = ``(g // 4, stream, offset low, offset high)``
* token ``g`` (its global id: ``token_base + column`` for a vocabulary shard) takes output word
  ``g % 4``
* uniform ``u = (word >> UNIFORM_SHIFT) * UNIFORM_SCALE + UNIFORM_BIAS`` and Gumbel noise
  ``G = -log(-log(u))``, in float32

``stream`` is the row index when one seed is shared by the batch and ``0`` when each row has its
own seed, so a row with its own seed draws the same noise wherever it sits in a batch.

Arithmetic: torch has no full uint32 arithmetic on every device and version, so words are int64
tensors holding values in ``[0, 2**32)``; the 32 x 32-bit products are arranged so that no int64
product overflows.
"""

import numpy as np
import torch

# Philox-4x32 constants (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
ROUND_A = 0xD2511F53
ROUND_B = 0xCD9E8D57
KEY_A = 0x9E3779B9
KEY_B = 0xBB67AE85
N_ROUNDS = 10
MASK32 = 0xFFFFFFFF
# A 32-bit word keeps its top 23 bits: u = (w >> 9) * 2**-23 + 2**-24 lies in [2**-24, 1 - 2**-24]
# and is exact in float32, so -log(-log(u)) is finite on every backend.
UNIFORM_SHIFT = 9
UNIFORM_SCALE = 2.0**-23
UNIFORM_BIAS = 2.0**-24
# Counters per Philox evaluation on the CPU: a round's int64 temporaries then stay in cache (one
# thread, 64 x 12500 counters: 1.7x faster than a single evaluation; 8k-counter blocks lose it again
# to per-operation overhead).  Other devices take every counter in one evaluation.
CPU_BLOCK = 65536

TensorOrInt = torch.Tensor | int


# Each multiplier as ``b - 2**32``: both exceed 2**31, so ``a * (b - 2**32)`` stays inside int64 for
# any ``a < 2**32`` and torch never multiplies past 2**63 (see :func:`_mulhilo`).
_ROUND_A_SIGNED = ROUND_A - 2**32
_ROUND_B_SIGNED = ROUND_B - 2**32


def _mulhilo(a: torch.Tensor, b_signed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``a * b`` for ``0 <= a < 2**32`` (int64), ``b_signed = b - 2**32``.

    With ``p = a * b_signed`` (exact: ``|p| < 2**63``), ``a * b = p + a * 2**32``, so the low word is
    ``p mod 2**32`` and the high word is ``floor(p / 2**32) + a`` (an arithmetic shift): one
    multiplication and three cheap operations, no overflow.
    """
    product = a * b_signed
    low = product & MASK32
    product >>= 32
    product += a
    return product, low


def _key_schedule(key: TensorOrInt, increment: int) -> list:
    """The ``N_ROUNDS`` round keys ``(key + r * increment) mod 2**32``, made in one operation for a tensor key."""
    if not isinstance(key, torch.Tensor):
        return [(key + r * increment) & MASK32 for r in range(N_ROUNDS)]
    steps = torch.arange(N_ROUNDS, device=key.device, dtype=torch.int64) * increment
    return list(((key.unsqueeze(0) + steps.view(-1, *[1] * key.dim())) & MASK32).unbind(0))


def philox4x32(k0: TensorOrInt, k1: TensorOrInt, c0: TensorOrInt, c1: TensorOrInt, c2: TensorOrInt,
               c3: TensorOrInt) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox-4x32-10 block: four words from a 2-word key and a 4-word counter.

    Parameters
    ----------
    k0, k1, c0, c1, c2, c3 : torch.Tensor or int
        int64 tensors (or ints) in ``[0, 2**32)``, broadcastable against each other.

    Returns
    -------
    tuple of torch.Tensor
        Four int64 tensors in ``[0, 2**32)`` of the broadcast shape.
    """
    words = (k0, k1, c0, c1, c2, c3)
    if all(not isinstance(w, torch.Tensor) or w.device.type == "cpu" for w in words):
        return _philox4x32_numpy(*words)
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) for c in (c0, c1, c2, c3))
    # Operands broadcast inside each operation: a counter word shared by every row (the token
    # counter) or by every token (stream, offset) stays small until the rounds mix them.
    for key0, key1 in zip(_key_schedule(k0, KEY_A), _key_schedule(k1, KEY_B), strict=True):
        hi_a, lo_a = _mulhilo(c0, _ROUND_A_SIGNED)
        hi_b, lo_b = _mulhilo(c2, _ROUND_B_SIGNED)
        c0, c1, c2, c3 = hi_b ^ c1 ^ key0, lo_b, hi_a ^ c3 ^ key1, lo_a
    return torch.broadcast_tensors(c0, c1, c2, c3)


def _philox4x32_numpy(*words: TensorOrInt) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`philox4x32` on the CPU in numpy ``uint64``: a 32 x 32-bit product is exact there, so
    a multiply-high is one multiply and a shift, and numpy's per-call cost is a fraction of torch's
    (a draw of a few kept tokens makes ~200 calls on tiny arrays)."""
    k0, k1, c0, c1, c2, c3 = (np.asarray(w.numpy() if isinstance(w, torch.Tensor) else w).astype(np.uint64)
                              for w in words)
    mask, shift = np.uint64(MASK32), np.uint64(32)
    round_a, round_b, key_a, key_b = (np.uint64(v) for v in (ROUND_A, ROUND_B, KEY_A, KEY_B))
    for _ in range(N_ROUNDS):
        product_a, product_b = c0 * round_a, c2 * round_b
        c0, c1, c2, c3 = (product_b >> shift) ^ c1 ^ k0, product_b & mask, (product_a >> shift) ^ c3 ^ k1, \
            product_a & mask
        k0, k1 = (k0 + key_a) & mask, (k1 + key_b) & mask
    return tuple(torch.from_numpy(np.ascontiguousarray(w).astype(np.int64))
                 for w in np.broadcast_arrays(c0, c1, c2, c3))


def philox_words(seed: torch.Tensor, counter: TensorOrInt, stream: TensorOrInt,
                 offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four Philox output words for key ``seed`` and counter ``(counter, stream, offset lo, offset hi)``.

    Parameters
    ----------
    seed, offset : torch.Tensor
        int64, broadcastable against ``counter``; all 64 bits are used.
    counter, stream : torch.Tensor or int
        int64 counters in ``[0, 2**32)``.
    """
    return philox4x32(seed & MASK32, (seed >> 32) & MASK32, counter, stream, offset & MASK32, (offset >> 32) & MASK32)


def _select_word(words, lane: torch.Tensor) -> torch.Tensor:
    """Word ``lane`` (0-3) of the four ``words``, elementwise, with two bit tests instead of a stack and gather."""
    w0, w1, w2, w3 = words
    high = (lane & 2) != 0
    return torch.where((lane & 1) != 0, torch.where(high, w3, w1), torch.where(high, w2, w0))


def token_words(seed: torch.Tensor, token: torch.Tensor, stream: TensorOrInt, offset: torch.Tensor) -> torch.Tensor:
    """The 32-bit word of each token: word ``token % 4`` of the counter ``token // 4``.

    All arguments are int64 and broadcast against each other (``token`` a global id).
    """
    return _select_word(philox_words(seed, token >> 2, stream, offset), token & 3)


def _block(total: int, device: torch.device) -> int:
    return CPU_BLOCK if device.type == "cpu" else max(total, 1)


def token_list_words(seed: torch.Tensor, token: torch.Tensor, stream: torch.Tensor,
                     offset: torch.Tensor) -> torch.Tensor:
    """:func:`token_words` of a list: all arguments int64 ``[K]``, one entry per token, in blocks."""
    out = torch.empty_like(token)
    step = _block(token.numel(), token.device)
    for start in range(0, token.numel(), step):
        part = slice(start, start + step)
        out[part] = token_words(seed[part], token[part], stream[part], offset[part])
    return out


def counter_run_words(seed: torch.Tensor, offset: torch.Tensor, stream: torch.Tensor, first_counter: TensorOrInt,
                      n_counters: int) -> torch.Tensor:
    """Words of the ``4 * n_counters`` consecutive tokens from global id ``4 * first_counter``, per row.

    Parameters
    ----------
    seed, offset, stream : torch.Tensor
        int64 ``[N]``.
    first_counter : torch.Tensor or int
        int64 ``[N]`` (or one int for every row): the counter of each run's first four tokens.
    n_counters : int
        Counters per run.

    Returns
    -------
    torch.Tensor
        int64 ``[N, 4 * n_counters]`` in token order: each Philox call's four words side by side
        serve four neighbouring tokens, a quarter of a call per token.
    """
    batch = seed.shape[0]
    out = torch.empty(batch, n_counters, 4, device=seed.device, dtype=torch.int64)
    block = _block(batch * n_counters, seed.device)
    cols = max(1, min(n_counters, block))  # whole runs, several rows at a time, unless a run exceeds a block
    rows = max(1, block // max(n_counters, 1))
    steps = torch.arange(n_counters, device=seed.device, dtype=torch.int64)
    for r in range(0, batch, rows):
        part = slice(r, r + rows)
        first = first_counter[part, None] if isinstance(first_counter, torch.Tensor) else first_counter
        for c in range(0, n_counters, cols):
            words = philox_words(seed[part, None], steps[c:c + cols] + first, stream[part, None], offset[part, None])
            out[part, c:c + cols] = torch.stack(words, dim=-1)
    return out.view(batch, 4 * n_counters)


def uniform_from_words(words: torch.Tensor) -> torch.Tensor:
    """Map 32-bit words to float32 uniforms in ``[2**-24, 1 - 2**-24]`` (exact arithmetic)."""
    return (words >> UNIFORM_SHIFT).to(torch.float32) * UNIFORM_SCALE + UNIFORM_BIAS


def gumbel_from_words(words: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise ``-log(-log(u))`` (float32) of 32-bit words, ``u`` from :func:`uniform_from_words`."""
    return uniform_from_words(words).log_().neg_().log_().neg_()


def gumbel_noise(seed: torch.Tensor, offset: torch.Tensor, stream: torch.Tensor, vocab_size: int,
                 token_base: int = 0) -> torch.Tensor:
    """Gumbel(0, 1) noise ``[B, vocab_size]`` float32 for the tokens ``token_base .. token_base + vocab_size``.

    Parameters
    ----------
    seed, offset, stream : torch.Tensor
        int64 ``[B]``.
    vocab_size : int
        Number of tokens per row.
    token_base : int
        Global id of column 0 (a vocabulary shard starts past 0).
    """
    first_counter = token_base >> 2
    first = token_base - 4 * first_counter
    n_counters = (first + vocab_size + 3) >> 2
    words = counter_run_words(seed, offset, stream, first_counter, n_counters)
    return gumbel_from_words(words[:, first:first + vocab_size])
