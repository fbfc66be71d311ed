"""Counter-based Philox-4x32-10 noise, written with torch integer ops.

The Triton kernel (:mod:`minp_kernels.kernels`) draws the same stream with
``tl.umulhi`` on ``uint32``; this module is the bit-exact torch twin used by the
reference sampler, so both backends see identical Gumbel noise.

Stream layout (one Philox call serves four consecutive tokens):

* key     ``(k0, k1)``          = low and high 32 bits of the request ``seed``
* counter ``(c0, c1, c2, c3)``  = ``(token // 4, stream, offset low, offset high)``
* token ``t`` takes output word ``t % 4``

``stream`` is the row index when one seed is shared by the batch and ``0`` when
each row has its own seed, so a row with its own seed draws the same noise
wherever it sits in a batch.
"""

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


def _mulhilo(a, b):
    """High and low 32-bit words of ``a * b`` for ``0 <= a < 2**32`` (int64) and a 32-bit constant.

    Split ``b`` in 16-bit halves so no product overflows int64.
    """
    low_product = a * (b & 0xFFFF)
    t = a * (b >> 16) + (low_product >> 16)
    return t >> 16, ((t & 0xFFFF) << 16) | (low_product & 0xFFFF)


def philox4x32(k0, k1, c0, c1, c2, c3):
    """Philox-4x32-10 block: four int64 tensors in ``[0, 2**32)`` from a 2-word key and 4-word counter.

    All arguments are int64 tensors (or ints) in ``[0, 2**32)``, broadcast against each other.
    """
    c0, c1, c2, c3 = torch.broadcast_tensors(*(torch.as_tensor(c, dtype=torch.int64) for c in (c0, c1, c2, c3)))
    for _ in range(N_ROUNDS):
        hi_a, lo_a = _mulhilo(c0, ROUND_A)
        hi_b, lo_b = _mulhilo(c2, ROUND_B)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + KEY_A) & MASK32
        k1 = (k1 + KEY_B) & MASK32
    return c0, c1, c2, c3


def philox_words(seed, counter, stream, offset):
    """The four Philox output words for key ``seed`` and counter ``(counter, stream, offset lo, offset hi)``.

    Parameters
    ----------
    seed, offset : torch.Tensor
        int64, broadcastable against ``counter``; all 64 bits are used.
    counter, stream : torch.Tensor
        int64 counters in ``[0, 2**32)``.
    """
    return philox4x32(seed & MASK32, (seed >> 32) & MASK32, counter, stream, offset & MASK32, (offset >> 32) & MASK32)


def token_words(seed, token, stream, offset):
    """The 32-bit word of each token: word ``token % 4`` of the counter ``token // 4``."""
    words = torch.stack(philox_words(seed, token >> 2, stream, offset), dim=-1)
    return words.gather(-1, (token & 3).expand(words.shape[:-1]).unsqueeze(-1)).squeeze(-1)


def uniform_from_words(words):
    """Map 32-bit words to float32 uniforms in ``[2**-24, 1 - 2**-24]`` (exact arithmetic)."""
    return (words >> UNIFORM_SHIFT).to(torch.float32) * UNIFORM_SCALE + UNIFORM_BIAS


def gumbel_noise(seed, offset, stream, vocab_size, first_token=0):
    """Gumbel(0, 1) noise ``[B, vocab_size]`` float32, keyed by (seed, offset, stream, token).

    Parameters
    ----------
    seed, offset, stream : torch.Tensor
        int64 ``[B]``.
    vocab_size : int
        Number of tokens per row.
    first_token : int
        Global id of column 0 (a vocabulary shard starts past 0).
    """
    tokens = torch.arange(first_token, first_token + vocab_size, device=seed.device, dtype=torch.int64)
    words = token_words(seed[:, None], tokens[None, :], stream[:, None], offset[:, None])
    return -torch.log(-torch.log(uniform_from_words(words)))
