"""What every reader checks before it reads a dataset: its shards are the ones the manifest lists.

``verify_shards`` looks at each listed shard: it must exist, be a readable Parquet file, have
the row count the manifest records and, at level ``sha256`` (the default everywhere), the
recorded checksum. A shard swapped for another, truncated, or changed after it was written is
refused with a message naming the file, what was expected and what was found. Level ``rows``
checks only existence and row counts (from the Parquet footer, without reading the data), for
very large datasets on storage you trust. A checksum computed once is remembered per process for
the same file size and modification time, so a run that reads a dataset twice hashes it once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Literal

import pyarrow as pa

from distributed_clr.storage.files import sha256_file
from distributed_clr.storage.location import StoragePath, as_storage_path, parquet_file
from distributed_clr.storage.manifest import (
    MANIFEST,
    DatasetError,
    Manifest,
    ShardRecord,
    read_manifest,
)
from distributed_clr.storage.parallel import thread_map

log = logging.getLogger(__name__)

__all__ = ["VerifyLevel", "check_directory", "problems", "verify_shards"]

VerifyLevel = Literal["sha256", "rows"]

_hashed: dict[tuple[str, int, int], str] = {}


def _sha256(path: StoragePath) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashed:
        _hashed[key] = sha256_file(path)
    return _hashed[key]


def problems(
    directory: str | StoragePath, manifest: Manifest, level: VerifyLevel = "sha256"
) -> Iterator[str]:
    """One message per shard that does not match the manifest, in shard order. Shards are
    checked on a thread per usable CPU (hashing and reading release the GIL)."""
    directory = as_storage_path(directory)
    where = f"(listed in {directory / MANIFEST})"

    def check(shard: ShardRecord) -> str | None:
        path = directory / shard.file
        if not path.is_file():
            return f"shard {path} is missing {where}"
        try:
            rows = parquet_file(path).metadata.num_rows
        except (OSError, pa.ArrowException) as err:
            return f"shard {path} is not a readable Parquet file ({err})"
        if rows != shard.rows:
            return f"shard {path} has {rows} rows; the manifest records {shard.rows}"
        if level == "sha256":
            digest = _sha256(path)
            if digest != shard.sha256:
                return (
                    f"shard {path} has sha256 {digest[:16]}...; the manifest records "
                    f"{shard.sha256[:16]}... (the file changed after it was written)"
                )
        return None

    for message in thread_map(check, sorted(manifest.shards, key=lambda s: s.file)):
        if message is not None:
            yield message


def verify_shards(
    directory: str | StoragePath, manifest: Manifest, level: VerifyLevel = "sha256"
) -> None:
    """Raise ``DatasetError`` naming the first shard that does not match the manifest (and how
    many others do not)."""
    found = list(problems(directory, manifest, level))
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise DatasetError(
            f"{found[0]}{more}; the dataset in {directory} is damaged: rerun the command that "
            f"made it ({manifest.command}) into a new directory"
        )
    log.debug("verified %d shards of %s (%s)", len(manifest.shards), directory, level)


def check_directory(directory: str | StoragePath) -> tuple[Manifest | None, list[str]]:
    """Everything wrong with a stage's output directory, whatever its kind (``dclr verify``):
    no or an unreadable manifest, an incomplete stage, shards or recorded files that do not
    match. Checksums are always checked."""
    directory = as_storage_path(directory)
    if not directory.is_dir():
        exists = directory.exists()
        return None, [f"{directory} {'is a file, not a directory' if exists else 'does not exist'}"]
    try:
        manifest = read_manifest(directory)
    except DatasetError as err:
        return None, [str(err)]
    if manifest is None:
        return None, [f"{directory} has no {MANIFEST}: not the output of a dclr stage"]
    found = list(problems(directory, manifest, "sha256"))
    for name, digest in manifest.summary.get("outputs", {}).items():
        path = directory / name
        if not path.is_file():
            found.append(f"{path} is missing (recorded in {directory / MANIFEST})")
        elif _sha256(path) != digest:
            found.append(f"{path} changed after it was recorded")
    if not manifest.complete:
        found.append(
            f"{directory} is incomplete ({len(manifest.shards)} shards finished); rerun the "
            f"command that made it: {manifest.command}"
        )
    return manifest, found
