"""Vocab-parallel sampling equals sampling the concatenated logits: world sizes 1-4, uneven shards,
gloo on CPU in spawned processes, both backends, both orders, rows with invalid parameter values,
top-k / top-p (scalar and per-row, both top-p orders)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import minp_kernels
import minp_kernels.distributed as mkd

from helpers import BACKENDS, lm_like_logits

VOCAB, BATCH = 203, 12
NAN = float("nan")
INVALID_P_ROW, INVALID_TEMP_ROW = 7, 8


def full_logits():
    x = lm_like_logits(BATCH, VOCAB, seed=0, peaked_every=0)
    for row in range(4):  # row r: its max far up, inside the shard boundaries of every world size
        x[row, [5, 60, 120, 190][row]] += 15
    x[4, :110] = float("-inf")  # no finite logit on the first ranks
    x[5] = float("-inf")        # no finite logit anywhere
    x[6, 100:] = float("nan")   # NaN tail
    return x


def shard_bounds(world):
    cuts = [0] + sorted(torch.randperm(VOCAB - 1, generator=torch.Generator().manual_seed(world))[: world - 1]
                        .add(1).tolist()) + [VOCAB]
    return list(zip(cuts[:-1], cuts[1:], strict=True))  # uneven shards


def sampling_cases():
    """name: (p_base, temp, seed, filters) of each vocab-parallel draw (the parent redoes each one unsharded)."""
    p_base = torch.linspace(0, 0.6, BATCH)
    invalid_p_base, invalid_temp = p_base.clone(), torch.full((BATCH,), 1.3)
    invalid_p_base[INVALID_P_ROW], invalid_temp[INVALID_TEMP_ROW] = NAN, -1.0
    top_k = torch.tensor([0, 1, 3, 10, 50, 203, 500, 7, 8, 2, 40, 60])
    top_p = torch.tensor([0.9, 1.0, 0.5, 0.3, 0.95, 0.99, 0.2, 0.7, 0.6, 1.0, 0.8, 0.1])
    rows = torch.arange(BATCH) * 13
    return {
        "per-row seeds": (p_base, 1.3, rows, {}),
        "shared seed": (p_base, 1.3, 99, {}),
        "invalid rows": (invalid_p_base, invalid_temp, rows, {}),
        "top-k 20": (0.0, 1.1, rows, dict(top_k=20)),
        "top-p 0.9": (0.02, 0.9, rows, dict(top_p=0.9)),
        "per-row top-k top-p, vLLM order": (p_base * 0.2, 1.3, rows, dict(top_k=top_k, top_p=top_p,
                                                                          top_p_after_min_p=True)),
    }


def _worker(rank, world, port, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TRITON_INTERPRET="1")
    torch.set_num_threads(1)  # several ranks share the cores (see conftest)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x = full_logits()
        start, end = shard_bounds(world)[rank]
        results = []
        for backend in BACKENDS:
            for temperature_first in (False, True):
                for name, (p_base, temp, seed, filters) in sampling_cases().items():
                    tokens, lp = mkd.sample(x[:, start:end], p_base, temp, vocab_start=start, seed=seed, offset=4,
                                            temperature_first=temperature_first, return_logprobs=True,
                                            backend=backend, **filters)
                    results.append((backend, temperature_first, name, tokens.tolist(), lp.tolist()))
                greedy = mkd.sample(x[:, start:end], 0.1, 0.0, vocab_start=start, seed=1, backend=backend)
                results.append((backend, temperature_first, "greedy", greedy.tolist(), None))
        queue.put((rank, results))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2, 3, 4], ids=lambda world: f"world={world}")
def test_equals_unsharded(world):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    outputs = dict(queue.get(timeout=600) for _ in range(world))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    x = full_logits()
    cases = sampling_cases()
    for index, (backend, temperature_first, name, tokens, lp) in enumerate(outputs[0]):
        for rank in range(1, world):  # every rank agrees
            assert outputs[rank][index][3] == tokens
        tokens = torch.tensor(tokens)
        lp = torch.tensor(lp) if lp is not None else None
        if name == "greedy":
            expected = minp_kernels.sample(x, 0.1, 0.0, seed=1, backend="torch")
            assert torch.equal(tokens, expected)
            continue
        p_base, temp, seed, filters = cases[name]
        expected, expected_lp = minp_kernels.sample(x, p_base, temp, seed=seed, offset=4,
                                                    temperature_first=temperature_first, return_logprobs=True,
                                                    backend="torch", **filters)
        assert torch.equal(tokens, expected), (backend, temperature_first, name)
        assert torch.allclose(lp, expected_lp, atol=1e-5, equal_nan=True)
        assert tokens[5] == -1 and tokens[4] >= 110
        if name == "invalid rows":  # token -1 and log-prob NaN, as for a row with no finite logit
            invalid = [INVALID_P_ROW, INVALID_TEMP_ROW]
            assert (tokens[invalid] == -1).all() and torch.isnan(lp[invalid]).all(), (backend, temperature_first)


def test_rejects_bad_vocab_start():
    with pytest.raises(ValueError, match=r"vocab_start: expected an int >= 0 with .*, got -3 with V_local = 5"):
        mkd.sample(torch.randn(2, 5), 0.1, 1.0, vocab_start=-3)
