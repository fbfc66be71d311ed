"""Vocab-parallel sampling vs all-gather-then-sample: ``python -m benchmarks.distributed_bench``.

Spawns ``world`` processes on one machine (gloo on CPU; NCCL with ``--backend nccl`` on a multi-GPU
machine), shards ``[B, V]`` logits evenly, and times one decode step's sampling both ways (median of
repeated steps, after a barrier).  Bytes on the wire are counted per rank from the collectives'
payloads.  Writes ``results/distributed-<backend>-<date>.json`` and ``.md``.
"""

import argparse
import datetime
import json
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SHAPES = [(8, 32000), (32, 32000), (8, 128256), (32, 128256)]


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

        def sharded():
            return mkd.sample(local, 0.1, 1.0, vocab_start=start, seed=seed)

        def gathered():
            parts = [torch.empty_like(local) for _ in range(world)]
            dist.all_gather(parts, local)
            return minp_kernels.sample(torch.cat(parts, dim=1), 0.1, 1.0, seed=seed)

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
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
    date = datetime.date.today().isoformat()
    env = dict(date=date, torch=torch.__version__, backend=args.backend, cpus=os.cpu_count(),
               device="cpu" if args.backend == "gloo" else torch.cuda.get_device_name())
    lines = [f"Vocab-parallel min-p vs all-gather-then-sample, {args.backend} on {env['device']} "
             f"({env['cpus']} CPUs, one thread per rank), torch {env['torch']}, {date}; median of {args.repeats} "
             "steps; bytes: payload each rank receives from the collectives (all-reduce of the B maxima plus "
             "the B records of every rank, vs every rank's logits shard).", "",
             "| world | B | V | vocab-parallel us | all-gather us | speed-up | vocab-parallel bytes | all-gather bytes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['world']} | {r['batch']} | {r['vocab']} | {r['vocab_parallel_us']:.0f} | "
                     f"{r['all_gather_us']:.0f} | {r['all_gather_us'] / r['vocab_parallel_us']:.1f}x | "
                     f"{r['vocab_parallel_bytes']:,} | {r['all_gather_bytes']:,} |")
    table = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, f"distributed-{args.backend}-{date}")
    with open(prefix + ".json", "w") as f:
        json.dump(dict(environment=env, results=rows), f, indent=1)
    with open(prefix + ".md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
