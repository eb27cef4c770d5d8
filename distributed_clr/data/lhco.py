"""``dclr import-lhco``: the LHC Olympics 2020 HDF5 files as raw-event Parquet.

The files are pandas HDF5 tables, one row per event: 700 particles x (pT, eta, phi), zero-padded,
optionally followed by the truth label (``events_anomalydetection.h5`` and the 3-prong signal file
have it; the black boxes do not, and get label -1). pandas writes them in one of two layouts:

* ``fixed`` (the default of ``DataFrame.to_hdf``): a group with ``axis0`` (column names),
  ``axis1`` (row index) and one 2-D ``blockK_values`` array per dtype, whose columns are named by
  ``blockK_items``;
* ``table``: a group with a compound dataset ``table`` whose ``index`` field is the row index and
  whose ``values_block_K`` fields hold the columns, in order, of each dtype block.

Both are read with h5py in row chunks, so memory stays bounded whatever the file's size; padding
(pT = 0) is stripped with array operations, and each group of chunks is written as one shard.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distributed_clr.data.hdf5 import check_positive, decode_strings, open_hdf5, row_chunks
from distributed_clr.errors import UserError
from distributed_clr.physics.particles import Particles, to_arrow
from distributed_clr.progress import progress
from distributed_clr.storage.files import write_parquet_atomic
from distributed_clr.storage.formats import LABEL_UNKNOWN
from distributed_clr.storage.manifest import (
    Manifest,
    ShardRecord,
    finish,
    publish,
    resume_or_start,
    staging_area,
)

log = logging.getLogger(__name__)

FEATURES = 3  # pT, eta, phi per particle
_ROW_BITS = 40  # event_id = file ordinal << 40 | row index


class LHCOFormatError(UserError, ValueError):
    """A file that is not in the LHC Olympics layout."""


@dataclass
class _Layout:
    """Where the value columns of a pandas HDF5 frame live, in the frame's column order."""

    rows: int
    columns: int
    kind: str  # "fixed" or "table"
    blocks: list[tuple[str, npt.NDArray[np.int64]]]
    """(dataset or field name, positions of its columns in the frame) per dtype block."""


def _find_group(handle: Any, key: str | None, path: Path) -> Any:
    import h5py

    if key is not None:
        if key not in handle:
            raise LHCOFormatError(f"{path}: no key '{key}'; keys are {list(handle.keys())}")
        if not isinstance(handle[key], h5py.Group):
            groups = [k for k in handle if isinstance(handle[k], h5py.Group)]
            raise LHCOFormatError(
                f"{path}: '{key}' is an HDF5 dataset, not a pandas frame (a group); frames in "
                f"the file: {groups or 'none'}"
            )
        return handle[key]
    groups = [k for k in handle if isinstance(handle[k], h5py.Group)]
    if len(groups) != 1:
        raise LHCOFormatError(
            f"{path}: expected one pandas frame, found groups {groups}; pass --key"
        )
    return handle[groups[0]]


def _layout(group: Any, path: Path) -> _Layout:
    if "table" in group:  # pandas 'table' storage
        table = group["table"]
        fields = [f for f in (table.dtype.names or ()) if f.startswith("values_block_")]
        if not fields:
            raise LHCOFormatError(f"{path}: table storage without value columns")
        blocks, start = [], 0
        for name in sorted(fields, key=lambda f: int(f.rsplit("_", 1)[1])):
            shape = table.dtype[name].shape
            width = int(shape[0]) if shape else 1
            blocks.append((name, np.arange(start, start + width, dtype=np.int64)))
            start += width
        return _Layout(int(table.shape[0]), start, "table", blocks)
    if "axis0" in group and "block0_values" in group:  # pandas 'fixed' storage
        columns = decode_strings(group["axis0"][()])
        where = {name: i for i, name in enumerate(columns)}
        blocks = []
        k = 0
        while f"block{k}_values" in group:
            items = decode_strings(group[f"block{k}_items"][()])
            blocks.append((f"block{k}_values", np.array([where[n] for n in items], np.int64)))
            k += 1
        rows = int(group["block0_values"].shape[0])
        return _Layout(rows, len(columns), "fixed", blocks)
    raise LHCOFormatError(
        f"{path}: not a pandas HDF5 frame (expected 'table' or 'axis0'/'block0_values')"
    )


def _check_numeric(group: Any, layout: _Layout, path: Path) -> None:
    """Every value column is a number (pandas stores strings as object blocks)."""
    for name, positions in layout.blocks:
        dtype = group["table"].dtype[name] if layout.kind == "table" else group[name].dtype
        base = dtype.base if dtype.subdtype is not None else dtype
        if base.kind not in "fiub":
            raise LHCOFormatError(
                f"{path}: columns {positions[:3].tolist()}{'...' if len(positions) > 3 else ''} "
                f"hold {base} values ('{name}'); an LHC Olympics file holds numbers only"
            )


def _read_rows(group: Any, layout: _Layout, start: int, stop: int) -> npt.NDArray[np.float64]:
    out = np.empty((stop - start, layout.columns), dtype=np.float64)
    if layout.kind == "table":
        chunk = group["table"][start:stop]
        for name, positions in layout.blocks:
            out[:, positions] = np.asarray(chunk[name], dtype=np.float64).reshape(stop - start, -1)
    else:
        for name, positions in layout.blocks:
            out[:, positions] = group[name][start:stop]
    return out


