"""``dclr prepare``: raw events -> dijets, one Ray task per unit of work, resumable from any point.

The work is cut into *units*: consecutive Parquet row groups of one raw shard, at least
``prepare.events_per_task`` events each (fewer at the end of a shard). A unit depends only on
the raw data and the config, never on scheduling, so it always gives the same output file with
the same bytes. Each unit is one Ray task (one CPU): it reads its row groups in batches of
``prepare.batch_events`` (clustering, selection, observables and splits, ``dijets.py``), writes
its dijets as one Parquet shard into the run's staging area and returns a small record (file,
rows, checksum, cut flow). The driver publishes the shard (moves it into the dataset) and
records the unit in the manifest, which it rewrites when due (``Manifest.write_due``).

Resuming: the manifest exists from the start; a rerun skips the units it lists (their shards
verified), removes whatever a killed run left (staging area, temporary files, unlisted shards)
and redoes the rest, so an interrupted and resumed run ends with exactly the bytes of an
uninterrupted one. Inputs are verified against their manifests (row counts and checksums)
before any work starts, and the output location is checked before Ray starts.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from distributed_clr.config.schema import PrepareConfig, RayConfig
from distributed_clr.crashpoints import crash_point
from distributed_clr.data.dijets import CutFlow, select_dijets
from distributed_clr.progress import progress
from distributed_clr.storage.files import write_parquet_atomic
from distributed_clr.storage.formats import RAW_SCHEMA, check_schema
from distributed_clr.storage.location import StoragePath, as_storage_path, parquet_file
from distributed_clr.storage.manifest import (
    DatasetError,
    Manifest,
    ShardRecord,
    check_output_dir,
    finish,
    publish,
    require_complete,
    resume_or_start,
    staging_area,
)
from distributed_clr.storage.verify import VerifyLevel, verify_shards

log = logging.getLogger(__name__)

__all__ = ["Unit", "plan_units", "prepare"]


@dataclass(frozen=True)
class Unit:
    """Row groups ``[first_group, end_group)`` of one raw shard: one task, one output shard."""

    dataset: str
    path: StoragePath
    index: int
    """Position of the dataset among the inputs (it orders the output names)."""
    first_group: int
    end_group: int
    rows: int

    @property
    def name(self) -> str:
        """The output shard's file name (and the unit's key in the manifest)."""
        return f"part-{self.index:02d}-{self.path.stem}-{self.first_group:05d}.parquet"


def _input_datasets(
    raw_dirs: list[StoragePath], verify: VerifyLevel
) -> list[tuple[str, StoragePath, Manifest]]:
    """(dataset name, directory, manifest) of every input, verified and distinct."""
    found: list[tuple[str, StoragePath, Manifest]] = []
    names: dict[str, StoragePath] = {}
    for directory in raw_dirs:
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
        verify_shards(directory, manifest, verify)
        found.append((dataset, directory, manifest))
    return found


def plan_units(
    raw_dirs: list[StoragePath], events_per_task: int, verify: VerifyLevel
) -> list[Unit]:
    """Every unit of work of the inputs, in a fixed order (inputs, shards, row groups)."""
    units = []
    for index, (dataset, directory, manifest) in enumerate(_input_datasets(raw_dirs, verify)):
        for shard in sorted(manifest.shards, key=lambda s: s.file):
            path = (directory / shard.file).resolve()
            try:
                metadata = parquet_file(path).metadata
            except (OSError, pa.ArrowException) as err:
                raise DatasetError(f"{path}: not a readable Parquet file ({err})") from err
            check_schema(metadata.schema.to_arrow_schema(), RAW_SCHEMA, str(path))
            first, rows = 0, 0
            for group in range(metadata.num_row_groups):
                rows += metadata.row_group(group).num_rows
                if rows >= events_per_task or group == metadata.num_row_groups - 1:
                    units.append(Unit(dataset, path, index, first, group + 1, rows))
                    first, rows = group + 1, 0
    return units


def prepare_unit(unit: Unit, config: PrepareConfig, staging: str) -> dict[str, Any]:
    """The Ray task: one unit's dijets as one shard in ``staging``, and its record."""
    parquet = parquet_file(unit.path)
    tables: list[pa.Table] = []
    flow = CutFlow()
    for batch in parquet.iter_batches(
        batch_size=config.batch_events,
        row_groups=list(range(unit.first_group, unit.end_group)),
        columns=list(RAW_SCHEMA.names),
    ):
        table, batch_flow = select_dijets(
            pa.Table.from_batches([batch]), config, unit.dataset, source=str(unit.path)
        )
        tables.append(table)
        flow.add(batch_flow)
    if flow.events_in != unit.rows:
        raise DatasetError(
            f"{unit.path}: row groups {unit.first_group}-{unit.end_group - 1} held "
            f"{flow.events_in} events, the file's footer says {unit.rows}"
        )
    output = pa.concat_tables(tables) if tables else pa.table({})
    record: dict[str, Any] = {"rows": output.num_rows, "flow": flow.to_json(), "sha256": None}
    if output.num_rows:
        record["sha256"] = write_parquet_atomic(output, as_storage_path(staging) / unit.name)
        splits = output.column("split").to_pylist()
        record["splits"] = {name: splits.count(name) for name in sorted(set(splits))}
    return record


