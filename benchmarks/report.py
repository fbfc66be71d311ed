"""What every benchmark result records and how it is written: environment, output folder, JSON, markdown."""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_out_dir() -> str:
    """Outside the tracked tree: ``$XDG_CACHE_HOME/minp_kernels/bench`` (``~/.cache/...`` by default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "minp_kernels", "bench")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment(device: torch.device) -> dict:
    """Device, versions, commit and date of a run, for the JSON and the markdown header."""
    device = torch.device(device)
    now = datetime.datetime.now(datetime.timezone.utc)
    status = _git("status", "--porcelain", "--untracked-files=no")
    info = dict(date=now.date().isoformat(), time_utc=now.strftime("%Y-%m-%d %H:%M UTC"),
                device_type=device.type, python=platform.python_version(), platform=platform.platform(),
                torch=torch.__version__, triton=_version("triton"), transformers=_version("transformers"),
                flashinfer=_version("flashinfer-python") or _version("flashinfer"),
                commit=_git("rev-parse", "--short", "HEAD"), uncommitted_changes=bool(status) if status is not None
                else None, torch_threads=torch.get_num_threads(), cpu=_cpu_model(), cpu_count=os.cpu_count())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device=props.name, sm_count=props.multi_processor_count, cuda=torch.version.cuda,
                    gpu_memory_gib=round(props.total_memory / 2**30, 1))
    else:
        info.update(device="cpu")
    return info


def device_slug(env: dict) -> str:
    """File-name stem of a device: ``cpu``, ``nvidia-h100-80gb-hbm3``, ..."""
    return "".join(c if c.isalnum() else "-" for c in env["device"].lower()).strip("-")


def file_suffix(tag: str) -> str:
    """``-tag`` for a non-empty tag, else nothing."""
    return f"-{tag}" if tag else ""


def header_lines(env: dict, copy_gbps: float | None = None) -> list[str]:
    """Markdown lines naming the device, versions, commit and date (only what is known)."""
    if env["device_type"] == "cuda":
        device = f"{env['device']}, {env['sm_count']} SMs, CUDA {env['cuda']}"
    else:
        threads = env["torch_threads"]
        device = f"CPU ({env['cpu']}), {threads} torch thread{'s' if threads != 1 else ''} of {env['cpu_count']} cores"
    versions = ", ".join(f"{name} {env[name]}" for name in ("python", "torch", "triton", "transformers", "flashinfer")
                         if env.get(name))
    commit = f"commit {env['commit']}" if env.get("commit") else "commit unknown (not run from a git checkout)"
    if env.get("uncommitted_changes"):
        commit += " with uncommitted changes"
    lines = [f"- Device: {device}", f"- Software: {versions}", f"- Run {env['time_utc']}, {commit}"]
    if copy_gbps:
        what = "device-to-device" if env["device_type"] == "cuda" else "memory, same thread count"
        lines.append(f"- Copy bandwidth ({what}, bytes read + written): {copy_gbps:.0f} GB/s")
    return lines


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str, payload: dict) -> None:
    """Write ``payload`` atomically (a run killed mid-write keeps the previous checkpoint)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def cpu_bench_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every same-run CPU comparison takes: batch sizes, vocabulary, repeats, output."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64], help="batch sizes")
    parser.add_argument("--vocab", type=int, default=128256, help="vocabulary size V")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per point (median)")
    parser.add_argument("--out", default=default_out_dir(), help="output folder")
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    return parser


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after every option, except unset ones (None / False) whose help says what happens."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == "":
            return action.help
        return super()._get_help_string(action)


def main() -> None:
    """``python -m benchmarks.report``: print this machine's environment record (gpu_check's env step)."""
    env = environment(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    print(json.dumps(env, indent=1))


if __name__ == "__main__":
    main()
