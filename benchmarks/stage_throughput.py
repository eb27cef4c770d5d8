"""Data stages from the command line against the in-process rate of their own code x cores.

A stage that runs on Ray should keep every core busy: its events/s, timed wall-clock around
the ``dclr`` command, should reach ``cores x`` the events/s of the same vectorised code on one
core in this process. Measured for

* ``dclr prepare``: raw Pythia events -> dijets (``data.dijets.select_dijets`` in-process);
* ``dclr embed``: prepared dijets -> embeddings with an untrained encoder of the ``--preset``
  (``embed.Embedder`` in-process, one torch thread);
* evaluation inputs: ``evaluate.inputs.load_inputs`` of those embeddings joined to the prepared
  dijets with the feature sets ``dclr evaluate classify`` reads (latent, event, highlevel),
  checksums included, as the first thing an ``evaluate`` command does. It runs inside that
  command rather than as one of its own, so it is timed in a fresh Python process per run
  (median of three, the files in the page cache), once on every CPU and once pinned to one.

The raw input is ``--events`` generated events (half QCD, half W'), repeated ``--copies`` times
with new event ids (the rate does not depend on which events they are), written as one raw
shard per copy. The wall-clock includes starting Python and a local Ray session; the stage's
own work (from submitting its first task to its last result, as the command logs it) is
reported next to it, and the difference as the fixed cost. With ``--joined``, ``dclr prepare``
is timed a second time joining a Ray started beforehand (``ray start --head``, then
``RAY_ADDRESS=auto``), as a user running many commands in a row would: no ``ray.init`` of its
own.

Each in-process rate is measured just before and just after the command it is the reference
for (the median of those passes), since this kind of machine drifts in speed over minutes.
``--stages`` picks what is timed, so that ``prepare`` can be timed on a large input without
embedding all of it.

Run: .venv/bin/python benchmarks/stage_throughput.py [--events 2000] [--copies 24]
     [--cache /tmp/bench_events.parquet] [--stages prepare,embed,inputs] [--joined]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).parent))
from prepare_throughput import make_events, write_raw

from distributed_clr.config import apply_overrides, get_preset
from distributed_clr.config.schema import RunConfig
from distributed_clr.data.dijets import select_dijets

DCLR = str(Path(sys.executable).parent / "dclr")
STAGES = ("prepare", "embed", "inputs")
T = TypeVar("T")


def events(path: Path | None, n: int, seed: int) -> pa.Table:
    """Generated events, read from ``path`` when it exists (and written there when given)."""
    if path is not None and path.exists():
        return pq.read_table(path)
    table = make_events(n, seed)
    if path is not None:
        pq.write_table(table, path)
    return table


def prepare_rate(table: pa.Table, config: RunConfig, passes: int = 3) -> list[float]:
    """Events/s of ``select_dijets`` on one core, in batches as a prepare task runs it: one
    figure per pass over ``table``."""
    size = config.prepare.batch_events
    select_dijets(table.slice(0, size), config.prepare, "bench")  # warm-up
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        for offset in range(0, table.num_rows, size):
            select_dijets(table.slice(offset, size), config.prepare, "bench")
        rates.append(table.num_rows / (time.perf_counter() - start))
    return rates


def bracketed(
    measures: dict[str, Callable[[], list[float]]], run: Callable[[], T]
) -> tuple[dict[str, float], T]:
    """``run()``'s result and, for each reference in ``measures``, the median of the rates it
    gives just before and just after ``run``: this VM's speed drifts by up to 2x over minutes,
    and a reference taken on one side only would carry that drift into the ratio."""
    before = {name: measure() for name, measure in measures.items()}
    result = run()
    return {
        name: statistics.median(before[name] + measure()) for name, measure in measures.items()
    }, result


def _side_by_side_child(
    stage: str, source: str, settings: tuple[str, list[str]], checkpoint: str, barrier: Any,
    results: Any,
) -> None:  # fmt: skip
    """One of the processes of ``side_by_side``: set up, wait for the others, measure."""
    torch.set_num_threads(1)
    if stage == "prepare":
        config = apply_overrides(get_preset(settings[0]), settings[1])
        table = pq.read_table(source)
        barrier.wait()
        results.put(prepare_rate(table, config, passes=2))
    else:
        barrier.wait()
        results.put([embed_rate(Path(source), Path(checkpoint))])


def side_by_side(
    stage: str, processes: int, source: Path, settings: tuple[str, list[str]],
    checkpoint: Path | None = None,
) -> list[float]:  # fmt: skip
    """Summed events/s of ``processes`` copies of a stage's in-process measurement running at
    once, one process each, started together (no Ray, no reading or writing): what the cores
    give together. Where cores share caches, memory bandwidth or a physical core (a VM's
    vCPUs may be hyperthreads of one), this is below ``processes`` x the rate alone, and it
    bounds what any scheduler can reach."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    args = (stage, str(source), settings, str(checkpoint or ""), barrier, results)
    children = [context.Process(target=_side_by_side_child, args=args) for _ in range(processes)]
    for child in children:
        child.start()
    rates = [results.get(timeout=900) for _ in children]
    for child in children:
        child.join()
    return [sum(statistics.median(r) for r in rates)]


