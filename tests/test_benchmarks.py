"""The benchmark tools: the peers' paths keep the min-p set, the CPU harness writes what it measured
(JSON, markdown with GPU and wall time apart, plots), the host benchmark prints its ratio column, the
help texts list providers and defaults, and the GPU script fails cleanly without CUDA."""

import json
import os
import subprocess
import sys

import pytest
import torch

from benchmarks import baselines, host, run
from benchmarks.families import FAMILIES, make_logits
from benchmarks.report import REPO_ROOT, default_out_dir
from minp_kernels.reference import kept_mask

# ------------------------------------------------------------------------------------------------
# Baselines and row families
# ------------------------------------------------------------------------------------------------
PEER_PATHS = {
    "vllm_style": baselines.vllm_style,
    "hf_warpers": baselines.hf_warpers,
    "mrv2_triton": lambda logits, p_base, temp: baselines.mrv2_triton(  # Triton interpreter on CPU
        logits, p_base, temp, seed=torch.arange(len(logits), device=logits.device)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("family", ["gaussian", "peaked"])
@pytest.mark.parametrize("path", list(PEER_PATHS))
def test_peer_paths_draw_inside_the_min_p_kept_set(path, family, dtype, device):
    logits = make_logits(family, 8, 300, dtype)
    for p_base, temp in ((0.1, 1.0), (0.3, 1.7)):
        tokens = PEER_PATHS[path](logits.to(device), p_base, temp).cpu()
        assert tokens.dtype == torch.int64 and tokens.shape == (8,)
        kept = kept_mask(logits, p_base, temp, temperature_first=True)
        assert kept[torch.arange(8), tokens].all(), (p_base, temp, tokens)


def test_peer_paths_take_per_row_parameters(device):
    logits = make_logits("gaussian", 6, 200)
    p_base = torch.tensor([0.0, 0.05, 0.1, 0.3, 0.6, 1.0])
    temp = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0, 1.0])
    kept = torch.stack([kept_mask(logits[i], p_base[i].item(), temp[i].item(), temperature_first=True)
                        for i in range(6)])
    logits, p_base, temp = logits.to(device), p_base.to(device), temp.to(device)
    for tokens in (baselines.vllm_style(logits, p_base, temp), baselines.mrv2_triton(logits, p_base, temp, seed=5)):
        assert kept[torch.arange(6), tokens.cpu()].all()


def test_mrv2_pair_noise_is_keyed_by_seed_and_token(device):
    """Same seeds, same tokens, whatever the batch around them; other seeds, other draws."""
    row = torch.randn(64, generator=torch.Generator().manual_seed(3)).to(device)  # std 1: many kept tokens
    seeds = torch.arange(8, device=device) * 7919
    tokens = baselines.mrv2_triton(row.expand(8, -1), 0.1, 1.0, seed=seeds)
    assert torch.equal(tokens[2:5], baselines.mrv2_triton(row.expand(3, -1), 0.1, 1.0, seed=seeds[2:5]))
    assert len(set(tokens.tolist())) > 1


def test_families_are_deterministic_and_shaped_as_described():
    for name in FAMILIES:
        assert torch.equal(make_logits(name, 3, 4096), make_logits(name, 3, 4096))
        assert not torch.equal(make_logits(name, 3, 4096), make_logits(name, 3, 4096, copy=1))
    peaked, flat = FAMILIES["peaked"], FAMILIES["flat"]
    assert (kept_mask(make_logits("peaked", 4, 4096), peaked.p_base, peaked.temp).sum(1) == 1).all()
    assert (kept_mask(make_logits("flat", 4, 4096), flat.p_base, flat.temp).sum(1) > 400).all()
    ascending = make_logits("adversarial", 4, 4096)
    assert (ascending.diff(dim=1) >= 0).all()
    assert 2.5 < make_logits("gaussian", 4, 4096).std() < 3.5
    with pytest.raises(ValueError, match="name: expected one of"):
        make_logits("zipf", 1, 8)


