"""``dclr embed``: prepared dijets (or object-level events) -> embedding shards, with a trained
checkpoint of the same kind of events.

One output shard per input shard (``embedding-<input name>.parquet``), so the output depends
only on the checkpoint and the data: a pool of Ray actors each loads the model once (on CPU or
one GPU), and for each prepared shard it is handed reads the shard in chunks, keeps the chosen
splits, embeds them and writes the embeddings (the event's keys, label, process, split, fold,
m_jj and ``embedding`` [D]) into the run's staging area. The driver publishes each shard and
records it in the manifest at once.

The manifest names the checkpoint (and its sha256) and the data (and its shards' checksums): a
rerun with the same ones reuses a complete, verified output and finishes an interrupted one
shard by shard, ending with the same bytes; other ones are refused. The checkpoint is loaded
and the data verified before Ray starts.
"""

from __future__ import annotations

import logging
import time
import typing
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from distributed_clr.checkpoint import STATE_FILE, checkpoint_files, load_model, load_model_files
from distributed_clr.config.schema import REPRESENTATIONS, RayConfig, Representation
from distributed_clr.crashpoints import crash_point
from distributed_clr.errors import UserError
from distributed_clr.models import ContrastiveModel
from distributed_clr.storage.files import sha256_file, write_parquet_atomic
from distributed_clr.storage.formats import SPLITS, embedding_schema
from distributed_clr.storage.location import StoragePath, as_storage_path, parquet_file
from distributed_clr.storage.manifest import (
    DatasetError,
    Manifest,
    ShardRecord,
    finish,
    publish,
    require_complete,
    resume_or_start,
    staging_area,
)
from distributed_clr.storage.reader import check_splits, constituents
from distributed_clr.storage.verify import VerifyLevel, verify_shards

log = logging.getLogger(__name__)

INPUTS = ("pt", "eta", "phi")

__all__ = ["Embedder", "embed", "output_name"]


def output_name(input_file: str) -> str:
    """The embedding shard made from the prepared shard ``input_file``."""
    return f"embedding-{Path(input_file).stem}.parquet"


class Embedder:
    """Holds a trained model once and embeds prepared dijets with it (a Ray actor's state)."""

    def __init__(
        self,
        checkpoint: str | Path | dict[str, bytes],
        device: str = "cpu",
        chunk: int = 4096,
        representation: Representation | None = None,
    ) -> None:
        self.device = torch.device(device)
        if isinstance(checkpoint, dict):  # shipped from the driver (``checkpoint_files``)
            model, _ = load_model_files(checkpoint, self.device)
        else:
            model, _ = load_model(checkpoint, self.device)
        self.model = typing.cast("ContrastiveModel", model)
        if representation is not None:
            self.model.representation = representation
        self.chunk = chunk

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        """An Arrow batch of prepared dijets -> its embedding table."""
        layout = self.model.layout
        x, mask = constituents(batch, self.device, layout.groups)
        parts = [
            self.model.represent(x[i : i + self.chunk], mask[i : i + self.chunk]).float().cpu()
            for i in range(0, len(x), self.chunk)
        ]
        h = torch.cat(parts).numpy() if parts else np.zeros((0, 1), np.float32)
        values = pa.array(h.reshape(-1).astype(np.float32, copy=False))
        embedding = pa.FixedSizeListArray.from_arrays(values, h.shape[1])
        schema = embedding_schema(h.shape[1], layout.kind)
        columns = [batch.column(name) for name in layout.keys] + [embedding]
        return pa.Table.from_arrays(columns, schema=schema)

    def embed_shard(self, path: str, splits: list[str], staging: str) -> dict[str, Any]:
        """Embed the events of ``splits`` in one prepared shard; write them into ``staging``."""
        parquet = parquet_file(as_storage_path(path))
        tables = []
        columns = [*self.model.layout.keys, *INPUTS]
        for batch in parquet.iter_batches(batch_size=self.chunk, columns=columns):
            table = pa.Table.from_batches([batch])
            keep = np.isin(table.column("split").to_numpy(zero_copy_only=False), splits)
            if keep.any():
                tables.append(self(table.filter(pa.array(keep))))
        if not tables:
            return {"input": as_storage_path(path).name, "rows": 0}
        output = pa.concat_tables(tables)
        name = output_name(path)
        splits_found = output.column("split").to_pylist()
        return {
            "input": as_storage_path(path).name,
            "rows": output.num_rows,
            "file": name,
            "sha256": write_parquet_atomic(output, as_storage_path(staging) / name),
            "dim": output.schema.field("embedding").type.list_size,
            "splits": {s: splits_found.count(s) for s in sorted(set(splits_found))},
        }


def _identity(
    checkpoint: Path, data_manifest: Manifest, splits: Sequence[str], representation: str
) -> dict[str, Any]:
    return {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint / STATE_FILE),
        "representation": representation,
        "data": data_manifest.config,
        "data_shards": [s.sha256 for s in sorted(data_manifest.shards, key=lambda s: s.file)],
        "splits": list(splits),
    }


