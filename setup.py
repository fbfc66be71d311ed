from setuptools import find_packages, setup

setup(
    name="minp_kernels",
    version="0.1.0",
    description="Fused Triton kernels for min-p sampling in LLM serving",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["minp_kernels", "minp_kernels.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.11,<2.14", "triton>=3.6,<3.10", "numpy"],
    extras_require={
        "test": ["pytest", "pytest-benchmark", "pytest-xdist", "scipy", "hypothesis", "transformers"],
        "bench": ["tqdm", "matplotlib", "pytest-benchmark"],
    },
    license="Apache-2.0",
)
