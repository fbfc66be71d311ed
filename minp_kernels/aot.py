"""Compile every kernel specialisation for real GPUs without one, report its resources, model its cost.

``python -m minp_kernels.aot --arch 80 90`` compiles each kernel (each logits dtype, with and
without log-probabilities, row splits and per-row tensors) with ``triton.compile`` for the given SM
versions, then reads registers, stack and local memory with the ``cuobjdump`` bundled in the Triton
wheel and counts 16-byte global loads in the SASS.  Exit status 1 on any spill.  The signatures are
derived from the launcher's own keyword arguments (:func:`minp_kernels.launch.sample_kernel_arguments`),
so what is compiled here is what a launch passes.

``python -m minp_kernels.aot --cost`` prints the static cost model of :mod:`minp_kernels.cost`.

Both must run without ``TRITON_INTERPRET`` (the interpreter replaces the kernels).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
POINTER_TYPES = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float64: "*fp64",
                 torch.int64: "*i64", torch.int32: "*i32"}
COMPILE_OPTIONS = ("num_warps", "enable_fp_fusion", "maxnreg")
AOT_VOCAB = 128256  # vocabulary of the example launches
AOT_SM_COUNT, AOT_MAX_BATCH = 132, 2048  # plan classes as an H100 meets them up to this batch
# (name, per-row tensors, log-probabilities) of each sample-kernel specialisation; the serving default first.
# The default is compiled for every plan class, the others for the split class (more registers live).
VARIANTS = [("tokens", False, False), ("logprobs", False, True), ("per_row", True, True)]


def tool(name):
    """Path of a CUDA tool bundled in the Triton wheel (cuobjdump, nvdisasm, ptxas)."""
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def signature_of(kwargs):
    """(signature, constexprs, options) of a keyword launch: the types Triton's JIT would see."""
    signature, constexprs, options = {}, {}, {}
    for name, value in kwargs.items():
        if name in COMPILE_OPTIONS:
            options[name] = value
        elif name.isupper():
            signature[name], constexprs[name] = "constexpr", value
        elif isinstance(value, torch.Tensor):
            signature[name] = POINTER_TYPES[value.dtype]
        elif isinstance(value, float):
            signature[name] = "fp32"
        else:
            signature[name] = "i32" if -2**31 <= value < 2**31 else "i64"  # by value, as the JIT types an int
    return signature, constexprs, options


def _example_params(batch, per_row):
    from .params import RowParams

    meta = dict(device="meta")
    if per_row:
        return RowParams(torch.empty(batch, **meta), torch.empty(batch, **meta), torch.empty(batch, dtype=torch.int64,
                         **meta), torch.empty(batch, dtype=torch.int64, **meta), False)
    # Serving default: scalar p_base / temp, per-request seeds and decode steps as device tensors.
    return RowParams(0.1, 1.0, torch.empty(batch, dtype=torch.int64, **meta),
                     torch.empty(batch, dtype=torch.int64, **meta), False)


def launches():
    """Yield (label, kernel, keyword arguments) of every specialisation, built by the launcher: for
    each dtype the plan classes that run (:func:`minp_kernels.launch.plan_classes`), then the shard."""
    from . import launch

    if launch.INTERPRETED:
        raise RuntimeError("unset TRITON_INTERPRET: the interpreter replaces the kernels that AOT compiles")
    device = torch.device("meta")
    for dtype_name, dtype in DTYPES.items():
        classes = launch.plan_classes(device, AOT_VOCAB, dtype.itemsize, AOT_MAX_BATCH, AOT_SM_COUNT)
        for batch in classes.values():
            logits = torch.empty(batch, AOT_VOCAB, device=device, dtype=dtype)
            plan = launch.launch_plan(device, batch, AOT_VOCAB, dtype.itemsize, sm_count=AOT_SM_COUNT)
            split = plan.num_splits > 1
            for name, per_row, logprobs in VARIANTS if split else VARIANTS[:1]:
                tokens = torch.empty(batch, device=device, dtype=torch.int64)
                out = torch.empty(batch, device=device, dtype=torch.float32) if logprobs else tokens
                workspace = torch.empty(plan.workspace_words, device=device, dtype=torch.int32) if split else None
                kwargs = launch.sample_kernel_arguments(logits, _example_params(batch, per_row), False, logprobs, plan,
                                                        tokens, out, workspace)
                yield f"sample[{dtype_name},{name},{'split' if split else 'whole'},B={batch}]", \
                    launch.minp_sample_kernel, kwargs
        logits = torch.empty(8, AOT_VOCAB, device=device, dtype=dtype)
        records = torch.empty(8, 4, device=device)
        kwargs = launch.shard_kernel_arguments(logits, torch.empty(8, device=device), _example_params(8, False),
                                               False, 0, records)
        yield f"shard[{dtype_name}]", launch.minp_shard_kernel, kwargs


