"""Where datasets live: a local directory or an object-store URI, behind one path type.

Every stage names its inputs and outputs as text (``--data``, ``--out``). ``as_storage_path``
turns local paths into ``pathlib.Path`` and URIs (``s3://bucket/key``, ``gs://``, ``abfs://``,
``hdfs://``) into ``RemotePath``: the part of ``pathlib.Path``'s interface the storage layer
uses (joining, names, existence, listing, reading, writing, renaming, deleting), carried out
through pyarrow's file systems. The storage layer (manifests, atomic writes, shard checks, the
reader) and the stages that write datasets (prepare, embed) are written against that common
interface, so a dataset on object storage is made, resumed and verified exactly like one on disk.

Credentials and endpoints come from the environment only, as pyarrow reads them: for S3,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` and, for an
S3-compatible server, ``AWS_ENDPOINT_URL``. Nothing of them is written to a manifest or a log.

Object stores have no directories and no rename. ``RemotePath.mkdir`` writes nothing the
readers depend on, ``replace`` is a copy and delete (a reader sees the old object or the new
one, never part of one), and a write is one upload, which the store makes visible whole, so
``storage.files.atomic_write_bytes`` keeps its promise on both kinds of storage.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs as pafs

from distributed_clr.errors import UserError

__all__ = [
    "RemotePath",
    "StorageError",
    "StoragePath",
    "arrow_source",
    "as_storage_path",
    "copy",
    "is_uri",
    "move",
    "parquet_file",
    "remove_tree",
]


class StorageError(UserError, OSError):
    """A storage URI that cannot be opened (unknown scheme, no credentials, unreachable)."""


def is_uri(text: str | Path) -> bool:
    """True for ``scheme://...`` other than ``file://``."""
    value = str(text)
    return "://" in value and not value.startswith("file://")


@functools.lru_cache(maxsize=32)
def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    try:
        filesystem, path = pafs.FileSystem.from_uri(root)
    except (OSError, ValueError) as err:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
        raise StorageError(f"cannot open storage {root}: {err}") from None
    return filesystem, str(path)


@dataclass(frozen=True)
class _Stat:
    st_size: int
    st_mtime_ns: int


