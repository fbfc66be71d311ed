"""Compile every kernel specialisation for real GPUs without one, and report its resources.

``python -m minp_kernels.aot --arch 80 90`` compiles each kernel (each logits dtype, with and
without log-probabilities, row splitting and per-row tensors) with ``triton.compile`` for the
given SM versions, then reads registers, stack and local memory with the ``cuobjdump`` bundled in
the Triton wheel and counts 16-byte global loads in the SASS.  It must run without
``TRITON_INTERPRET`` (the interpreter replaces the kernels).  Exit status 1 on any spill.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

DTYPES = {"float32": "*fp32", "float16": "*fp16", "bfloat16": "*bf16"}
ROW_ARGS = {
    "p_ptr": "*fp32", "p_stride": "i32", "log_p_value": "fp32",
    "temp_ptr": "*fp32", "temp_stride": "i32", "temp_value": "fp32",
    "seed_ptr": "*i64", "seed_stride": "i32", "seed_value": "i64",
    "offset_ptr": "*i64", "offset_stride": "i32", "offset_value": "i64",
    "tokens_ptr": "*i64", "logprobs_ptr": "*fp32", "partial_ptr": "*fp32", "partial_col_ptr": "*i32",
}
# (name, flags) of each specialisation compiled; the serving default first.
VARIANTS = [
    ("tokens", dict(P_PER_ROW=False, TEMP_PER_ROW=False, RETURN_LOGPROBS=False, SPLIT=False)),
    ("logprobs", dict(P_PER_ROW=False, TEMP_PER_ROW=False, RETURN_LOGPROBS=True, SPLIT=False)),
    ("per_row_split", dict(P_PER_ROW=True, TEMP_PER_ROW=True, RETURN_LOGPROBS=True, SPLIT=True)),
]


def _tool(name):
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _sources(block, max_tiles):
    """Yield (label, ASTSource) for every specialisation."""
    from triton.compiler import ASTSource

    from . import kernels as ts
    from .launch import INTERPRETED

    if INTERPRETED:
        raise RuntimeError("unset TRITON_INTERPRET: the interpreter replaces the kernels that AOT compiles")
    common = dict(SEED_FROM_PTR=True, SEED_SHARED=False, OFFSET_FROM_PTR=True, TEMPERATURE_FIRST=False)
    for dtype, ptr in DTYPES.items():
        width = 4 if dtype == "float32" else 8
        head = {"logits_ptr": ptr, "stride_row": "i32", "vocab_size": "i32", "cols_per_program": "i32"}
        for name, flags in VARIANTS:
            constexprs = dict(common, **flags, BLOCK=block, MAX_TILES=max_tiles, WIDTH=width)
            signature = dict(head, **ROW_ARGS, **{k: "constexpr" for k in constexprs})
            yield f"sample[{dtype},{name}]", _ast(ASTSource, ts._minp_sample_kernel, signature, constexprs)
        merge = dict(common, P_PER_ROW=False, TEMP_PER_ROW=False, RETURN_LOGPROBS=True, BLOCK=block, MAX_SPLITS=64,
                     WIDTH=width)
        signature = dict(head, num_splits="i32", **ROW_ARGS, **{k: "constexpr" for k in merge})
        yield f"merge[{dtype}]", _ast(ASTSource, ts._minp_merge_kernel, signature, merge)
        shard = dict(common, P_PER_ROW=False, TEMP_PER_ROW=False, RETURN_LOGPROBS=True, BLOCK=block, WIDTH=width)
        row_args = {k: v for k, v in ROW_ARGS.items() if k not in ("tokens_ptr", "logprobs_ptr", "partial_ptr",
                                                                     "partial_col_ptr")}
        signature = dict(logits_ptr=ptr, stride_row="i32", vocab_size="i32", token_base="i32", row_max_ptr="*fp32",
                         **row_args, out_ptr="*fp32", out_col_ptr="*i32", **{k: "constexpr" for k in shard})
        yield f"shard[{dtype}]", _ast(ASTSource, ts._minp_shard_kernel, signature, shard)


def _ast(ast_source, fn, signature, constexprs):
    # Divisibility-by-16 hints the JIT infers for aligned pointers and sizes that are multiples of 16
    # (true of real vocabularies: 32000, 128256, 151936, 262144).
    aligned = [i for i, (k, v) in enumerate(signature.items())
               if v.startswith("*") or k in ("stride_row", "vocab_size", "cols_per_program", "token_base")]
    return ast_source(fn, signature, constexprs=constexprs, attrs={(i,): [["tt.divisibility", 16]] for i in aligned})


def resource_report(archs=(80, 90), block=None, max_tiles=None):
    """Compile every specialisation for each SM version; return one dict per (kernel, arch)."""
    import triton
    from triton.backends.compiler import GPUTarget

    from .launch import BLOCK_DEFAULT, MAX_REGISTERS, MAX_TILES_PER_PROGRAM, NUM_WARPS

    block = block or BLOCK_DEFAULT
    max_tiles = max_tiles or MAX_TILES_PER_PROGRAM
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            for label, src in _sources(block, max_tiles):
                compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                                          options={"num_warps": NUM_WARPS, "enable_fp_fusion": False,
                                                   "maxnreg": MAX_REGISTERS})
                cubin = os.path.join(tmp, "k.cubin")
                with open(cubin, "wb") as f:
                    f.write(compiled.asm["cubin"])
                usage = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", cubin],
                                       capture_output=True, text=True, check=True).stdout
                sass = subprocess.run([_tool("cuobjdump"), "--dump-sass", cubin],
                                      capture_output=True, text=True, check=True).stdout
                fields = dict(re.findall(r"(REG|STACK|LOCAL|SHARED):(\d+)", usage))
                rows.append(dict(kernel=label, arch=f"sm_{arch}", registers=int(fields.get("REG", -1)),
                                 stack=int(fields.get("STACK", 0)), local=int(fields.get("LOCAL", 0)),
                                 shared=int(fields.get("SHARED", 0)),
                                 ldg128=len(re.findall(r"LDG\.E\.(?:EL\.)?(?:LTC\d+B\.)?128", sass)),
                                 ldg_total=len(re.findall(r"\bLDG\.", sass))))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90], help="SM versions (default: 80 90)")
    args = parser.parse_args(argv)
    rows = resource_report(args.arch)
    print(f"{'kernel':36s} {'arch':6s} {'regs':>4s} {'stack':>5s} {'local':>5s} {'LDG.128':>7s} {'LDG':>4s}")
    for r in rows:
        print(f"{r['kernel']:36s} {r['arch']:6s} {r['registers']:4d} {r['stack']:5d} {r['local']:5d} "
              f"{r['ldg128']:7d} {r['ldg_total']:4d}")
    spilled = [r for r in rows if r["stack"] or r["local"]]
    if spilled:
        print("spills:", ", ".join(f"{r['kernel']}@{r['arch']}" for r in spilled))
    return 1 if spilled else 0


if __name__ == "__main__":
    sys.exit(main())
