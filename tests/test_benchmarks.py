"""The benchmark harness runs on the CPU end to end, and the GPU script fails cleanly without CUDA."""

import json
import os
import subprocess

import pytest
import torch

from benchmarks import run as bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_grid_writes_json_table_and_plots(tmp_path):
    device = torch.device("cpu")
    results = bench.summarize(bench.run_grid(device, [1000], [1, 4], ["float32", "bfloat16"], (False,), False), None)
    names = {r["provider"] for r in results}
    assert {"minp_kernels", "torch_ref", "torch_ref_compiled", "vllm_style", "gumbel_max_compiled"} <= names
    assert all("median_us" in r and r["median_us"] > 0 for r in results), [r for r in results if "error" in r]
    assert all("minp_speedup" in r for r in results)
    table = bench.markdown(results, bench.environment(device), None)
    assert table.count("\n| 1000 |") == 4 and "FlashInfer" in table
    paths = bench.plots(results, str(tmp_path / "cpu"))
    assert [os.path.basename(p) for p in paths] == ["cpu-speedup.png"]  # no bandwidth plot without a copy figure
    json.dumps(results)


def test_gpu_check_fails_cleanly_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the script would run for real")
    result = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no CUDA device" in result.stdout
    unknown = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--bogus"],
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown argument --bogus" in unknown.stdout


def test_vllm_style_baseline_keeps_min_p_set():
    from minp_kernels.reference import kept_mask

    logits = torch.randn(64, 100, generator=torch.Generator().manual_seed(0)) * 3
    tokens = bench.vllm_style(logits, None, True)
    assert kept_mask(logits, bench.P_BASE, bench.TEMP, temperature_first=True)[torch.arange(64), tokens].all()