def prepare(
    raw_dirs: Sequence[str | StoragePath],
    out: str | StoragePath,
    config: PrepareConfig,
    ray_config: RayConfig,
    *,
    verify: VerifyLevel = "sha256",
) -> Manifest:
    """Prepare the dijets of every raw dataset in ``raw_dirs`` into one dataset in ``out``."""
    if not raw_dirs:
        raise DatasetError("prepare needs at least one raw dataset")
    inputs = [as_storage_path(d) for d in raw_dirs]
    out = as_storage_path(out)
    check_output_dir(out)
    units = plan_units(inputs, config.events_per_task, verify)
    identity = {
        "prepare": config.model_dump(mode="json"),
        "inputs": sorted({u.dataset for u in units}),
    }
    manifest = resume_or_start(out, "dijet", identity)
    done = _completed_units(manifest)
    pending = [u for u in units if u.name not in done]
    crash_point("stage-started", str(out))
    if pending:
        _run_units(pending, manifest, out, config, ray_config, done, sum(u.rows for u in units))
    return _finish(manifest, out, units)


def _completed_units(manifest: Manifest) -> dict[str, Any]:
    """The units whose output the manifest still lists (verified), or that selected nothing."""
    listed = {s.file for s in manifest.shards}
    units: dict[str, Any] = manifest.summary.get("units", {})
    done = {k: v for k, v in units.items() if v["rows"] == 0 or k in listed}
    manifest.summary["units"] = done
    manifest.shards = [s for s in manifest.shards if s.file in done]
    return done


def _run_units(
    pending: list[Unit],
    manifest: Manifest,
    out: StoragePath,
    config: PrepareConfig,
    ray_config: RayConfig,
    done: dict[str, Any],
    total: int,
) -> None:
    import ray

    from distributed_clr.runtime import as_completed, init_ray, log_stage_rate

    init_ray(ray_config)
    staging = staging_area(out)
    task = ray.remote(num_cpus=1, max_retries=1)(prepare_unit)
    started = time.perf_counter()
    refs = {task.remote(u, config, str(staging)): u for u in pending}
    initial = total - sum(u.rows for u in pending)
    with progress(total=total, initial=initial, desc="prepare", unit="ev") as bar:
        for unit, record in as_completed(refs):
            done[unit.name] = {
                "dataset": unit.dataset,
                "source": f"{unit.dataset}/{unit.path.name}",
                "row_groups": [unit.first_group, unit.end_group],
                "rows": record["rows"],
                "cut_flow": record["flow"],
            }
            manifest.summary["units"] = dict(sorted(done.items()))
            if record["rows"]:
                stats = {"dataset": unit.dataset, "splits": record["splits"]}
                shard = ShardRecord(unit.name, record["rows"], record["sha256"], stats)
                publish(out, manifest, staging / unit.name, shard)
            else:
                manifest.write_due(out)
            bar.update(unit.rows)
            log.debug("%s: %d of %d events kept", unit.name, record["rows"], unit.rows)
    cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
    seconds = time.perf_counter() - started
    events = sum(u.rows for u in pending)
    log_stage_rate("prepare", events, len(pending), seconds, min(cpus, len(pending)))


def _finish(manifest: Manifest, out: StoragePath, units: list[Unit]) -> Manifest:
    flows: dict[str, CutFlow] = {}
    for unit in manifest.summary["units"].values():
        flows.setdefault(unit["dataset"], CutFlow()).add(CutFlow.from_json(unit["cut_flow"]))
    missing = [u.name for u in units if u.name not in manifest.summary["units"]]
    if missing:
        raise DatasetError(f"prepare did not finish units {missing[:3]}; rerun the command")
    manifest.summary["cut_flow"] = {name: f.to_json() for name, f in sorted(flows.items())}
    manifest.summary["events"] = manifest.rows
    splits: dict[str, int] = defaultdict(int)
    for shard in manifest.shards:
        for name, n in shard.stats["splits"].items():
            splits[name] += int(n)
    manifest.summary["splits"] = dict(sorted(splits.items()))
    finish(out, manifest)
    for name, flow in flows.items():
        log.info(
            "%s: %d in, %d out, removed %s",
            name,
            flow.events_in,
            flow.events_out,
            json.dumps(flow.removed),
        )
    return manifest