def embed(
    checkpoint: str | Path,
    data: str | StoragePath,
    out: str | StoragePath,
    ray_config: RayConfig,
    *,
    splits: Sequence[str] | None = None,
    actors: int | None = None,
    verify: VerifyLevel = "sha256",
    representation: Representation | None = None,
) -> Manifest:
    """Embed ``splits`` (default all) of the prepared dataset ``data`` with ``checkpoint``.

    ``representation`` ('encoder', 'head1' or 'head') overrides the checkpoint's
    ``model.representation``: which layer's output is the embedding. It is part of the output's
    identity (a rerun with another one is refused)."""
    checkpoint = Path(checkpoint).resolve()
    data_path, out_path = as_storage_path(data).resolve(), as_storage_path(out)
    _, config = load_model(checkpoint)  # a clear error now, not in a Ray actor later
    if representation is not None and representation not in REPRESENTATIONS:
        raise UserError(
            f"representation must be one of {', '.join(REPRESENTATIONS)}, got '{representation}'"
        )
    layer = representation or config.model.representation
    chosen = check_splits(splits if splits is not None else SPLITS)
    try:
        data_manifest = require_complete(data_path, config.data.kind)
    except DatasetError as err:
        raise DatasetError(
            f"{err} (the checkpoint's encoder reads '{config.data.kind}' events)"
        ) from None
    verify_shards(data_path, data_manifest, verify)
    available = data_manifest.summary.get("splits", {})
    if not any(available.get(s, 0) for s in chosen):
        raise DatasetError(f"{data_path} has no events in split(s) {', '.join(chosen)}")
    manifest = resume_or_start(
        out_path, "embedding", _identity(checkpoint, data_manifest, chosen, layer)
    )
    if manifest.complete:
        log.info("reusing the embeddings in %s", out_path)
        return manifest
    summary: dict[str, Any] = manifest.summary.setdefault("inputs", {})
    listed = {s.file for s in manifest.shards}
    pending = [
        s.file
        for s in sorted(data_manifest.shards, key=lambda s: s.file)
        if not (s.file in summary and (summary[s.file] is None or summary[s.file] in listed))
    ]
    crash_point("stage-started", str(out_path))
    if pending:
        _embed_shards(
            checkpoint,
            data_path,
            out_path,
            ray_config,
            chosen,
            pending,
            manifest,
            actors,
            representation,
        )
    counts: Counter[str] = Counter()
    for shard in manifest.shards:
        counts.update(shard.stats["splits"])
    dims = {int(s.stats["dim"]) for s in manifest.shards}
    if not manifest.shards:
        raise DatasetError(f"no events of split(s) {', '.join(chosen)} in {data_path}")
    manifest.summary.update(
        {"events": manifest.rows, "dim": dims.pop(), "splits": dict(sorted(counts.items()))}
    )
    finish(out_path, manifest)
    log.info("wrote %d embeddings (D = %d) to %s", manifest.rows, manifest.summary["dim"], out_path)
    return manifest


def _embed_shards(
    checkpoint: Path,
    data: StoragePath,
    out: StoragePath,
    ray_config: RayConfig,
    splits: list[str],
    pending: list[str],
    manifest: Manifest,
    actors: int | None,
    representation: Representation | None,
) -> None:
    import ray
    from ray.util import ActorPool

    from distributed_clr.runtime import init_ray, log_stage_rate, unwrap_ray_error

    init_ray(ray_config)
    use_gpu = ray_config.use_gpu
    free = ray.available_resources()  # type: ignore[no-untyped-call]
    # One actor per free CPU (GPU), each with one thread, as many as there are shards to embed.
    size = actors or max(1, min(len(pending), int(free.get("GPU" if use_gpu else "CPU", 1))))
    actor = ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0)(Embedder)
    files = ray.put(checkpoint_files(checkpoint))  # actors may run on machines without the file
    handles: list[Any] = [
        actor.remote(files, "cuda" if use_gpu else "cpu", representation=representation)
        for _ in range(size)
    ]
    staging = staging_area(out)
    inputs: dict[str, Any] = manifest.summary["inputs"]
    started, embedded = time.perf_counter(), 0
    work = ActorPool(handles).map_unordered(
        lambda a, name: a.embed_shard.remote(str(data / name), splits, str(staging)),
        pending,
    )
    try:
        for record in work:
            inputs[record["input"]] = record.get("file")  # None: no event of these splits
            if record["rows"] == 0:
                manifest.write_due(out)
                continue
            stats = {"dim": record["dim"], "splits": record["splits"]}
            shard = ShardRecord(record["file"], record["rows"], record["sha256"], stats)
            publish(out, manifest, staging / record["file"], shard)
            embedded += record["rows"]
        log_stage_rate("embed", embedded, len(pending), time.perf_counter() - started, size)
    except Exception as err:
        cause = unwrap_ray_error(err)
        if isinstance(cause, UserError):
            raise cause from None
        raise
    finally:
        for handle in handles:
            ray.kill(handle)