def _split_label(
    values: npt.NDArray[np.float64], path: Path, start: int, label: int | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int8]]:
    columns = values.shape[1]
    if columns % FEATURES == 1:
        particles, labels = values[:, :-1], values[:, -1]
        bad = ~np.isin(labels, (0.0, 1.0))
        if bad.any():
            row = start + int(np.argmax(bad))
            raise LHCOFormatError(
                f"{path}: row {row} has label {float(labels[bad][0])}; labels must be 0 or 1"
            )
        out = labels.astype(np.int8)
    elif columns % FEATURES == 0:
        particles = values
        out = np.full(len(values), LABEL_UNKNOWN, dtype=np.int8)
    else:
        raise LHCOFormatError(
            f"{path}: {columns} columns is neither 3 x particles nor 3 x particles + label"
        )
    if label is not None:
        out = np.full(len(values), label, dtype=np.int8)
    return particles, out


def _strip_padding(values: npt.NDArray[np.float64], path: Path, start: int) -> Particles:
    """Rows of (pT, eta, phi) x particles -> flat particles without the zero padding."""
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise LHCOFormatError(f"{path}: row {start + row}, column {col} is not finite")
    triples = values.reshape(len(values), -1, FEATURES)
    pt = triples[..., 0]
    if (pt < 0).any():
        row = int(np.argwhere(pt < 0)[0][0])
        raise LHCOFormatError(f"{path}: row {start + row} has a negative pT")
    real = pt > 0
    kept = triples[real]  # row-major: each event's particles stay together and in order
    return Particles(
        kept[:, 0].copy(), kept[:, 1].copy(), kept[:, 2].copy(), real.sum(axis=1).astype(np.int64)
    )


def import_lhco(
    files: Sequence[Path],
    out: Path,
    *,
    process: str = "lhco_rnd",
    label: int | None = None,
    key: str | None = None,
    events_per_shard: int = 100_000,
    chunk_rows: int = 10_000,
    max_events: int | None = None,
) -> Manifest:
    """Convert LHC Olympics HDF5 files into a raw-event dataset in ``out``.

    ``label`` overrides the labels of every event (e.g. 1 for a signal-only file without a label
    column); ``max_events`` caps the events read from each file. Rerunning resumes.
    """
    check_positive(
        LHCOFormatError,
        events_per_shard=events_per_shard,
        chunk_rows=chunk_rows,
        max_events=max_events,
    )
    files = [Path(f) for f in files]
    for path in files:
        if not path.is_file():
            raise LHCOFormatError(f"no such file: {path}")
    config = {
        "files": [str(p.resolve()) for p in files],
        "process": process,
        "label": label,
        "key": key,
        "events_per_shard": events_per_shard,
        "max_events": max_events,
    }
    manifest = resume_or_start(Path(out), "raw", config)
    staging = staging_area(Path(out))
    done = {s.file for s in manifest.shards}
    per_file: list[dict[str, Any]] = []

    for ordinal, path in enumerate(files):
        with open_hdf5(path, LHCOFormatError) as handle:
            group = _find_group(handle, key, path)
            layout = _layout(group, path)
            _check_numeric(group, layout, path)
            rows = layout.rows if max_events is None else min(layout.rows, max_events)
            per_file.append({"file": str(path), "storage": layout.kind, "events": rows})
            log.info(
                "%s: %d events, %d columns, %s storage", path, rows, layout.columns, layout.kind
            )
            with progress(total=rows, desc=f"import {path.name}", unit="ev") as bar:
                for shard_index, (s0, s1) in enumerate(row_chunks(rows, events_per_shard)):
                    name = f"shard-{ordinal:03d}-{shard_index:05d}.parquet"
                    if name in done:
                        bar.update(s1 - s0)
                        continue
                    tables = []
                    for c0, c1 in row_chunks(s1 - s0, chunk_rows):
                        values = _read_rows(group, layout, s0 + c0, s0 + c1)
                        particle_values, labels = _split_label(values, path, s0 + c0, label)
                        particles = _strip_padding(particle_values, path, s0 + c0)
                        ids = (np.int64(ordinal) << _ROW_BITS) + np.arange(
                            s0 + c0, s0 + c1, dtype=np.int64
                        )
                        tables.append((particles, ids, labels))
                        bar.update(c1 - c0)
                    table = _table(tables, process)
                    digest = write_parquet_atomic(table, staging / name)
                    stats = {
                        "source": str(path),
                        "source_rows": [s0, s1],
                        **_label_counts(np.concatenate([t[2] for t in tables])),
                    }
                    record = ShardRecord(name, table.num_rows, digest, stats)
                    publish(Path(out), manifest, staging / name, record)

    totals = {
        kind: sum(int(s.stats[kind]) for s in manifest.shards)
        for kind in ("background", "signal", "unknown")
    }
    names = "+".join(sorted(p.name for p in files))
    manifest.summary = {
        "dataset": f"{process}-{names}",
        "process": process,
        "inputs": per_file,
        "labels": totals,
    }
    finish(Path(out), manifest)
    return manifest


def _table(
    parts: list[tuple[Particles, npt.NDArray[np.int64], npt.NDArray[np.int8]]], process: str
) -> pa.Table:
    tables = [to_arrow(particles, ids, labels, process) for particles, ids, labels in parts]
    return pa.concat_tables(tables).combine_chunks()


def _label_counts(labels: npt.NDArray[np.int8]) -> dict[str, int]:
    return {
        "background": int((labels == 0).sum()),
        "signal": int((labels == 1).sum()),
        "unknown": int((labels == LABEL_UNKNOWN).sum()),
    }
