"""``dclr prepare``: raw events -> dijets with Ray Data, streaming, resumable, with a cut flow.

The pipeline is ``read_parquet`` (every pending raw shard, with its path) -> ``map_batches``
(clustering, selection, observables, splits; see ``dijets.py``) on all the cluster's CPUs. Each
batch writes its own output shard atomically and returns one small row of bookkeeping (file,
rows, checksum, cut flow), which is all that reaches the driver. A raw shard counts as done once
the events of all its batches add up to its row count; the driver then records its output shards
and cut flow in the manifest. A rerun skips done raw shards, removes output left by unfinished
ones, and redoes those. Memory is bounded by Ray Data's streaming executor: a few batches per
worker are in flight, whatever the input size.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distributed_clr.config.schema import PrepareConfig, RayConfig
from distributed_clr.data.dijets import CutFlow, select_dijets
from distributed_clr.progress import progress, progress_enabled
from distributed_clr.storage.files import write_parquet_atomic
from distributed_clr.storage.formats import RAW_SCHEMA, SchemaError, check_schema
from distributed_clr.storage.manifest import (
    DatasetError,
    Manifest,
    ShardRecord,
    require_complete,
    resume_or_start,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Input:
    dataset: str
    path: Path
    rows: int
    index: int  # position of the dataset among the inputs, for output names


def _inputs(raw_dirs: list[Path]) -> list[_Input]:
    """Every raw shard of every input dataset, after checking manifests and schemas."""
    found: list[_Input] = []
    names: dict[str, Path] = {}
    for index, directory in enumerate(raw_dirs):
        manifest = require_complete(directory, "raw")
        dataset = str(manifest.summary.get("dataset") or directory.name)
        if dataset in names:
            raise DatasetError(
                f"{directory} and {names[dataset]} are the same dataset ('{dataset}'); "
                "give each input once"
            )
        names[dataset] = directory
        if manifest.rows == 0:
            raise DatasetError(f"{directory} holds no events")
        for shard in sorted(manifest.shards, key=lambda s: s.file):
            path = directory / shard.file
            try:
                schema = pq.read_schema(path)
            except (OSError, pa.ArrowException) as err:
                raise DatasetError(f"{path}: not a readable Parquet file ({err})") from err
            check_schema(schema, RAW_SCHEMA, path)
            found.append(_Input(dataset, path.resolve(), shard.rows, index))
    return found


def _prepare_batch(
    batch: pa.Table, config: dict[str, Any], out: str, inputs: dict[str, tuple[str, int]]
) -> pa.Table:
    """The ``map_batches`` function: prepare a batch, write its shard, return bookkeeping rows.

    ``inputs`` maps each raw shard's path to (dataset name, input index).
    """
    prepare_config = PrepareConfig.model_validate(config)
    rows = []
    paths = batch.column("path").to_numpy(zero_copy_only=False)
    raw = batch.drop_columns(["path"])
    for path in np.unique(paths):  # a batch may straddle two raw shards
        part = raw.filter(pa.array(paths == path))
        dataset, index = inputs[str(path)]
        table, flow = select_dijets(part, prepare_config, dataset, source=str(path))
        first = int(part.column("event_id")[0].as_py())
        name = f"part-{index:02d}-{Path(str(path)).stem}-{first & (2**64 - 1):016x}.parquet"
        digest = write_parquet_atomic(table, Path(out) / name)
        splits, counts = np.unique(
            table.column("split").to_numpy(zero_copy_only=False), return_counts=True
        )
        rows.append(
            {
                "source": str(path),
                "file": name,
                "rows": table.num_rows,
                "sha256": digest,
                "flow": json.dumps(flow.to_json()),
                "splits": json.dumps(dict(zip(splits.tolist(), counts.tolist(), strict=True))),
            }
        )
    return pa.Table.from_pylist(rows)


def prepare(
    raw_dirs: list[Path], out: Path, config: PrepareConfig, ray_config: RayConfig
) -> Manifest:
    """Prepare the dijets of every raw dataset in ``raw_dirs`` into one dataset in ``out``."""
    import ray

    from distributed_clr.runtime import init_ray

    if not raw_dirs:
        raise ValueError("prepare needs at least one raw dataset")
    raw_dirs = [Path(d) for d in raw_dirs]
    inputs = _inputs(raw_dirs)
    identity = {
        "prepare": config.model_dump(mode="json"),
        "inputs": sorted({i.dataset for i in inputs}),
    }
    out = Path(out)
    manifest = resume_or_start(out, "dijet", identity)
    sources: dict[str, Any] = _complete_sources(manifest)
    pending = [i for i in inputs if _source_name(i) not in sources]
    _remove_unlisted(out, manifest)

    if pending:
        init_ray(ray_config)
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = progress_enabled()
        by_path = {str(i.path): i for i in pending}
        ds = ray.data.read_parquet([str(i.path) for i in pending], include_paths=True)
        ds = ds.select_columns([*RAW_SCHEMA.names, "path"])
        ds = ds.map_batches(
            _prepare_batch,  # type: ignore[arg-type]
            fn_kwargs={
                "config": config.model_dump(mode="json"),
                "out": str(out.resolve()),
                "inputs": {p: (i.dataset, i.index) for p, i in by_path.items()},
            },
            batch_size=config.batch_events,
            batch_format="pyarrow",
            num_cpus=1,
        )
        seen: dict[str, int] = defaultdict(int)
        parts: dict[str, list[ShardRecord]] = defaultdict(list)
        part_flows: dict[str, CutFlow] = defaultdict(CutFlow)
        total = sum(i.rows for i in pending)
        with progress(total=total, desc="prepare", unit="ev") as bar:
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                    assert isinstance(batch, pa.Table)
                    for row in batch.to_pylist():
                        item = by_path[row["source"]]
                        flow = CutFlow.from_json(json.loads(row["flow"]))
                        seen[row["source"]] += flow.events_in
                        part_flows[row["source"]].add(flow)
                        parts[row["source"]].append(
                            ShardRecord(
                                row["file"],
                                row["rows"],
                                row["sha256"],
                                {
                                    "source_name": _source_name(item),
                                    "dataset": item.dataset,
                                    "splits": json.loads(row["splits"]),
                                },
                            )
                        )
                        bar.update(flow.events_in)
                        if seen[row["source"]] == item.rows:  # this raw shard is complete
                            records = parts.pop(row["source"])
                            _commit(manifest, out, item, records, part_flows.pop(row["source"]))
            except Exception as err:  # Ray wraps user errors; surface the cause with its file
                raise _unwrap(err) from err
        missing = [str(i.path) for i in pending if seen[str(i.path)] != i.rows]
        if missing:
            raise DatasetError(f"prepare lost events of {missing}; rerun the command")

    flows = _cut_flows(manifest)
    manifest.summary["cut_flow"] = {name: flow.to_json() for name, flow in flows.items()}
    manifest.summary["events"] = manifest.rows
    splits: dict[str, int] = defaultdict(int)
    for shard in manifest.shards:
        for name, n in shard.stats["splits"].items():
            splits[name] += int(n)
    manifest.summary["splits"] = dict(sorted(splits.items()))
    manifest.complete = True
    manifest.write(out)
    for name, flow in flows.items():
        log.info(
            "%s: %d in, %d out, removed %s", name, flow.events_in, flow.events_out, flow.removed
        )
    return manifest


def _source_name(item: _Input) -> str:
    return f"{item.dataset}/{item.path.name}"


def _commit(
    manifest: Manifest, out: Path, item: _Input, records: list[ShardRecord], flow: CutFlow
) -> None:
    """Record a finished raw shard: its output shards and its cut flow."""
    kept = [r for r in records if r.rows > 0]
    for record in records:
        if record.rows == 0:  # nothing survived the cuts in that batch: no file needed
            (out / record.file).unlink(missing_ok=True)
    manifest.shards.extend(kept)
    manifest.summary.setdefault("sources", {})[_source_name(item)] = {
        "dataset": item.dataset,
        "files": sorted(r.file for r in kept),
        "cut_flow": flow.to_json(),
    }
    manifest.write(out)


def _complete_sources(manifest: Manifest) -> dict[str, Any]:
    """The raw shards whose outputs are all still listed (and verified) in the manifest.

    A raw shard with any output missing is forgotten entirely, so it is redone as a whole and
    its cut flow is never counted twice.
    """
    listed = {s.file for s in manifest.shards}
    sources: dict[str, Any] = manifest.summary.get("sources", {})
    complete = {k: v for k, v in sources.items() if set(v["files"]) <= listed}
    keep_files = {f for v in complete.values() for f in v["files"]}
    manifest.shards = [s for s in manifest.shards if s.file in keep_files]
    manifest.summary["sources"] = complete
    return complete


def _cut_flows(manifest: Manifest) -> dict[str, CutFlow]:
    flows: dict[str, CutFlow] = {}
    for source in manifest.summary.get("sources", {}).values():
        flows.setdefault(source["dataset"], CutFlow()).add(CutFlow.from_json(source["cut_flow"]))
    return dict(sorted(flows.items()))


def _remove_unlisted(out: Path, manifest: Manifest) -> None:
    listed = {s.file for s in manifest.shards}
    for path in out.glob("part-*.parquet"):
        if path.name not in listed:
            log.info("removing %s, left by an unfinished run", path)
            path.unlink()


def _unwrap(err: Exception) -> Exception:
    """The user-facing error inside Ray's wrappers (bad input names its file)."""
    from distributed_clr.data.dijets import BadEventsError

    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, BadEventsError | SchemaError | DatasetError):
            return cause
        cause = cause.__cause__
    text = str(err)
    marker = "BadEventsError: "
    if marker in text:
        return DatasetError(text[text.index(marker) + len(marker) :].strip().splitlines()[0])
    return err
