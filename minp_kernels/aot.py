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
import re
import sys
import tempfile

import torch

from .sass import compile_for, sass_of

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
AOT_VOCAB = 128256  # vocabulary of the example launches
AOT_SM_COUNT, AOT_MAX_BATCH = 132, 2048  # plan classes as an H100 meets them up to this batch
# (name, per-row tensors, log-probabilities, top-k / top-p threshold) of each sample-kernel specialisation;
# the serving default first.  The default is compiled for every plan class, the others for the split
# class (more registers live).
VARIANTS = [("tokens", False, False, False), ("logprobs", False, True, False), ("per_row", True, True, False),
            ("filters", True, True, True)]


def _example_params(batch, per_row, filters=False):
    from .params import RowParams

    meta = dict(device="meta")
    if per_row:
        return RowParams(torch.empty(batch, **meta), torch.empty(batch, **meta), torch.empty(batch, dtype=torch.int64,
                         **meta), torch.empty(batch, dtype=torch.int64, **meta), False,
                         torch.empty(batch, dtype=torch.int64, **meta) if filters else None)
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
            for name, per_row, logprobs, filters in VARIANTS if split else VARIANTS[:1]:
                tokens = torch.empty(batch, device=device, dtype=torch.int64)
                out = torch.empty(batch, device=device, dtype=torch.float32) if logprobs else tokens
                workspace = torch.empty(plan.workspace_words, device=device, dtype=torch.int32) if split else None
                threshold = torch.empty(batch, device=device) if filters else None
                kwargs = launch.sample_kernel_arguments(logits, _example_params(batch, per_row, filters), False,
                                                        logprobs, plan, tokens, out, workspace, threshold)
                yield f"sample[{dtype_name},{name},{'split' if split else 'whole'},B={batch}]", \
                    launch.minp_sample_kernel, kwargs
        logits = torch.empty(8, AOT_VOCAB, device=device, dtype=dtype)
        records = torch.empty(8, 4, device=device)
        kwargs = launch.shard_kernel_arguments(logits, torch.empty(8, device=device), _example_params(8, False),
                                               False, 0, records)
        yield f"shard[{dtype_name}]", launch.minp_shard_kernel, kwargs


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
