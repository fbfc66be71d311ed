"""CUDA-only checks (run by benchmarks/gpu_check.sh on a GPU machine; skipped without one).

The graph, stream, compile and stress tests below target what the interpreter cannot show, since it
runs programs one at a time: concurrent launches sharing split state, captures, cudagraph pools.
"""

import pytest
import torch

import minp_kernels
from minp_kernels import launch
from minp_kernels.kernels import minp_sample_kernel

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
    """Split rows on two streams in flight together: each launch has its own zeroed workspace, so
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


def _keep_workspaces(monkeypatch):
    """Spy on launches: the list of split workspaces they were given (kept alive, for inspection)."""
    kept = []
    real = launch.launch_kernel

    def spy(kernel, grid, kwargs):
        if kwargs.get("HAS_SPLITS"):
            splits = -(-kwargs["vocab_size"] // kwargs["cols_per_program"])
            kept.append((kwargs["split_workspace_ptr"], splits))
        real(kernel, grid, kwargs)

    monkeypatch.setattr(launch, "launch_kernel", spy)
    return kept


def _all_splits_arrived_and_finished(workspace, num_splits, batch):
    sync = workspace[:batch]
    return bool(((sync & 0xFFFF) == num_splits).all() and ((sync >> 16) == num_splits).all())


def test_two_graphs_replayed_alternately_on_two_streams(monkeypatch):
    """Two graphs captured on torch's default capture stream, replayed 1,000 times each, alternately
    on two streams so that their replays overlap.  Before per-launch workspaces both graphs shared one
    (keyed by the capture stream): interleaved tickets gave early merges (wrong tokens) or none (stale
    outputs).  Each replay advances its offset, so a replay that wrote nothing shows as a stale token."""
    kept = _keep_workspaces(monkeypatch)
    batch, vocab, replays = 2, 128256, 1000
    graphs, outputs, inputs = [], [], []
    for k in range(2):
        logits = lm_like_logits(batch, vocab, torch.float32, "cuda", seed=20 + k, peaked_every=0)
        seed = torch.arange(batch, device="cuda") + 10 * k
        offset = torch.zeros(batch, device="cuda", dtype=torch.int64)
        minp_kernels.sample(logits, 0.1, 1.0, seed=seed, offset=offset)  # compile outside the capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs.append(minp_kernels.sample(logits, 0.1, 1.0, seed=seed, offset=offset))
        graphs.append(graph)
        inputs.append((logits, seed, offset))
    captured = kept[-2:]
    assert captured[0][0].data_ptr() != captured[1][0].data_ptr()
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    torch.cuda.synchronize()
    draws = [[], []]
    for step in range(replays):
        for k in range(2):
            with torch.cuda.stream(streams[k]):
                inputs[k][2].fill_(step)
                graphs[k].replay()
                draws[k].append(outputs[k].clone())
    torch.cuda.synchronize()
    for (workspace, num_splits) in captured:
        assert _all_splits_arrived_and_finished(workspace, num_splits, batch)
    for k in range(2):
        logits, seed, _ = inputs[k]
        for step in range(replays):
            expected = minp_kernels.sample(logits, 0.1, 1.0, seed=seed, offset=step, backend="torch")
            assert torch.equal(draws[k][step], expected), (k, step)


def test_first_launch_inside_a_capture_then_eager_on_that_stream():
    """The first launch of a shape class inside a capture, then an eager call on the same stream before
    any replay: the eager call must not read the capture's (uninitialised) memory.  Log-softmax rows
    have a max below 0, so a leftover published max of 0.0 would have kept a subset of each split."""
    torch.cuda.synchronize()
    batch, vocab = 3, 151936
    logits = torch.log_softmax(lm_like_logits(batch, vocab, torch.float32, "cuda", seed=31), dim=-1)
    seed = torch.arange(batch, device="cuda") + 7
    stream = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        captured = minp_kernels.sample(logits, 0.05, 1.2, seed=seed)
    expected = minp_kernels.sample(logits, 0.05, 1.2, seed=seed, backend="torch")
    with torch.cuda.stream(stream):
        eager = minp_kernels.sample(logits, 0.05, 1.2, seed=seed)
    torch.cuda.synchronize()
    assert torch.equal(eager, expected)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, expected)


def test_reduce_overhead_compile_across_alternating_batch_sizes():
    """torch.compile(mode="reduce-overhead") with cudagraph trees' slow-path asserts on: batch sizes
    4 / 16 / 64 alternate (each its own graph in one tree, sharing a pool); every step equals the torch
    backend.  The workspace is allocated inside the op on every call, so the pool tracks it."""
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    previous = inductor_config.triton.slow_path_cudagraph_asserts
    inductor_config.triton.slow_path_cudagraph_asserts = True
    try:
        def step(x, seed, offset):
            return minp_kernels.sample(x, 0.1, 1.0, seed=seed, offset=offset)

        graphed = torch.compile(step, fullgraph=True, mode="reduce-overhead", dynamic=False)
        rows = {b: lm_like_logits(b, 128256, torch.bfloat16, "cuda", seed=b) for b in (4, 16, 64)}
        for t in range(6):
            for b, logits in rows.items():
                seed = torch.arange(b, device="cuda")
                offset = torch.full((b,), t, device="cuda", dtype=torch.int64)
                out = graphed(logits, seed, offset).clone()
                expected = minp_kernels.sample(logits, 0.1, 1.0, seed=seed, offset=offset, backend="torch")
                assert torch.equal(out, expected), (t, b)
    finally:
        inductor_config.triton.slow_path_cudagraph_asserts = previous
        torch._dynamo.reset()


def test_stress_ten_thousand_small_launches(monkeypatch):
    """10,000 eager launches at B = 1-4 (split rows, one wave: the bounded wait for split maxima is
    exercised every time), each equal to the torch backend, and every workspace complete afterwards."""
    kept = _keep_workspaces(monkeypatch)
    vocab = 128256
    logits = lm_like_logits(4, vocab, torch.float32, "cuda", seed=41)
    draws = []
    for i in range(10_000):
        batch = 1 + i % 4
        draws.append(minp_kernels.sample(logits[:batch], 0.1, 1.0, seed=i))
        if len(kept) > 64:
            del kept[:-64]  # keep the last launches' workspaces only
    torch.cuda.synchronize()
    for workspace, num_splits in kept:
        assert _all_splits_arrived_and_finished(workspace, num_splits, workspace.numel() // (2 + 6 * num_splits))
    for i, tokens in enumerate(draws):
        batch = 1 + i % 4
        assert torch.equal(tokens, minp_kernels.sample(logits[:batch], 0.1, 1.0, seed=i, backend="torch")), i


def _compiled_variants(kernel):
    """Compiled variants in a JITFunction's caches (Triton 3.6-3.9: device -> (cache, ...))."""
    return sum(len(entry[0]) for entry in kernel.device_caches.values())


