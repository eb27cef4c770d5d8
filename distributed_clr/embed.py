"""``dclr embed``: prepared dijets -> embedding shards, with a trained checkpoint.

Ray Data streams the prepared shards (``storage.reader.ray_dataset``) through a pool of actors
that each hold the model once (``map_batches`` with a callable class, on CPU or one GPU per
actor); the driver receives only the embeddings (D floats per event) and writes them as shards
of at most ``rows_per_shard`` events, each atomically, then the manifest. The output directory
is an ``embedding`` dataset (docs/architecture.md): the event's keys (dataset, event_id), label,
process, split, fold, m_jj and ``embedding`` [D]. The manifest (``storage.manifest``) names the
checkpoint and data: rerunning with the same ones reuses a complete, verified output; an
interrupted or damaged one is redone from the start (embedding is fast next to training).
"""

from __future__ import annotations

import logging
import typing
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from distributed_clr.checkpoint import STATE_FILE, CheckpointError, load_model
from distributed_clr.config.schema import RayConfig
from distributed_clr.models import ContrastiveModel
from distributed_clr.storage.files import sha256_file, write_parquet_atomic
from distributed_clr.storage.formats import EMBEDDING_KEYS, SPLITS, embedding_schema
from distributed_clr.storage.manifest import (
    DatasetError,
    Manifest,
    ShardRecord,
    require_complete,
    resume_or_start,
)
from distributed_clr.storage.reader import check_splits, constituents, ray_dataset

log = logging.getLogger(__name__)

INPUT_COLUMNS = (*EMBEDDING_KEYS, "pt", "eta", "phi")

__all__ = ["Embedder", "embed"]


class Embedder:
    """Ray Data callable class: an Arrow batch of prepared dijets -> its embedding table."""

    def __init__(self, checkpoint: str, device: str = "cpu", chunk: int = 4096) -> None:
        self.device = torch.device(device)
        model, config = load_model(checkpoint, self.device)
        self.model = typing.cast("ContrastiveModel", model)
        self.chunk = chunk
        self.representation = config.model.representation

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        x, mask = constituents(batch, self.device)
        parts = [
            self.model.represent(x[i : i + self.chunk], mask[i : i + self.chunk]).float().cpu()
            for i in range(0, len(x), self.chunk)
        ]
        h = torch.cat(parts).numpy() if parts else np.zeros((0, 1), np.float32)
        values = pa.array(h.reshape(-1).astype(np.float32, copy=False))
        embedding = pa.FixedSizeListArray.from_arrays(values, h.shape[1])
        schema = embedding_schema(h.shape[1])
        columns = [batch.column(name) for name in EMBEDDING_KEYS] + [embedding]
        return pa.Table.from_arrays(columns, schema=schema)


def _identity(checkpoint: Path, data_manifest: Manifest, splits: Sequence[str]) -> dict[str, Any]:
    return {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint / STATE_FILE),
        "data": data_manifest.config,
        "data_shards": [s.sha256 for s in sorted(data_manifest.shards, key=lambda s: s.file)],
        "splits": list(splits),
    }


def embed(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    ray_config: RayConfig,
    *,
    splits: Sequence[str] | None = None,
    batch_size: int = 1024,
    rows_per_shard: int = 100_000,
    actors: int | None = None,
) -> Manifest:
    """Embed ``splits`` (default all) of the prepared dataset ``data`` with ``checkpoint``."""
    import ray
    import ray.data

    from distributed_clr.runtime import init_ray

    checkpoint, data, out = Path(checkpoint).resolve(), Path(data).resolve(), Path(out)
    if not (checkpoint / STATE_FILE).is_file():
        raise CheckpointError(f"{checkpoint} is not a checkpoint directory ({STATE_FILE} missing)")
    chosen = check_splits(splits if splits is not None else SPLITS)
    data_manifest = require_complete(data, "dijet")
    available = data_manifest.summary.get("splits", {})
    if not any(available.get(s, 0) for s in chosen):
        raise DatasetError(f"{data} has no events in split(s) {', '.join(chosen)}")
    manifest = resume_or_start(out, "embedding", _identity(checkpoint, data_manifest, chosen))
    if manifest.complete:
        log.info("reusing the embeddings in %s", out)
        return manifest
    for shard in manifest.shards:  # shards follow Ray's output order: an unfinished run restarts
        (out / shard.file).unlink(missing_ok=True)
    manifest.shards = []
    manifest.write(out)

    init_ray(ray_config)
    use_gpu = ray_config.use_gpu
    free = ray.available_resources()  # type: ignore[no-untyped-call]
    size = actors or max(1, min(4, int(free.get("GPU" if use_gpu else "CPU", 1))))
    ds = ray_dataset(data, "dijet", splits=chosen, columns=INPUT_COLUMNS)
    ds = ds.map_batches(
        Embedder,
        fn_constructor_kwargs={
            "checkpoint": str(checkpoint),
            "device": "cuda" if use_gpu else "cpu",
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size),
        num_gpus=1 if use_gpu else 0,
    )
    counts: Counter[str] = Counter()
    dim = 0
    for index, batch in enumerate(
        ds.iter_batches(batch_size=rows_per_shard, batch_format="pyarrow")
    ):
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        dim = table.schema.field("embedding").type.list_size
        name = f"embedding-{index:05d}.parquet"
        digest = write_parquet_atomic(table, out / name)
        for item in pc.value_counts(table.column("split")).to_pylist():
            counts[str(item["values"])] += int(item["counts"])
        manifest.shards.append(ShardRecord(name, table.num_rows, digest))
        manifest.write(out)
    if not manifest.shards:
        raise DatasetError(f"no events of split(s) {', '.join(chosen)} in {data}")
    manifest.summary = {"events": manifest.rows, "dim": dim, "splits": dict(sorted(counts.items()))}
    manifest.complete = True
    manifest.write(out)
    log.info("wrote %d embeddings (D = %d) to %s", manifest.rows, dim, out)
    return manifest