class RemotePath:
    """A file or directory on a pyarrow file system, named by its URI."""

    def __init__(self, uri: str, *, _fs: pafs.FileSystem | None = None, _path: str = "") -> None:
        scheme, _, rest = uri.partition("://")
        self._scheme = scheme
        self._key = str(PurePosixPath("/" + rest.strip("/")))[1:]
        if not self._key.split("/", 1)[0]:
            raise StorageError(f"{uri} names no bucket or host")
        self._fs = _fs
        self.path: str = _path or self._key
        """The path as the file system knows it (``bucket/key`` for S3)."""

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow file system, opened on first use (naming a URI touches no network)."""
        if self._fs is None:
            bucket = self._key.split("/", 1)[0]
            self._fs, _ = _filesystem(f"{self._scheme}://{bucket}")
        return self._fs

    # -- names ---------------------------------------------------------------------------------

    def __str__(self) -> str:
        return f"{self._scheme}://{self._key}"

    def __repr__(self) -> str:
        return f"RemotePath('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    def __truediv__(self, name: str) -> RemotePath:
        child = f"{self._key}/{name}".strip("/")
        return RemotePath(f"{self._scheme}://{child}", _fs=self._fs, _path=f"{self.path}/{name}")

    def __reduce__(self) -> tuple[Any, ...]:
        # A path travels to Ray workers: it is rebuilt there from its URI, and the worker's own
        # environment supplies the credentials.
        return (RemotePath, (str(self),))

    @property
    def name(self) -> str:
        return PurePosixPath(self._key).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self._key).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self._key).suffix

    @property
    def parent(self) -> RemotePath:
        key = str(PurePosixPath(self._key).parent)
        path = str(PurePosixPath(self.path).parent)
        return RemotePath(f"{self._scheme}://{key}", _fs=self._fs, _path=path)

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def resolve(self) -> RemotePath:
        return self

    def expanduser(self) -> RemotePath:
        return self

    def as_uri(self) -> str:
        return str(self)

    # -- queries -------------------------------------------------------------------------------

    def _info(self) -> pafs.FileInfo:
        try:
            return self.filesystem.get_file_info(self.path)
        except OSError as err:
            raise StorageError(f"cannot reach {self}: {err}") from None

    def exists(self) -> bool:
        return bool(self._info().type != pafs.FileType.NotFound)

    def is_file(self) -> bool:
        return bool(self._info().type == pafs.FileType.File)

    def is_dir(self) -> bool:
        return bool(self._info().type == pafs.FileType.Directory)

    def stat(self) -> _Stat:
        info = self._info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(str(self))
        return _Stat(int(info.size or 0), int(info.mtime_ns or 0))

    def iterdir(self) -> Iterator[RemotePath]:
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=False)
        for info in self.filesystem.get_file_info(selector):
            yield self / PurePosixPath(info.path).name

    # -- reading and writing -------------------------------------------------------------------

    def open(self, mode: str = "rb") -> Any:
        """A binary stream: ``rb`` to read, ``wb`` to write (one upload when it closes)."""
        if mode == "rb":
            return self.filesystem.open_input_stream(self.path)
        if mode == "wb":
            return self.filesystem.open_output_stream(self.path)
        raise ValueError(f"RemotePath.open supports 'rb' and 'wb', not {mode!r}")

    def read_bytes(self) -> bytes:
        with self.open("rb") as handle:
            return bytes(handle.read())

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        with self.open("wb") as handle:
            handle.write(data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        self.filesystem.create_dir(self.path, recursive=parents)

    def replace(self, target: StoragePath) -> RemotePath:
        if not isinstance(target, RemotePath):
            raise TypeError(f"cannot move {self} to the local path {target}")
        self.filesystem.move(self.path, target.path)
        return target

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.filesystem.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise


StoragePath = Path | RemotePath
"""A local path or a path on object storage."""


def as_storage_path(value: str | Path | RemotePath) -> StoragePath:
    """``value`` as a ``RemotePath`` when it is a URI, else as a ``Path`` (``file://`` too)."""
    if isinstance(value, RemotePath | Path):
        return value
    if value.startswith("file://"):
        return Path(value[len("file://") :])
    return RemotePath(value) if is_uri(value) else Path(value)


def remove_tree(path: StoragePath) -> None:
    """Delete a directory and everything under it; nothing happens when it is absent."""
    if isinstance(path, RemotePath):
        with contextlib.suppress(FileNotFoundError):
            path.filesystem.delete_dir(path.path)
        return
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def move(source: StoragePath, target: StoragePath) -> None:
    """Rename ``source`` to ``target`` on the same storage (replacing ``target``)."""
    if isinstance(source, RemotePath):
        source.replace(target)
    elif isinstance(target, RemotePath):
        raise TypeError(f"cannot move the local file {source} to {target}")
    else:
        source.replace(target)


def parquet_file(path: StoragePath) -> Any:
    """``pyarrow.parquet.ParquetFile`` of ``path``: its footer is read now, its data when
    asked for."""
    import pyarrow.parquet as pq

    if isinstance(path, RemotePath):
        return pq.ParquetFile(path.path, filesystem=path.filesystem)
    return pq.ParquetFile(path)


def arrow_source(paths: list[StoragePath]) -> tuple[list[str], pafs.FileSystem | None]:
    """Paths in the form pyarrow and Ray Data read, with their file system (None: local)."""
    remote = [p for p in paths if isinstance(p, RemotePath)]
    if not remote:
        return [str(p.resolve()) for p in paths], None
    if len(remote) != len(paths) or len({id(p.filesystem) for p in remote}) != 1:
        raise StorageError("one dataset's shards must all be on the same storage")
    return [p.path for p in remote], remote[0].filesystem


def _arrow(path: StoragePath) -> tuple[str, pafs.FileSystem]:
    if isinstance(path, RemotePath):
        return path.path, path.filesystem
    return str(path.resolve()), pafs.LocalFileSystem()


def copy(source: StoragePath, target: StoragePath) -> None:
    """Copy one file, between any two storages (local to S3, S3 to S3, ...)."""
    source_path, source_fs = _arrow(source)
    target_path, target_fs = _arrow(target)
    pafs.copy_files(
        source_path,
        target_path,
        source_filesystem=source_fs,
        destination_filesystem=target_fs,
    )
