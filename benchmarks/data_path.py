"""The data path alone: Ray Data shard -> collate -> (pinned host memory -> device), no model.

One training worker's batches exactly as a pretraining run makes them (``train.feed.datasets``
then ``train.feed.batches`` on a ``streaming_split`` of the train split, the split cached in the
object store as ``data.cache`` does, the local shuffle buffer on), counted in events/s, against
the ceiling in the same run: slicing batches out of tensors already in memory. The target is
200,000 events/s per worker at 50 constituents per jet, far above what one GPU trains on.

On a CUDA machine each batch goes to the device through pinned memory (Ray Data's
``pin_memory`` and its background transfer), and the clock stops after a device sync.

Run: .venv/bin/python benchmarks/data_path.py [--events 100000] [--batch 1024] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import synthetic_dataset

from distributed_clr.config import get_preset
from distributed_clr.config.schema import DataConfig
from distributed_clr.storage.location import as_storage_path
from distributed_clr.train.feed import batches, datasets
from distributed_clr.train.samples import SamplePlan


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def ray_data_rate(
    config: DataConfig, data: Path, batch: int, epochs: int, device: torch.device
) -> list[float]:
    """Events/s of each epoch of one worker's batches through Ray Data."""
    import numpy as np

    plan = SamplePlan(train=None, val=None, probe=np.zeros(0, dtype=np.int64))
    train = datasets(config, as_storage_path(str(data)), seed=0, plan=plan)["train"]
    (shard,) = train.streaming_split(1, equal=True)
    rates = []
    for epoch in range(epochs):
        start, events = time.perf_counter(), 0
        for item in batches(shard, batch, device, config, shuffle_seed=epoch, extra=("label",)):
            events += item["x"].shape[0]
        _sync(device)
        rates.append(events / (time.perf_counter() - start))
    return rates


def in_memory_rate(
    data: Path, batch: int, epochs: int, device: torch.device
) -> tuple[list[float], int]:
    """Events/s of slicing batches out of the train split held in memory (and moving them to
    the device): the ceiling of any data path."""
    import pyarrow as pa

    from distributed_clr.storage.reader import constituents, iter_tables

    columns = ["pt", "eta", "phi", "label"]
    table = pa.concat_tables(iter_tables(data, "dijet", splits=["train"], columns=columns))
    x, mask = constituents(table)
    label = torch.from_numpy(table.column("label").to_numpy().copy())
    if device.type == "cuda":
        x, mask, label = x.pin_memory(), mask.pin_memory(), label.pin_memory()
    rates = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        start, events = time.perf_counter(), 0
        for first in range(0, len(x) - batch + 1, batch):
            rows = order[first : first + batch]
            item = {"x": x[rows], "mask": mask[rows], "label": label[rows]}
            item = {k: v.to(device, non_blocking=True) for k, v in item.items()}
            events += item["x"].shape[0]
        _sync(device)
        rates.append(events / (time.perf_counter() - start))
    return rates, len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--constituents", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--shuffle-buffer", type=int, default=None)
    args = parser.parse_args()

    os.environ.setdefault("DCLR_PROGRESS", "0")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = get_preset("paper_lhco").data
    if args.shuffle_buffer is not None:
        config = config.model_copy(update={"shuffle_buffer": args.shuffle_buffer})
    from distributed_clr.runtime import init_ray

    init_ray(get_preset("paper_lhco").ray)
    with tempfile.TemporaryDirectory(prefix="dclr-datapath-") as tmp:
        data = synthetic_dataset(Path(tmp) / "data", args.events, args.constituents)
        ray_rates = ray_data_rate(config, data, args.batch, args.epochs, device)
        memory_rates, train_events = in_memory_rate(data, args.batch, args.epochs, device)
    # The first epoch includes reading Parquet into the object store (data.cache).
    ray_rate = statistics.median(ray_rates[1:]) if len(ray_rates) > 1 else ray_rates[0]
    memory_rate = statistics.median(memory_rates[1:]) if len(memory_rates) > 1 else memory_rates[0]
    result = {
        "device": str(device),
        "train_events": train_events,
        "constituents_per_jet": args.constituents,
        "batch": args.batch,
        "shuffle_buffer": config.shuffle_buffer,
        "ray_data_events_per_s": round(ray_rate),
        "ray_data_epochs": [round(r) for r in ray_rates],
        "in_memory_events_per_s": round(memory_rate),
        "ray_data_over_in_memory": round(ray_rate / memory_rate, 3),
        "target_events_per_s": 200_000,
        "meets_target": ray_rate >= 200_000,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
