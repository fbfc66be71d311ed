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
    a multiply-high is one multiply and a shift, and numpy's per-call cost is a fraction of torch's."""
    k0, k1, c0, c1, c2, c3 = (np.asarray(w.numpy() if isinstance(w, torch.Tensor) else w).astype(np.uint64)
                              for w in words)
    words = philox_numpy(k0, k1, c0, c1, c2, c3)
    return tuple(torch.from_numpy(np.ascontiguousarray(w).astype(np.int64)) for w in words)


_MASK32_U64 = np.uint64(MASK32)
_SHIFT32_U64 = np.uint64(32)


def philox_numpy(k0: np.ndarray, k1: np.ndarray, c0: np.ndarray, c1: np.ndarray, c2: np.ndarray,
                 c3: np.ndarray) -> tuple[np.ndarray, ...]:
    """Philox-4x32-10 on numpy ``uint64`` arrays (values in ``[0, 2**32)``, broadcastable): four
    ``uint64`` word arrays of the broadcast shape.

    The two multiplied words ``(c0, c2)`` and the two passed words ``(c1, c3)`` are each stacked
    into one ``[2, ...]`` array, so a round is five numpy operations (a multiply, a shift, a mask
    and two xors) whatever the shape; the round keys of all ten rounds are made up front.
    """
    shape = np.broadcast_shapes(np.shape(k0), np.shape(k1), np.shape(c0), np.shape(c1), np.shape(c2),
                                np.shape(c3))
    ones = (1,) * len(shape)
    multiplied = np.empty((2, *shape), dtype=np.uint64)
    multiplied[0], multiplied[1] = c0, c2
    passed = np.empty((2, *shape), dtype=np.uint64)
    passed[0], passed[1] = c1, c3
    key_shape = np.broadcast_shapes(np.shape(k0), np.shape(k1))
    key_shape = (1,) * (len(shape) - len(key_shape)) + key_shape
    keys = np.empty((N_ROUNDS, 2, *key_shape), dtype=np.uint64)
    steps = np.arange(N_ROUNDS, dtype=np.uint64).reshape(N_ROUNDS, *ones)
    keys[:, 0] = (np.broadcast_to(k0, key_shape) + steps * np.uint64(KEY_A)) & _MASK32_U64
    keys[:, 1] = (np.broadcast_to(k1, key_shape) + steps * np.uint64(KEY_B)) & _MASK32_U64
    multipliers = np.array([ROUND_A, ROUND_B], dtype=np.uint64).reshape(2, *ones)
    for r in range(N_ROUNDS):
        # (c0, c2) -> (hi(c2 * B) ^ c1 ^ k0, hi(c0 * A) ^ c3 ^ k1); (c1, c3) -> (lo(c2 * B), lo(c0 * A)).
        product = multiplied * multipliers
        high = product >> _SHIFT32_U64
        product &= _MASK32_U64
        multiplied = high[::-1]
        multiplied ^= passed
        multiplied ^= keys[r]
        passed = product[::-1]
    return multiplied[0], passed[0], multiplied[1], passed[1]


# Up to this many tokens, :func:`token_words_numpy` runs Philox on Python integers that pack one
# 64-bit lane per token, not on numpy arrays: 7-12 us for 1-30 tokens against 60-70 us, 50 against
# 80 us for 200 (one CPU thread); the two meet near 400 tokens.
PACKED_MAX = 256


def _packed(values: np.ndarray | int, count: int, lanes: int) -> int:
    """``int64`` values (an array ``[count]``, or one number for every lane) as one Python integer,
    value ``i`` in bits ``64 i .. 64 i + 63``; ``lanes`` has a 1 in every lane."""
    if not isinstance(values, np.ndarray) or not values.ndim:
        return (int(values) & 0xFFFFFFFFFFFFFFFF) * lanes
    return int.from_bytes(np.ascontiguousarray(values, dtype=np.int64).tobytes(), "little")


def _token_words_packed(seed: np.ndarray | int, token: np.ndarray, stream: np.ndarray | int,
                        offset: np.ndarray | int) -> np.ndarray:
    """:func:`token_words_numpy` for few tokens: Philox-4x32-10 on Python integers holding one
    64-bit lane per token.

    A lane holds a 32-bit word, so a lane times a 32-bit multiplier stays inside its 64 bits (no
    carry reaches the next lane), shifting the whole integer right by 32 moves each lane's high
    word into its low half (the next lane's low word, shifted into the top half, is masked off),
    and xor, and, add of 32-bit lanes stay in their lanes: each Philox step is one integer
    operation for all the tokens, and so is picking each token's word by its lane bits.
    """
    count = token.shape[0]
    lanes = ((1 << (64 * count)) - 1) // ((1 << 64) - 1)  # 1 in every lane
    mask = lanes * MASK32
    seed_bits, offset_bits, token_bits = (_packed(v, count, lanes) for v in (seed, offset, token))
    k0, k1 = seed_bits & mask, (seed_bits >> 32) & mask
    c0, c1, c2, c3 = (token_bits >> 2) & mask, _packed(stream, count, lanes), offset_bits & mask, \
        (offset_bits >> 32) & mask
    key_a, key_b = lanes * KEY_A, lanes * KEY_B
    for _ in range(N_ROUNDS):
        product_a, product_b = c0 * ROUND_A, c2 * ROUND_B
        c0, c1, c2, c3 = ((product_b >> 32) & mask) ^ c1 ^ k0, product_b & mask, \
            ((product_a >> 32) & mask) ^ c3 ^ k1, product_a & mask
        k0, k1 = (k0 + key_a) & mask, (k1 + key_b) & mask
    # Word token % 4: bit 0 of the lane picks c1 over c0 (c3 over c2), bit 1 the second pair.
    odd, high = (token_bits & lanes) * MASK32, ((token_bits >> 1) & lanes) * MASK32
    low_pair, high_pair = c0 ^ ((c0 ^ c1) & odd), c2 ^ ((c2 ^ c3) & odd)
    word = low_pair ^ ((low_pair ^ high_pair) & high)
    return np.frombuffer(bytearray(word.to_bytes(8 * count, "little")), dtype=np.int64)  # writable


def token_words_numpy(seed: np.ndarray | int, token: np.ndarray, stream: np.ndarray | int,
                      offset: np.ndarray | int) -> np.ndarray:
    """:func:`token_words` of a list on the CPU, in numpy: ``int64`` ``token`` ``[K]`` and ``seed``,
    ``stream``, ``offset`` arrays ``[K]`` (or one number for all), the word of each token (``int64`` in
    ``[0, 2**32)``) out.  Few tokens run on packed integers (:func:`_token_words_packed`), more on
    numpy arrays in blocks of ``CPU_BLOCK``."""
    count = token.shape[0]
    if count <= PACKED_MAX:
        return _token_words_packed(seed, token, stream, offset)
    seed, stream, offset = (np.broadcast_to(np.asarray(v, dtype=np.int64), (count,)) for v in (seed, stream, offset))
    out = np.empty(count, dtype=np.int64)
    for start in range(0, count, CPU_BLOCK):
        part = slice(start, start + CPU_BLOCK)
        seed_bits, offset_bits = seed[part].view(np.uint64), offset[part].view(np.uint64)
        words = philox_numpy(seed_bits & _MASK32_U64, seed_bits >> _SHIFT32_U64, (token[part] >> 2).view(np.uint64),
                             stream[part].view(np.uint64), offset_bits & _MASK32_U64, offset_bits >> _SHIFT32_U64)
        out[part] = np.choose(token[part] & 3, words)
    return out


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
    if token.device.type == "cpu":
        arrays = (v.contiguous().numpy() for v in (seed, token, stream, offset))
        return torch.from_numpy(token_words_numpy(*arrays))
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
    if seed.device.type == "cpu":
        first = first_counter.contiguous().numpy() if isinstance(first_counter, torch.Tensor) else first_counter
        return torch.from_numpy(counter_run_words_numpy(seed.contiguous().numpy(), offset.contiguous().numpy(),
                                                        stream.contiguous().numpy(), first, n_counters))
    steps = torch.arange(n_counters, device=seed.device, dtype=torch.int64)
    first = first_counter[:, None] if isinstance(first_counter, torch.Tensor) else first_counter
    words = philox_words(seed[:, None], steps + first, stream[:, None], offset[:, None])
    return torch.stack(words, dim=-1).reshape(seed.shape[0], 4 * n_counters)


def counter_run_words_numpy(seed: np.ndarray, offset: np.ndarray, stream: np.ndarray, first_counter: np.ndarray | int,
                            n_counters: int) -> np.ndarray:
    """:func:`counter_run_words` on the CPU, in numpy (``int64`` arrays ``[N]`` in, ``[N, 4 * n_counters]``
    out), in blocks of about ``CPU_BLOCK`` counters: a round's temporaries then stay in cache (one
    thread, 64 x 12500 counters: 1.7x faster than a single evaluation)."""
    batch = seed.shape[0]
    out = np.empty((batch, n_counters, 4), dtype=np.int64)
    cols = max(1, min(n_counters, CPU_BLOCK))  # whole runs, several rows at a time, unless a run exceeds a block
    rows = max(1, CPU_BLOCK // max(n_counters, 1))
    steps = np.arange(n_counters, dtype=np.int64)
    seed_bits, offset_bits = seed.view(np.uint64)[:, None], offset.view(np.uint64)[:, None]
    keys = (seed_bits & _MASK32_U64, seed_bits >> _SHIFT32_U64)
    offsets = (offset_bits & _MASK32_U64, offset_bits >> _SHIFT32_U64)
    streams = stream.view(np.uint64)[:, None]
    for r in range(0, batch, rows):
        part = slice(r, r + rows)
        first = first_counter[part, None] if isinstance(first_counter, np.ndarray) else first_counter
        for c in range(0, n_counters, cols):
            counters = (steps[c:c + cols] + first).view(np.uint64)
            words = philox_numpy(keys[0][part], keys[1][part], counters, streams[part], offsets[0][part],
                                 offsets[1][part])
            for lane in range(4):
                out[part, c:c + cols, lane] = words[lane]
    return out.reshape(batch, 4 * n_counters)


def uniform_from_words(words: torch.Tensor) -> torch.Tensor:
    """Map 32-bit words to float32 uniforms in ``[2**-24, 1 - 2**-24]`` (exact arithmetic)."""
    return (words >> UNIFORM_SHIFT).to(torch.float32) * UNIFORM_SCALE + UNIFORM_BIAS


def gumbel_from_words(words: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise ``-log(-log(u))`` (float32) of 32-bit words, ``u`` from :func:`uniform_from_words`."""
    return uniform_from_words(words).log_().neg_().log_().neg_()


def gumbel_from_words_numpy(words: np.ndarray) -> np.ndarray:
    """:func:`gumbel_from_words` of an ``int64`` numpy array, as a float32 numpy array: the uniforms and
    the negations in numpy (exact, so the same floats), the two logarithms in torch (the same ones
    as every other path), in place on the same memory."""
    # (word >> 9) < 2**23 converts to float32 exactly, and so does the product with the power of 2.
    noise = np.multiply(words >> UNIFORM_SHIFT, np.float32(UNIFORM_SCALE), dtype=np.float32, casting="unsafe")
    noise += np.float32(UNIFORM_BIAS)
    shared = torch.from_numpy(noise)
    shared.log_()
    np.negative(noise, out=noise)
    shared.log_()
    return np.negative(noise, out=noise)


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
