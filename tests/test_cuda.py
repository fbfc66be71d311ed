"""CUDA-only checks (run by benchmarks/gpu_check.sh on a GPU machine; skipped without one)."""

import pytest
import torch

import minp_kernels

from helpers import both_backends, lm_like_logits, requires_cuda

pytestmark = requires_cuda


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch,vocab", [(1, 128256), (8, 151936), (128, 128256), (3, 262144), (64, 32003)])
def test_identical_to_torch_on_gpu(batch, vocab, dtype):
    logits = lm_like_logits(batch, vocab, dtype, "cuda", seed=batch)
    seed = torch.arange(batch, device="cuda") * 3 + 1
    for temperature_first in (False, True):
        (tok, lp), (tok_ref, lp_ref) = both_backends(logits, 0.1, 1.0, seed, 5, temperature_first, True)
        assert torch.equal(tok, tok_ref)
        assert torch.allclose(lp, lp_ref, atol=1e-5, rtol=0)


def test_more_than_2_31_elements():
    """int64 row offsets: rows that start past element 2**31 sample what they sample alone."""
    batch, vocab = 8200, 262144  # 2.15e9 bf16 elements, 4.3 GB
    logits = torch.randn(batch, vocab, device="cuda", dtype=torch.bfloat16) * 3
    seed = torch.arange(batch, device="cuda")
    tokens = minp_kernels.sample(logits, 0.1, 1.0, seed=seed)
    tail = slice(batch - 4, batch)
    assert (batch - 4) * vocab > 2**31
    expected = minp_kernels.sample(logits[tail], 0.1, 1.0, seed=seed[tail], backend="torch")
    assert torch.equal(tokens[tail], expected)
    del logits


def test_cuda_graph_replay_matches_eager():
    batch, vocab = 16, 128256
    logits = lm_like_logits(batch, vocab, torch.bfloat16, "cuda")
    seed = torch.arange(batch, device="cuda") + 100
    offset = torch.zeros(batch, device="cuda", dtype=torch.int64)
    p_base = torch.full((batch,), 0.05, device="cuda")
    temp = torch.full((batch,), 1.5, device="cuda")
    minp_kernels.sample(logits, p_base, temp, seed=seed, offset=offset)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = minp_kernels.sample(logits, p_base, temp, seed=seed, offset=offset)
    seen = []
    for step in range(3):
        offset.fill_(step)
        graph.replay()
        eager = minp_kernels.sample(logits, p_base, temp, seed=seed, offset=offset)
        assert torch.equal(captured, eager)
        seen.append(captured.clone())
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])


def test_small_batch_split_graph_replay():
    """B = 1 splits the row over programs merged in the same launch (atomic ticket per row): the
    capture must replay with the ticket reset each time."""
    logits = lm_like_logits(1, 128256, torch.float32, "cuda")
    seed = torch.tensor([7], device="cuda")
    offset = torch.tensor([0], device="cuda")
    minp_kernels.sample(logits, 0.1, 1.0, seed=seed, offset=offset)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = minp_kernels.sample(logits, 0.1, 1.0, seed=seed, offset=offset)
    for step in range(4):
        offset.fill_(step)
        graph.replay()
        assert torch.equal(captured, minp_kernels.sample(logits, 0.1, 1.0, seed=seed, offset=offset, backend="torch"))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_logits_on_another_device_than_the_current_one():
    """Tensor-parallel workers: logits on cuda:1 while cuda:0 is current launch on cuda:1."""
    logits = lm_like_logits(4, 32000, torch.float32, "cuda:1")
    seed = torch.arange(4, device="cuda:1")
    with torch.cuda.device(0):
        tokens = minp_kernels.sample(logits, 0.1, 1.0, seed=seed)
    assert tokens.device == logits.device
    assert torch.equal(tokens, minp_kernels.sample(logits, 0.1, 1.0, seed=seed, backend="torch"))


def test_torch_compile_on_cuda_matches_eager_and_replays():
    """fullgraph compile of a decode step with the Triton backend; then inductor's CUDA graphs
    (mode="reduce-overhead") replayed with an advancing device offset: new tokens, equal to eager."""
    torch._dynamo.reset()
    logits = lm_like_logits(8, 32000, torch.bfloat16, "cuda")
    seed = torch.arange(8, device="cuda")

    def step(x, offset):
        return minp_kernels.sample(x, 0.1, 1.2, seed=seed, offset=offset)

    offset = torch.zeros(8, device="cuda", dtype=torch.int64)
    assert torch.equal(torch.compile(step, fullgraph=True)(logits, offset), step(logits, offset))
    graphed = torch.compile(step, fullgraph=True, mode="reduce-overhead")
    previous = None
    for t in range(4):
        offset = torch.full((8,), t, device="cuda", dtype=torch.int64)
        out = graphed(logits, offset).clone()
        assert torch.equal(out, step(logits, offset))
        assert previous is None or not torch.equal(out, previous)
        previous = out


def test_two_streams_at_once_keep_their_own_tickets():
    """Split rows on two streams in flight together: each stream has its own split workspace, so
    the merges never mix the launches' records (every draw equals the torch backend's)."""
    logits = lm_like_logits(2, 128256, torch.float32, "cuda")
    seed = torch.arange(2, device="cuda") + 5
    expected = minp_kernels.sample(logits, 0.1, 1.0, seed=seed, backend="torch")
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    torch.cuda.synchronize()
    draws = []
    for _ in range(25):
        for stream in streams:
            with torch.cuda.stream(stream):
                draws.append(minp_kernels.sample(logits, 0.1, 1.0, seed=seed))
    torch.cuda.synchronize()
    assert all(torch.equal(tokens, expected) for tokens in draws)
