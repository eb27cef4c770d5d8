"""Datasets on disk: atomic shard writes, checksums, and the manifest that makes stages resumable.

A dataset is a directory of Parquet shards plus ``manifest.json``. Shards are written under a
temporary name and renamed when complete, so a reader never sees half a file. The manifest lists
every finished shard (file, rows, sha256, per-shard statistics) and is rewritten atomically after
each one by the process that drives the stage, with ``complete: false`` until the last shard is
in. Rerunning the same command therefore skips the shards the manifest lists (after checking
their checksum) and redoes the rest; a rerun with a different configuration is refused rather
than mixing two datasets in one directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import os
import shlex
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distributed_clr import __version__
from distributed_clr.data.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


_command: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """Record the command line that manifests name as their producer (the CLI calls this)."""
    global _command
    _command = list(argv)


def current_command() -> str:
    return shlex.join(_command if _command is not None else ["dclr", *sys.argv[1:]])


class DatasetError(RuntimeError):
    """A dataset directory that is missing, incomplete, corrupted or made by another config."""


# ------------------------------------------------------------------------------------------------
# atomic files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent, old, or complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_parquet_atomic(table: pa.Table, path: Path, *, row_group_size: int = 4096) -> str:
    """Write ``table`` as Parquet atomically; returns the file's sha256 (hex).

    The bytes depend only on the table and the library versions, so equal tables give equal
    checksums (generation is checked for reproducibility this way).
    """
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        row_group_size=row_group_size,
        write_statistics=True,
        store_schema=True,
    )
    data = sink.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------
# manifest


@dataclass
class ShardRecord:
    """One finished shard: its file name (relative to the dataset), rows, checksum, statistics."""

    file: str
    rows: int
    sha256: str
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "rows": self.rows, "sha256": self.sha256, **self.stats}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShardRecord:
        stats = {k: v for k, v in data.items() if k not in {"file", "rows", "sha256"}}
        return cls(str(data["file"]), int(data["rows"]), str(data["sha256"]), stats)


@dataclass
class Manifest:
    """The contents of ``manifest.json``."""

    kind: str
    """'raw', 'dijet' or 'embedding'."""
    config: dict[str, Any]
    """The sub-config that produced the dataset (what makes two runs 'the same')."""
    seeds: dict[str, Any] = field(default_factory=dict)
    shards: list[ShardRecord] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    """Dataset-level results: cross-section, trigger efficiency, cut flow, ..."""
    command: str = field(default_factory=current_command)
    complete: bool = False
    schema_version: int = SCHEMA_VERSION
    created: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    dclr_version: str = __version__

    @property
    def rows(self) -> int:
        return sum(shard.rows for shard in self.shards)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "complete": self.complete,
            "rows": self.rows,
            "command": self.command,
            "created": self.created,
            "dclr_version": self.dclr_version,
            "config": self.config,
            "seeds": self.seeds,
            "summary": self.summary,
            "shards": [shard.to_json() for shard in sorted(self.shards, key=lambda s: s.file)],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        return cls(
            kind=str(data["kind"]),
            config=dict(data["config"]),
            seeds=dict(data.get("seeds", {})),
            shards=[ShardRecord.from_json(s) for s in data.get("shards", [])],
            summary=dict(data.get("summary", {})),
            command=str(data.get("command", "")),
            complete=bool(data.get("complete", False)),
            schema_version=int(data["schema_version"]),
            created=str(data.get("created", "")),
            dclr_version=str(data.get("dclr_version", "")),
        )

    def write(self, directory: Path) -> None:
        text = json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"
        atomic_write_bytes(directory / MANIFEST, text.encode())


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest of ``directory``, or None where there is none yet."""
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest.from_json(data)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{path} is not a readable dataset manifest: {err}") from err
    if manifest.schema_version != SCHEMA_VERSION:
        raise DatasetError(
            f"{path} has schema version {manifest.schema_version}; this dclr reads "
            f"version {SCHEMA_VERSION}"
        )
    return manifest


def require_complete(directory: Path, kind: str) -> Manifest:
    """The manifest of a finished dataset of ``kind``; a clear error for anything else."""
    if not directory.is_dir():
        raise DatasetError(f"dataset directory {directory} does not exist")
    manifest = read_manifest(directory)
    if manifest is None:
        raise DatasetError(f"{directory} has no {MANIFEST}: not a dclr dataset")
    if manifest.kind != kind:
        raise DatasetError(f"{directory} holds a '{manifest.kind}' dataset, expected '{kind}'")
    if not manifest.complete:
        raise DatasetError(
            f"{directory} is incomplete ({len(manifest.shards)} shards finished); "
            f"rerun the command that made it: {manifest.command}"
        )
    return manifest


def resume_or_start(directory: Path, kind: str, config: dict[str, Any]) -> Manifest:
    """Start a dataset in ``directory``, or resume the one there if it was made the same way.

    Shards listed in an existing manifest whose file is missing or whose checksum differs are
    dropped from it, so they get redone.
    """
    manifest = read_manifest(directory)
    if manifest is None:
        if directory.exists() and any(p.suffix == ".parquet" for p in directory.iterdir()):
            raise DatasetError(
                f"{directory} holds Parquet files but no {MANIFEST}; choose an empty --out "
                "directory (nothing there was changed)"
            )
        directory.mkdir(parents=True, exist_ok=True)
        return Manifest(kind=kind, config=config)
    if manifest.kind != kind or manifest.config != config:
        raise DatasetError(
            f"{directory} already holds a '{manifest.kind}' dataset made with a different "
            "configuration; choose another --out directory (nothing there was changed). "
            f"It was made by: {manifest.command}"
        )
    kept = []
    for shard in manifest.shards:
        path = directory / shard.file
        if path.exists() and sha256_file(path) == shard.sha256:
            kept.append(shard)
        else:
            log.warning("shard %s is missing or corrupted; it will be redone", path)
    manifest.shards = kept
    manifest.complete = False
    return manifest


def shard_paths(directory: Path, kind: str) -> list[Path]:
    """The shard files of a finished dataset, in name order, as its manifest lists them."""
    manifest = require_complete(Path(directory), kind)
    return [Path(directory) / shard.file for shard in sorted(manifest.shards, key=lambda s: s.file)]
