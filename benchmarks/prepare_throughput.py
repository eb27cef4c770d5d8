"""Prepare: vectorised throughput against the per-event FastJet loop, and memory against input size.

1. Throughput, one core, same events: ``dijets.select_dijets`` (multi-event clustering, array
   code) against ``reference.reference_dijets`` (a PseudoJet list -> ClusterSequence -> selection
   -> per-jet N-subjettiness, one event at a time). Both produce the same dijets.
2. Memory: ``dclr prepare`` (Ray Data, local Ray) on a raw dataset and on one 10x larger (the same
   events repeated with new ids); the peak resident memory of the whole process tree (driver, Ray
   and its workers) is sampled for each run.

Run: .venv/bin/python benchmarks/prepare_throughput.py [--events 600] [--scale 10]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

from distributed_clr.config import GenerateConfig, PrepareConfig
from distributed_clr.data.dijets import select_dijets
from distributed_clr.data.generate import event_ids
from distributed_clr.physics.particles import from_arrow, to_arrow
from distributed_clr.physics.pythia import generate_events
from distributed_clr.physics.reference import reference_dijets
from distributed_clr.storage.files import write_parquet_atomic
from distributed_clr.storage.manifest import Manifest, ShardRecord


def make_events(n: int, seed: int) -> pa.Table:
    """Half QCD dijets, half W' signal, detector level, after the trigger."""
    tables = []
    for k, process in enumerate(("qcd_dijet", "wprime_xy")):
        config = GenerateConfig(process=process, pthat_min=1000.0)
        result = generate_events(config, n // 2, np.random.SeedSequence([seed, k]))
        ids = event_ids(config, 0, len(result.particles.counts))
        tables.append(to_arrow(result.particles, ids, k, process))
    return pa.concat_tables(tables).combine_chunks()


def throughput(table: pa.Table, reference_events: int, config: PrepareConfig) -> None:
    start = time.perf_counter()
    for offset in range(0, table.num_rows, config.batch_events):
        select_dijets(table.slice(offset, config.batch_events), config, "bench")
    fast = table.num_rows / (time.perf_counter() - start)

    subset = table.slice(0, reference_events)
    particles = from_arrow(subset)
    start = time.perf_counter()
    reference_dijets(particles, config)
    slow = subset.num_rows / (time.perf_counter() - start)
    mean_particles = float(np.mean(particles.counts))
    print(
        f"events: {table.num_rows} (reference: {subset.num_rows}), {mean_particles:.0f} particles"
    )
    print(f"vectorised prepare : {fast:8.1f} events/s on one core")
    print(f"per-event loop     : {slow:8.1f} events/s on one core")
    print(f"speed-up           : {fast / slow:8.2f}x")


def write_raw(table: pa.Table, directory: Path, copies: int) -> None:
    shards = []
    ids = table.column("event_id").to_numpy()
    for k in range(copies):
        shifted = table.set_column(0, "event_id", pa.array(ids + k * (1 << 28)))
        name = f"shard-{k:05d}.parquet"
        digest = write_parquet_atomic(shifted, directory / name)
        shards.append(ShardRecord(name, shifted.num_rows, digest))
    Manifest(
        kind="raw",
        config={"bench": copies},
        shards=shards,
        summary={"dataset": f"bench-x{copies}"},
        complete=True,
    ).write(directory)


def peak_rss(command: list[str]) -> tuple[float, float]:
    """(peak RSS of the process tree in MiB, wall time in s) of a command."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                total = 0
                for p in tree:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += p.memory_info().rss
                peak = max(peak, total)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.1)

    start = time.perf_counter()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    code = proc.wait()
    done.set()
    thread.join()
    if code:
        raise RuntimeError(f"{command} failed with exit code {code}")
    return peak / 2**20, time.perf_counter() - start


def memory(table: pa.Table, scale: int, workdir: Path) -> None:
    dclr = str(Path(sys.executable).parent / "dclr")
    results = {}
    for copies in (1, scale):
        raw = workdir / f"raw-x{copies}"
        write_raw(table, raw, copies)
        command = [dclr, "-q", "prepare", str(raw), "--out", str(workdir / f"out-x{copies}")]
        command += ["--preset", "paper_lhco", "--set", "ray.num_cpus=2"]
        results[copies] = peak_rss(command)
    (small, t_small), (large, t_large) = results[1], results[scale]
    print(f"peak RSS, {table.num_rows:6d} events : {small:7.0f} MiB  ({t_small:.1f} s)")
    print(f"peak RSS, {table.num_rows * scale:6d} events : {large:7.0f} MiB  ({t_large:.1f} s)")
    print(f"memory ratio for {scale}x input : {large / small:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=600, help="events generated (half signal)")
    parser.add_argument("--reference-events", type=int, default=200)
    parser.add_argument("--scale", type=int, default=10, help="input growth for the memory test")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    table = make_events(args.events, args.seed)
    throughput(table, args.reference_events, PrepareConfig(num_constituents=50))
    with tempfile.TemporaryDirectory() as tmp:
        memory(table, args.scale, Path(tmp))


if __name__ == "__main__":
    main()
