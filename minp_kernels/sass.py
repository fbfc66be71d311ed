"""Compile a Triton kernel launch for a real GPU without one, and read its SASS.

Shared by :mod:`minp_kernels.aot` (resources of every specialisation) and :mod:`minp_kernels.cost`
(instruction counts of probe kernels), so neither imports the other.  Uses the CUDA tools bundled
in the Triton wheel.
"""

import os
import subprocess

import torch

POINTER_TYPES = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float64: "*fp64",
                 torch.int64: "*i64", torch.int32: "*i32"}
COMPILE_OPTIONS = ("num_warps", "enable_fp_fusion", "maxnreg")


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
