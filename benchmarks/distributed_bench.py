"""Vocab-parallel sampling vs all-gather-then-sample: ``python -m benchmarks.distributed_bench``.

Spawns ``world`` processes on one machine (gloo on CPU; NCCL with ``--backend nccl`` on a multi-GPU
machine), shards ``[B, V]`` logits evenly, and times one decode step's sampling both ways (median of
repeated steps, after a barrier).  Bytes on the wire are counted per rank from the collectives'
payloads.  Writes ``<out>/distributed-<backend>-<date>.json`` and ``.md``.
"""

import argparse
import functools
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.report import HelpFormatter, default_out_dir, environment, table, write_json, write_text

SHAPES = [(8, 32000), (32, 32000), (8, 128256), (32, 128256)]


def _gather_then_sample(sample, local, world, seed):
    """The baseline: all-gather every rank's shard, then sample the full rows."""
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local)
    return sample(torch.cat(parts, dim=1), 0.1, 1.0, seed=seed)


def _worker(rank, world, port, backend, repeats, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # ranks share the machine's cores; one thread each avoids oversubscription
    dist.init_process_group(backend, rank=rank, world_size=world)
    import minp_kernels
    import minp_kernels.distributed as mkd

    device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
    rows = []
    for batch, vocab in SHAPES:
        shard = vocab // world
        start = rank * shard
        local = (torch.randn(batch, shard, generator=torch.Generator().manual_seed(rank)) * 3).to(device)
        seed = torch.arange(batch, device=device)

        sharded = functools.partial(mkd.sample, local, 0.1, 1.0, vocab_start=start, seed=seed)
        gathered = functools.partial(_gather_then_sample, minp_kernels.sample, local, world, seed)
        times = {}
        for name, fn in (("vocab_parallel", sharded), ("all_gather_then_sample", gathered)):
            fn()
            samples = []
            for _ in range(repeats):
                dist.barrier()
                t0 = time.perf_counter()
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                samples.append(time.perf_counter() - t0)
            times[name] = statistics.median(samples) * 1e6
        rows.append(dict(world=world, batch=batch, vocab=vocab, vocab_parallel_us=times["vocab_parallel"],
                         all_gather_us=times["all_gather_then_sample"],
                         vocab_parallel_bytes=batch * 4 + world * batch * 32,  # all-reduce max + records
                         all_gather_bytes=world * batch * shard * 4))
    if rank == 0:
        queue.put(rows)
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed_bench", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4], help="numbers of ranks to spawn, in turn")
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"],
                        help="process-group backend: gloo (CPU ranks) or nccl (one GPU per rank)")
    parser.add_argument("--repeats", type=int, default=20, help="timed decode steps per shape; the median is reported")
    parser.add_argument("--out", default=default_out_dir(), help="folder for the JSON and markdown files")
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    rows = []
    for world in args.worlds:
        queue = ctx.Queue()
        port = _free_port()
        procs = [ctx.Process(target=_worker, args=(r, world, port, args.backend, args.repeats, queue))
                 for r in range(world)]
        for p in procs:
            p.start()
        rows += queue.get(timeout=1800)
        for p in procs:
            p.join()
    env = environment(torch.device("cpu" if args.backend == "gloo" else "cuda"))
    env.update(backend=args.backend, cpus=os.cpu_count())
    date = env["date"]
    lines = [f"Vocab-parallel min-p vs all-gather-then-sample, {args.backend} on {env['device']} "
             f"({env['cpus']} CPUs, one thread per rank), torch {env['torch']}, {date}; median of {args.repeats} "
             "steps; bytes: payload each rank receives from the collectives (all-reduce of the B maxima plus "
             "the B records of every rank, vs every rank's logits shard).", "",
             f"Commit {env['commit']}.", "",
             table(["world", "B", "V", "vocab-parallel us", "all-gather us", "all-gather / vocab-parallel time",
                    "vocab-parallel bytes", "all-gather bytes"],
                   [[str(r["world"]), str(r["batch"]), str(r["vocab"]), f"{r['vocab_parallel_us']:.0f}",
                     f"{r['all_gather_us']:.0f}", f"{r['all_gather_us'] / r['vocab_parallel_us']:.1f}x",
                     f"{r['vocab_parallel_bytes']:,}", f"{r['all_gather_bytes']:,}"] for r in rows])]
    text = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, f"distributed-{args.backend}-{date}")
    write_json(prefix + ".json", dict(environment=env, results=rows))
    write_text(prefix + ".md", text)
    print(text)
    print("wrote", prefix + ".json", prefix + ".md", sep="\n  ")


if __name__ == "__main__":
    main()