# ------------------------------------------------------------------------------------------------
# The CPU harness end to end
# ------------------------------------------------------------------------------------------------
def test_cpu_grid_writes_json_markdown_and_plots(tmp_path):
    import matplotlib  # noqa: F401  (the test extra installs it: plots are part of the output)

    argv = ["--device", "cpu", "--vocabs", "256", "--batches", "1", "3", "--dtypes", "float32", "bfloat16",
            "--families", "gaussian", "flat", "--repeats", "2", "--min-batch-ms", "1", "--no-progress",
            "--out", str(tmp_path), "--tag", "test"]
    paths = run.main(argv)
    prefix = paths[0].removesuffix(".json")
    assert os.path.basename(prefix) == f"cpu-{json.load(open(paths[0]))['environment']['date']}-test"
    payload = json.load(open(prefix + ".json"))
    names = [p["name"] for p in payload["providers"]]
    assert names == ["minp_kernels_torch", "minp_kernels_torch[tf]", "vllm_style", "hf_warpers"]
    rows = payload["results"]
    assert payload["complete"] and payload["points_measured"] == payload["points_planned"] == 8
    assert len(rows) == 8 * len(names) and not [r for r in rows if "error" in r]
    for r in rows:  # CPU: wall time only, bandwidth from it, nothing claimed about GPU time
        assert r["eager_us"] > 0 and len(r["eager_samples_us"]) == 2 and "graph_us" not in r
        assert r["bandwidth_from"] == "eager_us" and 0 < r["copy_fraction"]
        assert (r["p_base"], r["temp"]) == (FAMILIES[r["family"]].p_base, FAMILIES[r["family"]].temp)
    env = payload["environment"]
    assert env["torch_threads"] == 1 and env["commit"] and env["date"] and env["torch"] == torch.__version__

    text = open(prefix + ".md").read()
    assert "None" not in text and "speed-up" not in text and "SMs" not in text
    assert "Wall time per call" in text and "GPU time" not in text
    assert text.count("| V | B | minp_kernels_torch | minp_kernels_torch[tf] | vllm_style | hf_warpers |") == 4
    assert text.count("\n| 256 | 1 |") == 4 and text.count("\n| 256 | 3 |") == 4
    assert sorted(os.path.basename(p) for p in paths[2:]) == sorted(
        f"{os.path.basename(prefix)}-{d}-{f}-bandwidth.png" for d in ("float32", "bfloat16")
        for f in ("gaussian", "flat"))
    assert all(os.path.getsize(p) > 1000 for p in paths[2:])

    os.remove(prefix + ".md")  # --render rebuilds the report from the JSON alone
    run.main(["--render", prefix + ".json", "--no-plots"])
    assert open(prefix + ".md").read() == text


def test_markdown_keeps_gpu_time_and_wall_time_in_separate_tables():
    """A CUDA payload: graph_us values appear only in the GPU table, eager_us only in the wall-time one."""
    env = dict(device_type="cuda", device="GPU X", sm_count=10, cuda="13.0", date="2026-01-01",
               time_utc="2026-01-01 00:00 UTC", python="3.12", torch="2.11", commit="abc")
    rows = [dict(provider=name, family="gaussian", vocab=1000, batch=b, dtype="float32", bytes=4000 * b,
                 graph_us=11.0 + b + i, eager_us=900.0 + b + i,
                 graph_method="cuda_graph" if name == "minp_kernels" else "events_around_eager_calls")
            for i, name in enumerate(["minp_kernels", "hf_warpers"]) for b in (1, 8)]
    for r in rows:
        run.add_bandwidth(r, copy=1000.0)
    payload = dict(environment=env, copy_gbps=1000.0, results=rows, absent={"flashinfer": "did not import"},
                   providers=[dict(name=n, temperature_first=n != "minp_kernels", summary=n)
                              for n in ("minp_kernels", "hf_warpers")],
                   families=[dict(name="gaussian", p_base=0.1, temp=1.0, summary="LM-like")])
    text = run.markdown(payload)
    gpu_table, wall_table = text.split("GPU time per call")[1].split("Host + GPU wall time per eager call")
    graph_cells = ["12.0 (", "19.0 (", "13.0† (", "20.0† ("]
    eager_cells = ["| 901.0 |", "| 902.0 |", "| 908.0 |", "| 909.0 |"]
    assert all(c in gpu_table for c in graph_cells) and not any(c in gpu_table for c in eager_cells)
    assert all(c in wall_table for c in eager_cells) and not any(c[:4] in wall_table for c in graph_cells)
    assert "10 SMs, CUDA 13.0" in text and "flashinfer: did not import" in text and "Copy bandwidth" in text