def jit_aligned_ints(kernel, kwargs):
    """The integer arguments the JIT gives a divisibility-by-16 hint at this launch: those it may
    specialise (not in ``do_not_specialize``) whose value is a multiple of 16 (a real vocabulary
    and row stride: 32000, 128256, 151936, 262144).  Without the hint the SASS shows scalar loads,
    so an argument that addresses memory must not be kept from specialisation."""
    kept_general = {param.name for param in kernel.params if param.do_not_specialize}
    return {name for name, value in kwargs.items() if type(value) is int and name not in kept_general
            and value % 16 == 0 and not name.isupper() and name not in COMPILE_OPTIONS}


def compile_for(kernel, kwargs, arch, aligned_ints=None):
    """``triton.compile`` of one keyword launch for ``sm_<arch>``; returns the compiled kernel.

    Pointers and the integer arguments in ``aligned_ints`` (default: the JIT's own choice,
    :func:`jit_aligned_ints`) get divisibility-by-16 hints, so what is compiled is what a launch
    with these arguments runs (the JIT's ``== 1`` specialisation of integers is not reproduced).
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if aligned_ints is None:
        aligned_ints = jit_aligned_ints(kernel, kwargs)
    signature, constexprs, options = signature_of(kwargs)
    signature = {name: signature[name] for name in kernel.arg_names}  # declaration order
    aligned = [i for i, (name, kind) in enumerate(signature.items()) if kind.startswith("*") or name in aligned_ints]
    source = ASTSource(kernel, signature, constexprs=constexprs,
                       attrs={(i,): [["tt.divisibility", 16]] for i in aligned})
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def sass_of(compiled, tmp):
    """(resource usage text, SASS text) of a compiled kernel."""
    cubin = os.path.join(tmp, "kernel.cubin")
    with open(cubin, "wb") as f:
        f.write(compiled.asm["cubin"])
    usage = subprocess.run([tool("cuobjdump"), "--dump-resource-usage", cubin], capture_output=True, text=True,
                           check=True).stdout
    sass = subprocess.run([tool("cuobjdump"), "--dump-sass", cubin], capture_output=True, text=True, check=True).stdout
    return usage, sass


def resource_report(archs=(80, 90)):
    """Compile every specialisation for each SM version; return one dict per (kernel, arch)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            for label, kernel, kwargs in launches():
                usage, sass = sass_of(compile_for(kernel, kwargs, arch), tmp)
                fields = dict(re.findall(r"(REG|STACK|LOCAL|SHARED):(\d+)", usage))
                rows.append(dict(kernel=label, arch=f"sm_{arch}", registers=int(fields.get("REG", -1)),
                                 stack=int(fields.get("STACK", 0)), local=int(fields.get("LOCAL", 0)),
                                 shared=int(fields.get("SHARED", 0)),
                                 ldg128=len(re.findall(r"LDG\.E\.(?:EL\.)?(?:LTC\d+B\.)?128", sass)),
                                 ldg_total=len(re.findall(r"\bLDG\.", sass))))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90], help="SM versions to compile for")
    parser.add_argument("--cost", action="store_true",
                        help="print the static cost model (sm_90 SASS counts x simulated noise frequencies)")
    args = parser.parse_args(argv)
    if args.cost:
        from .cost import main as cost_main

        return cost_main()
    rows = resource_report(args.arch)
    print(f"{'kernel':44s} {'arch':6s} {'regs':>4s} {'stack':>5s} {'local':>5s} {'LDG.128':>7s} {'LDG':>4s}")
    for r in rows:
        print(f"{r['kernel']:44s} {r['arch']:6s} {r['registers']:4d} {r['stack']:5d} {r['local']:5d} "
              f"{r['ldg128']:7d} {r['ldg_total']:4d}")
    spilled = [r for r in rows if r["stack"] or r["local"]]
    if spilled:
        print("spills:", ", ".join(f"{r['kernel']}@{r['arch']}" for r in spilled))
    return 1 if spilled else 0


if __name__ == "__main__":
    sys.exit(main())
