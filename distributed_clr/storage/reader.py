"""The one way to read a dataset's shards: Ray Data for the cluster, Arrow streaming in process.

Every stage that reads a dataset (pretraining, embedding, evaluation) comes through here:

* ``shard_paths`` lists the shards of a *complete* dataset of the expected kind, as its manifest
  names them, after verifying them against it (``storage.verify``), so a half-written, foreign
  or damaged dataset is refused with a message naming the file;
* ``ray_dataset`` gives a Ray Dataset of the chosen splits and columns (training shards it over
  workers with ``get_dataset_shard``, embedding maps a model over it);
* ``iter_tables`` streams the chosen splits and columns as Arrow tables of bounded size, without
  Ray (small tools, sample counts);
* ``map_shards`` reads the chosen splits and columns shard by shard on a pool of threads, one
  per usable CPU, turning each shard into what its caller needs (evaluation's feature matrices)
  as soon as it is read; Arrow's decoding and numpy's array work release the GIL, so the threads
  keep every core busy without Ray.

All check that the requested columns exist before anything is read. ``constituents`` turns an
Arrow batch of prepared dijets into tensors: the flat (B, 2N) pt/eta/phi columns become a
(B, 2, N, 3) float32 tensor in (pT [GeV], eta, phi) order plus a (B, 2, N) boolean mask of real
(non-padding) constituents. Fixed-size lists are reshaped without copying; Ray's numpy batch
format would turn them into slow object arrays, so batches stay in Arrow until here. Ray itself
is imported only by ``ray_dataset``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import torch

from distributed_clr.config.errors import ConfigError
from distributed_clr.storage.formats import SPLITS
from distributed_clr.storage.location import StoragePath, arrow_source, as_storage_path
from distributed_clr.storage.manifest import DatasetError, require_complete
from distributed_clr.storage.parallel import thread_map
from distributed_clr.storage.verify import VerifyLevel, verify_shards

__all__ = [
    "CONSTITUENT_COLUMNS",
    "check_splits",
    "column_to_numpy",
    "constituents",
    "iter_tables",
    "map_shards",
    "ray_dataset",
    "shard_paths",
]

CONSTITUENT_COLUMNS = ("pt", "eta", "phi")
FEATURES = 3
BATCH_ROWS = 65_536
"""Rows per Arrow table ``iter_tables`` yields (at most)."""

T = TypeVar("T")


def check_splits(splits: Sequence[str]) -> list[str]:
    """``splits`` as a list, refusing names other than train, val and test."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        named = ", ".join(f"'{name}'" for name in unknown)
        raise ConfigError(f"unknown split {named}; splits are {', '.join(SPLITS)}")
    return list(splits)


def shard_paths(
    directory: str | StoragePath, kind: str, verify: VerifyLevel = "sha256"
) -> list[StoragePath]:
    """The shard files of a finished dataset of ``kind``, in name order, as its manifest lists
    them, after checking them against it (``verify.verify_shards``). The directory may be a
    local path or an object-store URI (``storage.location``)."""
    directory = as_storage_path(directory)
    manifest = require_complete(directory, kind)
    verify_shards(directory, manifest, verify)
    return [directory / shard.file for shard in sorted(manifest.shards, key=lambda s: s.file)]