def test_run_cut_short_keeps_its_checkpoint(tmp_path):
    seen = []
    grid = run.Grid((128,), (1, 2), ("float32",), ("gaussian",))
    providers, _ = run.select_providers(torch.device("cpu"), ["vllm_style"])
    rows, complete = run.run_grid(torch.device("cpu"), grid, providers, run.Settings(repeats=1, min_batch_ms=0.1),
                                  checkpoint=lambda rows: seen.append(len(rows)), progress=False)
    assert complete and seen == [1, 2] and len(rows) == 2
    rows, complete = run.run_grid(torch.device("cpu"), grid, providers, checkpoint=seen.append, progress=False,
                                  budget_s=0.0)
    assert not complete and rows == []


def test_help_lists_providers_families_and_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in [p.name for p in run.PROVIDERS] + list(FAMILIES):
        assert f"\n  {name} " in text, name
    for option in ("--device", "--out", "--no-progress", "--providers", "--quick", "--budget", "--threads"):
        assert option in text
    flat = " ".join(text.split())
    assert "(default: 5)" in flat and f"(default: {default_out_dir()})" in flat
    assert not os.path.abspath(default_out_dir()).startswith(REPO_ROOT + os.sep)
    with pytest.raises(SystemExit):
        host.main(["--help"])
    assert "(default: 300)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# Host benchmark and GPU script
# ------------------------------------------------------------------------------------------------
def test_host_benchmark_prints_the_ratio_column(tmp_path, capsys, device):
    """On CPU (the interpreter set by conftest) the Python time per argument kind; on a GPU machine
    also one provider's eager wall time (the test limits the providers: the others compile for long)."""
    paths = host.main(["--device", device.type, "--batches", "1", "8", "--calls", "20", "--repeats", "2",
                       "--providers", "vllm_style", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| B | arguments | Python us per call | x torch.neg |" in out
    payload = json.load(open(paths[0]))
    kinds = list(host.argument_kinds(1, device))
    assert [(r["batch"], r["arguments"]) for r in payload["python_before_launch"]] == [
        (b, k) for b in (1, 8) for k in kinds]
    for r in payload["python_before_launch"]:
        assert r["python_us"] > 0 and r["ratio_to_neg"] == pytest.approx(r["python_us"] / payload["neg_us"])
        assert f"| {r['batch']} | {r['arguments']} | {r['python_us']:.1f} | {r['ratio_to_neg']:.1f} |" in out
    if device.type == "cuda":
        assert [(r["batch"], r["provider"]) for r in payload["eager_wall"]] == [(1, "vllm_style"), (8, "vllm_style")]
        assert all(r["eager_us"] > 0 for r in payload["eager_wall"])
    else:
        assert "eager_wall" not in payload  # provider wall times need a GPU
    import minp_kernels.launch

    assert minp_kernels.launch.launch_kernel.__name__ != "<lambda>"  # the no-op is gone afterwards


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script would run for real")
def test_gpu_check_fails_cleanly_without_cuda(tmp_path):
    script = os.path.join(REPO_ROOT, "benchmarks", "gpu_check.sh")
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(["bash", script, "--out", str(tmp_path / "out")], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 2
    assert "no CUDA device" in result.stdout and not (tmp_path / "out").exists()
    unknown = subprocess.run(["bash", script, "--bogus"], capture_output=True, text=True, timeout=60, env=env)
    assert unknown.returncode == 2 and "unknown argument --bogus" in unknown.stdout
