"""The stage record ``manifest.json``: it makes every stage resumable and every dataset checkable.

A dataset is a directory of Parquet shards plus ``manifest.json``. The manifest lists every
finished shard (file, rows, sha256, per-shard statistics) and is rewritten atomically after each
one by the process that drives the stage, with ``complete: false`` until the last shard is in.

Two policies use the same record:

* ``resume_or_start`` (data stages, embeddings): rerunning the same command keeps the shards the
  manifest lists (after checking their checksum) and redoes the rest; a rerun with a different
  configuration is refused rather than mixing two datasets in one directory.
* ``reuse_or_run`` (results without shards, e.g. an evaluation the demo runs): a complete record
  made with the same identity returns its stored result; any other is replaced by a new run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed_clr import __version__
from distributed_clr.errors import UserError
from distributed_clr.storage.files import atomic_write_text, sha256_file
from distributed_clr.storage.formats import SCHEMA_VERSION

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


_command: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """Record the command line that manifests name as their producer (the CLI calls this)."""
    global _command
    _command = list(argv)


def current_command() -> str:
    return shlex.join(_command if _command is not None else ["dclr", *sys.argv[1:]])


class DatasetError(UserError, RuntimeError):
    """A dataset directory that is missing, incomplete, corrupted or made by another config."""


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
        atomic_write_text(directory / MANIFEST, text)


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
    dropped from it, so they get redone. The returned manifest stays ``complete`` only when it
    was complete and every shard checked out, so a stage can return it at once.
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
    manifest.complete = manifest.complete and len(kept) == len(manifest.shards)
    manifest.shards = kept
    return manifest


def reuse_or_run(
    directory: Path, kind: str, identity: dict[str, Any], work: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """The result recorded in ``directory`` if a complete record of ``kind`` was made with
    ``identity``; else ``work()``'s result, recorded there (replacing any other record)."""
    try:
        manifest = read_manifest(directory)
    except DatasetError as err:
        log.warning("%s; it will be replaced", err)
        manifest = None
    if (
        manifest is not None
        and manifest.kind == kind
        and manifest.complete
        and manifest.config == identity
        and "result" in manifest.summary
    ):
        log.info("reusing %s", directory)
        result: dict[str, Any] = manifest.summary["result"]
        return result
    result = work()
    directory.mkdir(parents=True, exist_ok=True)
    record = Manifest(kind=kind, config=identity, summary={"result": result}, complete=True)
    record.write(directory)
    return result