def embed_rate(prepared: Path, checkpoint: Path) -> float:
    """Events/s of ``Embedder`` on one prepared shard, one torch thread."""
    from distributed_clr.embed import Embedder

    torch.set_num_threads(1)
    shard = sorted(prepared.glob("*.parquet"))[0]
    table = pq.read_table(shard)
    embedder = Embedder(checkpoint)
    embedder(table.slice(0, 256))  # warm-up
    start = time.perf_counter()
    embedder(table)
    return table.num_rows / (time.perf_counter() - start)


INPUT_SETS = "latent,event,highlevel"
LOAD_INPUTS = """
import sys, time
from distributed_clr.evaluate.inputs import load_inputs
start = time.perf_counter()
inputs = load_inputs(sys.argv[1], sys.argv[2], sys.argv[3].split(","))
print(len(inputs), time.perf_counter() - start)
"""


def inputs_time(embeddings: Path, data: Path, one_cpu: bool) -> tuple[int, float]:
    """(events, seconds) of ``load_inputs`` in a fresh process, the median of three runs, on
    every CPU of this process or pinned to the first."""
    first = min(os.sched_getaffinity(0))
    pin = (lambda: os.sched_setaffinity(0, {first})) if one_cpu else None
    command = [sys.executable, "-c", LOAD_INPUTS, str(embeddings), str(data), INPUT_SETS]
    runs = []
    for _ in range(3):
        done = subprocess.run(command, capture_output=True, text=True, check=True, preexec_fn=pin)
        events, seconds = done.stdout.split()[-2:]
        runs.append((int(events), float(seconds)))
    return sorted(runs, key=lambda run: run[1])[1]


WORK_LINE = re.compile(r"(\w+): (\d+) events in \d+ pieces on (\d+) workers in ([\d.]+) s of work")


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall-clock seconds of ``command``, seconds of its stage's distributed work as the
    stage logs it: from submitting the first task to receiving the last result)."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    found = WORK_LINE.search(result.stderr)
    if found is None:
        raise RuntimeError(f"{' '.join(command)} logged no work time:\n{result.stderr[-3000:]}")
    return elapsed, float(found.group(4))


