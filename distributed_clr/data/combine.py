"""``dclr combine``: several event datasets of one kind as one dataset.

Object-level events arrive one process per file (``dclr import-adc`` of the background
cocktail and of each signal), while pretraining, embedding and evaluation read one dataset.
``combine`` makes one: every shard of every input is copied as it is (same bytes, same
checksum, its splits and folds unchanged) under a name that says where it came from, and one
manifest lists them all with the inputs' configurations and summaries. The inputs must be
complete datasets of the same kind (dijets also of the same ``prepare`` settings), and no
dataset name may occur in two of them: (dataset, event_id) is the key every later stage joins
on. An interrupted run resumes shard by shard; a rerun with other inputs is refused.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from distributed_clr.errors import UserError
from distributed_clr.progress import progress
from distributed_clr.storage.formats import EVENT_KINDS, SPLITS
from distributed_clr.storage.location import StoragePath, as_storage_path, copy
from distributed_clr.storage.manifest import (
    Manifest,
    ShardRecord,
    finish,
    publish,
    require_complete,
    resume_or_start,
    staging_area,
)
from distributed_clr.storage.verify import verify_shards

log = logging.getLogger(__name__)

__all__ = ["CombineError", "combine"]


class CombineError(UserError, ValueError):
    """Inputs that cannot be combined (other kinds, other prepare settings, shared names)."""


def _dataset_names(directory: StoragePath, manifest: Manifest) -> set[str]:
    names: set[str] = set()
    for shard in manifest.shards:
        column = pq.read_table(directory / shard.file, columns=["dataset"]).column("dataset")
        names.update(str(n) for n in pc.unique(column).to_pylist())
    return names


def _check(inputs: Sequence[StoragePath], manifests: Sequence[Manifest]) -> str:
    kinds = {m.kind for m in manifests}
    if len(kinds) > 1:
        listed = ", ".join(f"{p} ({m.kind})" for p, m in zip(inputs, manifests, strict=True))
        raise CombineError(f"the inputs hold different kinds of events: {listed}")
    kind = kinds.pop()
    if kind == "dijet":
        settings = {str(m.config.get("prepare")) for m in manifests}
        if len(settings) > 1:
            raise CombineError("the dijet inputs were prepared with different prepare settings")
    owner: dict[str, StoragePath] = {}
    for path, manifest in zip(inputs, manifests, strict=True):
        for name in sorted(_dataset_names(path, manifest)):
            if name in owner:
                raise CombineError(
                    f"dataset name '{name}' occurs in {owner[name]} and in {path}: events "
                    "would share keys (import or generate them under different names)"
                )
            owner[name] = path
    return kind


def combine(
    inputs: Sequence[str | StoragePath], out: str | StoragePath, verify: bool = True
) -> Manifest:
    """Combine the event datasets ``inputs`` into ``out`` (module docstring)."""
    paths = [as_storage_path(p).resolve() for p in inputs]
    if len(paths) < 2:
        raise CombineError("combine needs at least two input datasets")
    if len(set(paths)) < len(paths):
        raise CombineError("an input dataset is given twice")
    out = as_storage_path(out)
    if out.resolve() in paths:
        raise CombineError(f"the output {out} is one of the inputs")
    manifests = [require_complete(p, EVENT_KINDS) for p in paths]
    if verify:
        for path, manifest in zip(paths, manifests, strict=True):
            verify_shards(path, manifest, "sha256")
    kind = _check(paths, manifests)
    config: dict[str, Any] = {
        "inputs": [
            {"path": str(p), "config": m.config, "shards": sorted(s.sha256 for s in m.shards)}
            for p, m in zip(paths, manifests, strict=True)
        ]
    }
    if kind == "dijet":
        config["prepare"] = manifests[0].config["prepare"]
    manifest = resume_or_start(out, kind, config)
    if manifest.complete:
        log.info("reusing the combined dataset in %s", out)
        return manifest
    done = {s.file for s in manifest.shards}
    staging = staging_area(out)
    total = sum(len(m.shards) for m in manifests)
    with progress(total=total, desc="combine", unit="shard") as bar:
        for index, (path, source) in enumerate(zip(paths, manifests, strict=True)):
            for shard in sorted(source.shards, key=lambda s: s.file):
                name = f"input{index:02d}-{shard.file}"
                if name not in done:
                    copy(path / shard.file, staging / name)
                    record = ShardRecord(name, shard.rows, shard.sha256, dict(shard.stats))
                    publish(out, manifest, staging / name, record)
                bar.update(1)
    splits: Counter[str] = Counter()
    for source in manifests:
        splits.update({k: int(v) for k, v in source.summary.get("splits", {}).items()})
    manifest.summary = {
        "events": manifest.rows,
        "splits": {s: splits.get(s, 0) for s in SPLITS},
        "inputs": [m.summary for m in manifests],
    }
    finish(out, manifest)
    log.info("combined %d datasets (%d events) into %s", len(paths), manifest.rows, out)
    return manifest