def test_warmup_leaves_nothing_to_compile():
    """After warmup(), every batch size up to max_batch launches without a compile."""
    vocab, max_batch = 128256, 96
    for dtype in (torch.bfloat16, torch.float32):
        minp_kernels.warmup(vocab, dtype, max_batch, per_row=(True, False))
        before = _compiled_variants(minp_sample_kernel)
        logits = lm_like_logits(max_batch, vocab, dtype, "cuda", seed=5)
        for batch in range(1, max_batch + 1):
            rows = torch.arange(batch, device="cuda")
            minp_kernels.sample(logits[:batch], torch.full((batch,), 0.1, device="cuda"),
                                torch.ones(batch, device="cuda"), seed=rows, offset=rows)
            minp_kernels.sample(logits[:batch], 0.1, 1.0, seed=batch, offset=2**31 + batch)
        torch.cuda.synchronize()
        assert _compiled_variants(minp_sample_kernel) == before, dtype


def test_huge_and_infinite_rows_identical_on_gpu():
    """Rows of +inf / 1e30 / offset logits: the kernel scores against the row max exactly as the torch backend."""
    inf = float("inf")
    rows = torch.tensor([[0.0, inf, 5.0, inf], [1e30, 1e30, 0.0, -inf], [inf, 3e38, inf, -2.0],
                         [16_000_000.0, 15_999_999.0, 15_999_998.0, 15_999_990.0]], device="cuda")
    logits = rows.repeat(512, 1)
    seed = torch.arange(logits.shape[0], device="cuda")
    for p_base, temp in ((0.1, 1.0), (0.0, 0.7), (0.01, 2.0)):
        (tok, lp), (tok_ref, lp_ref) = both_backends(logits, p_base, temp, seed, 3, False, True)
        assert torch.equal(tok, tok_ref)
        assert torch.allclose(lp, lp_ref, atol=1e-5, rtol=0, equal_nan=True)


def test_filters_logprobs_and_speculative_identical_backends_on_gpu():
    """Top-k / top-p (per-row and scalar), the log-prob fields and speculative verification on CUDA:
    the Triton backend and the torch backend (the dense path there) agree bit for bit."""
    from minp_kernels.speculative import verify

    logits = lm_like_logits(64, 128256, torch.bfloat16, "cuda", seed=12)
    seed = torch.arange(64, device="cuda")
    top_k = torch.randint(0, 200, (64,), device="cuda")
    top_p = torch.rand(64, device="cuda") * 0.9 + 0.1
    for kwargs in (dict(top_k=50), dict(top_p=0.9), dict(top_k=top_k, top_p=top_p, top_p_after_min_p=True)):
        (tok, lp), (tok_ref, lp_ref) = both_backends(logits, 0.05, 1.1, seed, 2, True, True, **kwargs)
        assert torch.equal(tok, tok_ref), kwargs
        assert torch.allclose(lp, lp_ref, atol=1e-5, rtol=0, equal_nan=True)
    outs = [minp_kernels.sample_with_logprobs(logits, 0.05, 1.1, seed=seed, top_logprobs=20, backend=backend,
                                              logprobs_mode=mode, top_k=top_k)
            for mode in ("processed", "raw") for backend in ("triton", "torch")]
    for a, b in ((outs[0], outs[1]), (outs[2], outs[3])):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    target = logits[:40].float().view(8, 5, -1)
    drafts = target[:, :4].argmax(dim=-1)
    a = verify(target, drafts, 0.05, 1.0, seed=seed[:8], backend="triton")
    b = verify(target, drafts, 0.05, 1.0, seed=seed[:8], backend="torch")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
