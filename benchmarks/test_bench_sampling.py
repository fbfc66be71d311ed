"""pytest-benchmark timings: ``pytest benchmarks --benchmark-only``.

The torch sampler on the CPU always; the Triton kernel and the torch sampler on CUDA when present.
These are measurements, not assertions about speed.
"""

import pytest
import torch

import minp_kernels

CUDA = torch.cuda.is_available()
SHAPES = [(1, 32000), (8, 32000), (32, 128256)]


def make(batch, vocab, device):
    return torch.randn(batch, vocab, device=device) * 3, torch.arange(batch, device=device)


@pytest.mark.parametrize("batch,vocab", SHAPES[:2])
def test_torch_backend_cpu(benchmark, batch, vocab):
    logits, seed = make(batch, vocab, "cpu")
    tokens = benchmark(minp_kernels.sample, logits, 0.1, 1.0, seed=seed, backend="torch")
    assert tokens.shape == (batch,)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("batch,vocab", SHAPES)
def test_cuda(benchmark, backend, batch, vocab):
    logits, seed = make(batch, vocab, "cuda")

    def run():
        out = minp_kernels.sample(logits, 0.1, 1.0, seed=seed, backend=backend)
        torch.cuda.synchronize()
        return out

    assert benchmark(run).shape == (batch,)