def _check_columns(schema: pa.Schema, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise DatasetError(f"{what} lacks column(s) {missing}; it has {schema.names}")


def ray_dataset(
    directory: str | StoragePath,
    kind: str,
    *,
    splits: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    verify: VerifyLevel = "sha256",
) -> Any:
    """A Ray Dataset of ``splits`` (default: all) of a ``kind`` dataset, with only ``columns``
    (default: all), its shards verified at level ``verify`` first."""
    import pyarrow.parquet as pq
    import ray.data
    from ray.data.expressions import col

    paths, filesystem = arrow_source(shard_paths(directory, kind, verify))
    chosen = None if splits is None else check_splits(splits)
    # Ray Data announces each execution; a successful run stays quiet unless -v (DEBUG).
    ray.data.DataContext.get_current().print_on_execution_start = logging.getLogger(
        "distributed_clr"
    ).isEnabledFor(logging.DEBUG)
    if columns is not None:
        schema = pq.read_schema(paths[0], filesystem=filesystem) if paths else pa.schema([])
        _check_columns(schema, [*columns, *(["split"] if chosen else [])], f"dataset {directory}")
    ds = ray.data.read_parquet(paths, filesystem=filesystem)
    if chosen is not None and set(chosen) != set(SPLITS):
        ds = ds.filter(expr=col("split").is_in(chosen))
    if columns is not None:
        ds = ds.select_columns(list(columns))
    return ds


def _scan(
    directory: str | StoragePath,
    kind: str,
    splits: Sequence[str] | None,
    columns: Sequence[str] | None,
    verify: VerifyLevel,
) -> tuple[pads.Dataset, list[str] | None, pads.Expression | None]:
    """The Arrow dataset of a ``kind`` dataset's verified shards, the columns to read and the
    split filter, the columns checked to exist."""
    paths, filesystem = arrow_source(shard_paths(directory, kind, verify))
    dataset = pads.dataset(paths, format="parquet", filesystem=filesystem)
    chosen = None if splits is None else check_splits(splits)
    if columns is not None or chosen is not None:
        wanted = [*(columns or []), *(["split"] if chosen is not None else [])]
        _check_columns(dataset.schema, wanted, f"{kind} dataset {directory}")
    selected = None if columns is None else list(columns)
    where = None if chosen is None else pads.field("split").isin(chosen)
    return dataset, selected, where


def iter_tables(
    directory: str | StoragePath,
    kind: str,
    *,
    splits: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    batch_rows: int = BATCH_ROWS,
    verify: VerifyLevel = "sha256",
) -> Iterator[pa.Table]:
    """Stream ``splits`` (default: all) of a ``kind`` dataset as Arrow tables of at most
    ``batch_rows`` rows, with only ``columns`` (default: all), its shards verified at level
    ``verify`` first; empty batches are skipped."""
    dataset, selected, where = _scan(directory, kind, splits, columns, verify)
    scanner = dataset.scanner(columns=selected, filter=where, batch_size=batch_rows)
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def map_shards(
    directory: str | StoragePath,
    kind: str,
    convert: Callable[[int, pa.Table], T],
    *,
    splits: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    verify: VerifyLevel = "sha256",
    threads: int | None = None,
) -> list[T]:
    """``convert(index, table)`` of every shard of a ``kind`` dataset, in shard order: each
    shard's rows of ``splits`` (default: all), with only ``columns`` (default: all), read as one
    Arrow table on one of ``threads`` threads (default: one per usable CPU) and converted there;
    ``index`` is the shard's position among all the dataset's shards. Shards with no rows in
    ``splits`` are skipped. The shards are verified at level ``verify`` first.

    Memory holds the results plus one shard's Arrow columns per thread; the first error a
    shard raises is raised here, after the shards under way have finished.
    """
    dataset, selected, where = _scan(directory, kind, splits, columns, verify)

    def one(shard: tuple[int, pads.Fragment]) -> list[T]:
        table = shard[1].to_table(columns=selected, filter=where, use_threads=False)
        return [convert(shard[0], table)] if table.num_rows else []

    shards = thread_map(one, list(enumerate(dataset.get_fragments())), threads)
    return [result for results in shards for result in results]


def column_to_numpy(column: pa.ChunkedArray | pa.Array) -> npt.NDArray[Any]:
    """A column as numpy; fixed-size lists become 2-D arrays (rows, width) without copying."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
        values: npt.NDArray[Any] = array.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(array), width)
    if pa.types.is_string(array.type) and not array.null_count:
        # A handful of distinct names (process, split, dataset): each made into a Python
        # string once rather than once per row, which holds the GIL far less.
        encoded = pc.dictionary_encode(array)
        names = np.empty(len(encoded.dictionary), dtype=object)
        names[:] = encoded.dictionary.to_pylist()
        strings: npt.NDArray[Any] = names[encoded.indices.to_numpy()]
        return strings
    return np.asarray(array.to_numpy(zero_copy_only=False))


def constituents(
    batch: Mapping[str, npt.NDArray[Any]] | pa.Table,
    device: torch.device | str | None = None,
    groups: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, mask): x (B, groups, N, 3) float32 as (pT, eta, phi); mask (B, groups, N), True
    where pT > 0. ``groups`` is 2 for dijets (the jets) and 1 for object-level events (the 19
    slots, ``storage.formats.EventLayout``)."""
    if isinstance(batch, pa.Table):
        arrays = {name: column_to_numpy(batch.column(name)) for name in CONSTITUENT_COLUMNS}
    else:
        arrays = {name: np.asarray(batch[name]) for name in CONSTITUENT_COLUMNS}
    pt = arrays["pt"]
    if pt.ndim != 2 or pt.shape[1] % groups:
        raise ValueError(f"constituent columns must be (B, {groups}N), got shape {pt.shape}")
    b, width = pt.shape
    stacked = np.stack([arrays[name] for name in CONSTITUENT_COLUMNS], axis=-1)
    x = torch.as_tensor(stacked.astype(np.float32, copy=False))
    x = x.view(b, groups, width // groups, FEATURES)
    mask = x[..., 0] > 0
    if device is not None:
        x, mask = x.to(device, non_blocking=True), mask.to(device, non_blocking=True)
    return x, mask
