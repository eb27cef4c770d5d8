"""Training throughput: the Ray Train loop against a bare PyTorch loop, and 1 vs 2 workers.

All runs train the same model (the ``--preset``'s, on ``--constituents`` per jet) with the same
per-worker batch on the same data: a synthetic prepared-dijet dataset written once (random
dijet-like constituents; the numbers do not depend on the physics). Every worker and the bare
loop use one torch thread, so "1 worker vs bare" isolates the cost of Ray Train + Ray Data
(data streaming, DDP wrapper, report/checkpoint per epoch); "2 vs 1 workers" shows the scaling
on this machine. Events/s are training-step throughput (the validation pass is excluded), the
median over epochs after the first (warm-up).

The GPU comparisons (bf16 vs fp32 at batch 1,024 and 4,096, and a loop in the style of the seed
paper's code) are in ``benchmarks/device_check.sh``.

Run: .venv/bin/python benchmarks/train_throughput.py [--events 12000] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from distributed_clr.config import apply_overrides, get_preset
from distributed_clr.config.schema import PrepareConfig, RunConfig
from distributed_clr.storage.files import write_parquet_atomic
from distributed_clr.storage.formats import PER_JET, dijet_schema
from distributed_clr.storage.manifest import Manifest, ShardRecord


def synthetic_dataset(directory: Path, events: int, constituents: int, seed: int = 0) -> Path:
    """A complete prepared-dijet dataset of random events (60/20/20 splits)."""
    rng = np.random.default_rng(seed)
    schema = dijet_schema(constituents)
    manifest = Manifest(
        kind="dijet",
        config={"prepare": PrepareConfig(num_constituents=constituents).model_dump(mode="json")},
    )
    per_shard = 4000
    splits = {"train": 0, "val": 0, "test": 0}
    for index, start in enumerate(range(0, events, per_shard)):
        n = min(per_shard, events - start)
        width = 2 * constituents
        pt = (1000 * rng.random((n, width)) ** 4).astype(np.float32)
        pt = -np.sort(-pt.reshape(n, 2, constituents), axis=-1).reshape(n, width)
        eta = (rng.normal(size=(n, 2, 1)) + 0.3 * rng.normal(size=(n, 2, constituents))).reshape(
            n, width
        )
        phi = (rng.uniform(-3, 3, (n, 2, 1)) + 0.3 * rng.normal(size=(n, 2, constituents))).reshape(
            n, width
        )
        split = rng.choice(["train", "val", "test"], size=n, p=[0.6, 0.2, 0.2])
        for name in splits:
            splits[name] += int((split == name).sum())

        def fixed(values: np.ndarray, size: int) -> pa.Array:
            flat = pa.array(values.astype(np.float32).reshape(-1))
            return pa.FixedSizeListArray.from_arrays(flat, size)

        columns = {
            "event_id": pa.array(np.arange(start, start + n, dtype=np.int64)),
            "label": pa.array(rng.integers(0, 2, n).astype(np.int8)),
            "process": pa.array(["synthetic"] * n),
            "dataset": pa.array(["synthetic"] * n),
            "split": pa.array(split),
            "fold": pa.array(rng.integers(0, 5, n).astype(np.int8)),
            "pt": fixed(pt, width),
            "eta": fixed(eta, width),
            "phi": fixed(phi, width),
            "jet_n": pa.FixedSizeListArray.from_arrays(
                pa.array(np.full(2 * n, constituents, np.int16)), 2
            ),
            **{name: fixed(rng.random((n, 2)), 2) for name in PER_JET},
            "mjj": pa.array(rng.uniform(1500, 5000, n).astype(np.float32)),
        }
        table = pa.Table.from_pydict(columns, schema=schema)
        name = f"dijet-{index:05d}.parquet"
        manifest.shards.append(ShardRecord(name, n, write_parquet_atomic(table, directory / name)))
    manifest.summary = {"events": events, "splits": splits}
    manifest.complete = True
    manifest.write(directory)
    return directory


def bare_loop(config: RunConfig, data: Path, epochs: int) -> float:
    """A plain PyTorch loop over the same events (read once into memory with pyarrow, no Ray),
    one process, one thread."""
    from distributed_clr.models import build_model
    from distributed_clr.storage.reader import constituents, iter_tables
    from distributed_clr.train.trainer import Trainer

    torch.manual_seed(config.train.seed)
    train_rows = sum(t.num_rows for t in iter_tables(data, "dijet", splits=["train"]))
    steps = train_rows // config.train.batch_size
    trainer = Trainer(
        build_model(config.model, config.prepare.num_constituents),
        train=config.train,
        loss=config.loss,
        augment=config.augment,
        device=torch.device("cpu"),
        steps_per_epoch=steps,
    )
    generator = torch.Generator().manual_seed(0)
    columns = ["pt", "eta", "phi", "label"]
    table = pa.concat_tables(iter_tables(data, "dijet", splits=["train"], columns=columns))
    size = config.train.batch_size

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, table.num_rows - size + 1, size):
            chunk = table.slice(start, size)
            x, mask = constituents(chunk)
            label = torch.from_numpy(chunk.column("label").to_numpy().copy())
            yield {"x": x, "mask": mask, "label": label}

    rates = [trainer.train_epoch(batches(), generator)["events_per_s"] for _ in range(epochs)]
    return statistics.median(rates[1:]) if len(rates) > 1 else rates[0]


def ray_loop(config: RunConfig, data: Path, workers: int, storage: Path) -> float:
    from distributed_clr.train import pretrain

    run = apply_overrides(
        config,
        [
            f"ray.num_workers={workers}",
            f"ray.storage_path={storage}",
            "tracking.enabled=false",
            "train.probe_events=0",
        ],
    )
    result = pretrain(run, data, f"bench-{workers}w-{int(time.time())}", log_embeddings=False)
    rates = [h["events_per_s"] for h in result.history]
    return statistics.median(rates[1:]) if len(rates) > 1 else rates[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--events", type=int, default=12_000)
    parser.add_argument("--constituents", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    os.environ.setdefault("DCLR_PROGRESS", "0")
    torch.set_num_threads(1)
    config = apply_overrides(
        get_preset(args.preset),
        [
            f"train.batch_size={args.batch}",
            f"train.epochs={args.epochs}",
            "train.early_stopping_patience=null",
            "ray.cpus_per_worker=1",
        ],
    )
    config = config.model_copy(
        update={"prepare": PrepareConfig(num_constituents=args.constituents)}
    )
    from distributed_clr.runtime import init_ray

    init_ray(config.ray, min_cpus=3)  # 2 workers + Ray Data, for both Ray runs
    with tempfile.TemporaryDirectory(prefix="dclr-bench-") as tmp:
        data = synthetic_dataset(Path(tmp) / "data", args.events, args.constituents)
        bare = bare_loop(config, data, args.epochs)
        one = ray_loop(config, data, 1, Path(tmp) / "ray")
        two = ray_loop(config, data, 2, Path(tmp) / "ray")
    result = {
        "bare_events_per_s": round(bare, 1),
        "ray_1_worker_events_per_s": round(one, 1),
        "ray_2_workers_events_per_s": round(two, 1),
        "ray_1_worker_over_bare": round(one / bare, 3),
        "overhead_percent": round(100 * (1 - one / bare), 1),
        "two_over_one_worker": round(two / one, 3),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