def figures(
    events: int,
    wall: float,
    one_core: float,
    cores: int,
    timed_as: str = "command",
    work: float | None = None,
    together: float | None = None,
) -> dict[str, float]:
    """A stage's rate, timed as ``timed_as``, against ``cores`` x its in-process rate on one
    core; with ``work``, also the rate of its distributed part alone; with ``together`` (the
    summed rate of ``cores`` in-process copies run side by side, ``side_by_side``), what the
    cores give together against ``cores`` x one alone, and the stage against that."""
    ideal = cores * one_core
    found: dict[str, float] = {
        "events": events,
        "in_process_events_per_s_one_core": round(one_core),
        f"{timed_as}_wall_s": round(wall, 2),
        f"{timed_as}_events_per_s": round(events / wall),
        "over_cores_x_in_process": round(events / wall / ideal, 3),
    }
    if work is not None:
        found["work_s"] = round(work, 2)
        found["work_over_cores_x_in_process"] = round(events / work / ideal, 3)
        found["fixed_s"] = round(wall - work, 2)
    if together is not None:
        found["in_process_side_by_side_events_per_s"] = round(together)
        found["side_by_side_over_cores_x_in_process"] = round(together / ideal, 3)
        found["over_side_by_side"] = round(events / wall / together, 3)
        if work is not None:
            found["work_over_side_by_side"] = round(events / work / together, 3)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="generated events (half W')")
    parser.add_argument("--copies", type=int, default=24, help="raw shards, each all events")
    parser.add_argument("--preset", default="paper_lhco")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=None, help="generated events (Parquet)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"which of {','.join(STAGES)} to time (embed and inputs need prepare's output, "
        "which is made in any case)",
    )
    parser.add_argument(
        "--joined",
        action="store_true",
        help="also time dclr prepare joining a Ray started beforehand (ray start --head)",
    )
    args = parser.parse_args()
    stages = [stage for stage in args.stages.split(",") if stage]
    if not stages or set(stages) - set(STAGES):
        parser.error(f"--stages takes some of {','.join(STAGES)}, not {args.stages!r}")

    os.environ.setdefault("DCLR_PROGRESS", "0")
    cores = os.cpu_count() or 1
    config = apply_overrides(get_preset(args.preset), args.overrides)
    table = events(args.cache, args.events, args.seed)
    sets = [arg for override in args.overrides for arg in ("--set", override)]
    result: dict[str, object] = {"cores": cores, "preset": args.preset, "overrides": args.overrides}

    with tempfile.TemporaryDirectory(prefix="dclr-stages-") as tmp:
        work = Path(tmp)
        write_raw(table, work / "raw", args.copies)
        total = table.num_rows * args.copies
        source = args.cache or work / "events.parquet"
        if not source.exists():
            pq.write_table(table, source)
        settings = (args.preset, list(args.overrides))
        references = {
            "alone": lambda: prepare_rate(table, config),
            "together": lambda: side_by_side("prepare", cores, source, settings),
        }
        rates, (wall, busy) = bracketed(
            references,
            lambda: timed(
                [DCLR, "prepare", str(work / "raw"), "--out", str(work / "prepared"),
                 "--preset", args.preset, *sets]
            ),
        )  # fmt: skip
        if "prepare" in stages:
            result["prepare"] = figures(
                total, wall, rates["alone"], cores, work=busy, together=rates["together"]
            )
        if args.joined:
            ray = str(Path(sys.executable).parent / "ray")
            head = [ray, "start", "--head", f"--num-cpus={cores}", "--include-dashboard=false"]
            subprocess.run([*head, "--disable-usage-stats"], capture_output=True, check=True)
            try:
                rates, (wall, busy) = bracketed(
                    references,
                    lambda: timed(
                        [DCLR, "prepare", str(work / "raw"), "--out",
                         str(work / "prepared-joined"), "--preset", args.preset, *sets],
                        env={**os.environ, "RAY_ADDRESS": "auto"},
                    ),
                )  # fmt: skip
            finally:
                subprocess.run([ray, "stop"], capture_output=True, check=False)
            result["prepare_joining_a_running_ray"] = figures(
                total, wall, rates["alone"], cores, work=busy, together=rates["together"]
            )

        from distributed_clr.storage.manifest import require_complete
        from distributed_clr.train.driver import untrained

        if "embed" in stages or "inputs" in stages:
            checkpoint = untrained(config, work / "prepared", work / "untrained")
            prepared_events = require_complete(work / "prepared", "dijet").rows
            references = {
                "alone": lambda: [embed_rate(work / "prepared", checkpoint)],
                "together": lambda: side_by_side(
                    "embed", cores, work / "prepared", settings, checkpoint
                ),
            }
            rates, (wall, busy) = bracketed(
                references,
                lambda: timed(
                    [DCLR, "embed", "--checkpoint", str(checkpoint), "--data",
                     str(work / "prepared"), "--out", str(work / "embeddings"), "--preset",
                     args.preset, *sets]
                ),
            )  # fmt: skip
            if "embed" in stages:
                result["embed"] = figures(
                    prepared_events,
                    wall,
                    rates["alone"],
                    cores,
                    work=busy,
                    together=rates["together"],
                )
        if "inputs" in stages:
            embeddings, data = work / "embeddings", work / "prepared"
            inputs_time(embeddings, data, one_cpu=False)  # the files into the page cache
            loaded, one = inputs_time(embeddings, data, one_cpu=True)
            _, every = inputs_time(embeddings, data, one_cpu=False)
            result["evaluation_inputs"] = figures(loaded, every, loaded / one, cores, "stage")
        start = time.perf_counter()
        subprocess.run([DCLR, "--help"], capture_output=True, check=True)
        result["cli_start_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
