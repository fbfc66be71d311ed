"""Vocab-parallel sampling equals sampling the concatenated logits: world sizes 1-4, uneven shards,
gloo on CPU in spawned processes, both backends, both orders."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import minp_kernels
import minp_kernels.distributed as mkd

VOCAB, BATCH = 203, 12


def full_logits():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, VOCAB, generator=gen) * 3
    for row in range(4):  # row r: its max far up, inside the shard boundaries of every world size
        x[row, [5, 60, 120, 190][row]] += 15
    x[4, :110] = float("-inf")  # no finite logit on the first ranks
    x[5] = float("-inf")        # no finite logit anywhere
    x[6, 100:] = float("nan")   # NaN tail
    return x


def shard_bounds(world):
    cuts = [0] + sorted(torch.randperm(VOCAB - 1, generator=torch.Generator().manual_seed(world))[: world - 1]
                        .add(1).tolist()) + [VOCAB]
    return list(zip(cuts[:-1], cuts[1:]))  # uneven shards


def _worker(rank, world, port, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TRITON_INTERPRET="1")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x = full_logits()
        start, end = shard_bounds(world)[rank]
        results = []
        for backend in ("torch", "triton"):
            for tf in (False, True):
                for seed in (torch.arange(BATCH) * 13, 99):
                    p_base = torch.linspace(0, 0.6, BATCH)
                    tokens, lp = mkd.sample(x[:, start:end], p_base, 1.3, vocab_start=start, seed=seed, offset=4,
                                            temperature_first=tf, return_logprobs=True, backend=backend)
                    results.append((backend, tf, isinstance(seed, int), tokens.tolist(), lp.tolist()))
                greedy = mkd.sample(x[:, start:end], 0.1, 0.0, vocab_start=start, seed=1, backend=backend)
                results.append((backend, tf, "greedy", greedy.tolist(), None))
        queue.put((rank, results))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2, 3, 4])
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
    for index, (backend, tf, kind, tokens, lp) in enumerate(outputs[0]):
        for rank in range(1, world):  # every rank agrees
            assert outputs[rank][index][3] == tokens
        tokens = torch.tensor(tokens)
        lp = torch.tensor(lp) if lp is not None else None
        if kind == "greedy":
            expected = minp_kernels.sample(x, 0.1, 0.0, seed=1, backend="torch")
            assert torch.equal(tokens, expected)
            continue
        seed = 99 if kind else torch.arange(BATCH) * 13
        expected, expected_lp = minp_kernels.sample(x, torch.linspace(0, 0.6, BATCH), 1.3, seed=seed, offset=4,
                                                    temperature_first=tf, return_logprobs=True, backend="torch")
        assert torch.equal(tokens, expected), (backend, tf, kind)
        assert torch.allclose(lp, expected_lp, atol=1e-5, equal_nan=True)
        assert tokens[5] == -1 and tokens[4] >= 110



def test_rejects_bad_vocab_start():
    with pytest.raises(ValueError, match="vocab_start: expected an int >= 0, got -3"):
        mkd.sample(torch.randn(2, 5), 0.1, 1.0, vocab_start=-3)
