"""``dclr import-adc``: a CMS ADC2021 HDF5 file as an object-level dataset.

The ADC2021 files (CMS Anomaly Detection Challenge 2021) hold a dataset ``Particles`` of shape
(N, 19, 4): for each event 19 slots of (pT [GeV], eta, phi, class), slot 0 the missing
transverse energy (class 1, eta 0), slots 1-4 electrons (class 2), 5-8 muons (class 3), 9-18
jets (class 4), each block pT-ordered and zero-padded (class 0, every value 0). The files also
carry ``Particles_Names`` and ``Particles_Classes`` (descriptive strings, logged). One file is
one process (the background cocktail, or one signal); the process labels of the background
cocktail are not published, so a per-event process id can come from another dataset of the
file (``process_dataset``) or be given for the whole file (``process_id``).

The file is read with h5py in row chunks (``chunk_rows``), so memory stays bounded whatever its
size; every chunk is checked against the layout before anything is written: finite values, no
negative pT, each slot's class either its block's class or 0, empty slots all zero, occupied
slots before empty ones and in decreasing pT within each block, MET at eta 0. A violation is
an error naming the file, the row and the slot. Each group of ``events_per_shard`` rows is
written as one shard of ``storage.formats.object_schema`` with its split and fold
(``data.splits``, from the ``prepare`` section's fractions and salt); rerunning resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distributed_clr.config.schema import PrepareConfig
from distributed_clr.data.hdf5 import check_positive, decode_strings, open_hdf5, row_chunks
from distributed_clr.data.objects import object_table
from distributed_clr.errors import UserError
from distributed_clr.progress import progress
from distributed_clr.storage.files import write_parquet_atomic
from distributed_clr.storage.formats import (
    LABEL_BACKGROUND,
    LABEL_SIGNAL,
    LABEL_UNKNOWN,
    OBJECT_BLOCKS,
    OBJECT_SLOTS,
    PROCESS_ID_UNKNOWN,
    SPLITS,
)
from distributed_clr.storage.manifest import (
    Manifest,
    ShardRecord,
    finish,
    publish,
    resume_or_start,
    staging_area,
)

log = logging.getLogger(__name__)

__all__ = ["OBJECTS", "ADCFormatError", "check_objects", "import_adc"]

OBJECTS = "objects"
"""The manifest kind of an object-level dataset."""
PARTICLES = "Particles"
FIELDS = 4  # pT, eta, phi, class
SLOT_CLASS = np.concatenate(
    [np.full(stop - start, code, dtype=np.int64) for _, start, stop, code in OBJECT_BLOCKS]
)
"""(19,) the class id each slot may hold (besides 0)."""
SLOT_NAMES = [
    f"{name} {slot - start + 1}" if stop - start > 1 else name.upper()
    for name, start, stop, _ in OBJECT_BLOCKS
    for slot in range(start, stop)
]


class ADCFormatError(UserError, ValueError):
    """A file that is not in the ADC2021 layout."""


def _where(path: Path, row: int, slot: int) -> str:
    return f"{path}: row {row}, slot {slot} ({SLOT_NAMES[slot]})"


def check_objects(values: npt.NDArray[Any], path: Path, first_row: int) -> npt.NDArray[np.int8]:
    """Check a chunk (B, 19, 4) of ``Particles`` against the layout; return its classes.

    Raises:
        ADCFormatError: naming the file, the row (``first_row`` + index) and the slot.
    """
    bad = ~np.isfinite(values)
    if bad.any():
        row, slot, _ = (int(i) for i in np.argwhere(bad)[0])
        raise ADCFormatError(f"{_where(path, first_row + row, slot)}: NaN or inf value")
    pt, eta, phi, cls = (values[:, :, i] for i in range(FIELDS))
    if (pt < 0).any():
        row, slot = (int(i) for i in np.argwhere(pt < 0)[0])
        raise ADCFormatError(f"{_where(path, first_row + row, slot)}: negative pT {pt[row, slot]}")
    classes = np.rint(cls)
    wrong = (classes != cls) | ((classes != 0) & (classes != SLOT_CLASS))
    if wrong.any():
        row, slot = (int(i) for i in np.argwhere(wrong)[0])
        raise ADCFormatError(
            f"{_where(path, first_row + row, slot)}: class {cls[row, slot]:g}, expected "
            f"{SLOT_CLASS[slot]} or 0 (empty)"
        )
    empty = classes == 0
    stray = empty & ((pt != 0) | (eta != 0) | (phi != 0))
    if stray.any():
        row, slot = (int(i) for i in np.argwhere(stray)[0])
        raise ADCFormatError(
            f"{_where(path, first_row + row, slot)}: an empty slot (class 0) with non-zero values"
        )
    met_eta = (~empty[:, 0]) & (eta[:, 0] != 0)
    if met_eta.any():
        row = int(np.flatnonzero(met_eta)[0])
        raise ADCFormatError(f"{_where(path, first_row + row, 0)}: MET with eta {eta[row, 0]}")
    for name, start, stop, _ in OBJECT_BLOCKS:
        if stop - start < 2:
            continue
        block_empty = empty[:, start:stop]
        # An occupied slot after an empty one, or a harder object after a softer one.
        gap = block_empty[:, :-1] & ~block_empty[:, 1:]
        rising = ~block_empty[:, 1:] & (pt[:, start + 1 : stop] > pt[:, start : stop - 1])
        if gap.any():
            row, offset = (int(i) for i in np.argwhere(gap)[0])
            raise ADCFormatError(
                f"{_where(path, first_row + row, start + offset + 1)}: occupied after an empty "
                f"{name} slot (each block is zero-padded at its end)"
            )
        if rising.any():
            row, offset = (int(i) for i in np.argwhere(rising)[0])
            slot = start + offset + 1
            raise ADCFormatError(
                f"{_where(path, first_row + row, slot)}: pT {pt[row, slot]:g} above the "
                f"previous {name}'s {pt[row, slot - 1]:g} (each block is pT-ordered)"
            )
    out: npt.NDArray[np.int8] = classes.astype(np.int8)
    return out


def _strings(handle: Any, name: str) -> list[str] | None:
    return decode_strings(np.asarray(handle[name]).ravel()) if name in handle else None


def _particles(handle: Any, path: Path) -> Any:
    if PARTICLES not in handle:
        raise ADCFormatError(
            f"{path}: no dataset '{PARTICLES}' (found: {sorted(handle.keys())}); not an ADC2021 "
            "file"
        )
    data = handle[PARTICLES]
    if (
        not hasattr(data, "shape")
        or len(data.shape) != 3
        or data.shape[1:] != (OBJECT_SLOTS, FIELDS)
    ):
        raise ADCFormatError(
            f"{path}: '{PARTICLES}' has shape {getattr(data, 'shape', None)}, expected "
            f"(events, {OBJECT_SLOTS}, {FIELDS})"
        )
    if data.dtype.kind not in "fiu":
        raise ADCFormatError(f"{path}: '{PARTICLES}' holds {data.dtype}, not numbers")
    return data


def _process_ids(handle: Any, dataset: str | None, rows: int, path: Path) -> Any:
    if dataset is None:
        return None
    if dataset not in handle:
        raise ADCFormatError(f"{path}: no process-id dataset '{dataset}'")
    ids = handle[dataset]
    if ids.shape not in ((rows,), (rows, 1)) or ids.dtype.kind not in "iu":
        raise ADCFormatError(
            f"{path}: the process ids '{dataset}' must be integers of shape ({rows},), got "
            f"{ids.dtype} {ids.shape}"
        )
    return ids


def import_adc(
    file: str | Path,
    out: str | Path,
    *,
    process: str,
    label: int,
    prepare: PrepareConfig | None = None,
    process_id: int = PROCESS_ID_UNKNOWN,
    process_dataset: str | None = None,
    events_per_shard: int = 200_000,
    chunk_rows: int = 50_000,
    max_events: int | None = None,
) -> Manifest:
    """Convert one ADC2021 HDF5 file into an object-level dataset in ``out`` (module docstring).

    Args:
        file: the HDF5 file.
        out: the dataset directory (a rerun with the same arguments resumes).
        process: the process name of every event (e.g. 'background_cocktail', 'Ato4l').
        label: 0 (background), 1 (signal) or -1 (unknown) for every event.
        prepare: the split fractions, folds and salt (the ``prepare`` section).
        process_id: the SM process id of every event (-1: unknown), unless
            ``process_dataset`` names a per-event integer dataset of the file.
        events_per_shard, chunk_rows: rows per output shard and per read.
        max_events: read at most this many events.

    Raises:
        ADCFormatError: a missing or malformed file (naming file, row and slot).
    """
    if label not in (LABEL_BACKGROUND, LABEL_SIGNAL, LABEL_UNKNOWN):
        raise ADCFormatError(f"the label must be 0, 1 or -1, got {label}")
    check_positive(
        ADCFormatError,
        events_per_shard=events_per_shard,
        chunk_rows=chunk_rows,
        max_events=max_events,
    )
    if not process:
        raise ADCFormatError("the process name must not be empty")
    path = Path(file)
    prepare = prepare or PrepareConfig()
    config = {
        "file": str(path.resolve()),
        "process": process,
        "label": label,
        "process_id": process_id,
        "process_dataset": process_dataset,
        "events_per_shard": events_per_shard,
        "max_events": max_events,
        "splits": {
            "train_fraction": prepare.train_fraction,
            "val_fraction": prepare.val_fraction,
            "num_folds": prepare.num_folds,
            "split_salt": prepare.split_salt,
        },
    }
    with open_hdf5(path, ADCFormatError) as handle:
        particles = _particles(handle, path)
        total = particles.shape[0] if max_events is None else min(particles.shape[0], max_events)
        ids = _process_ids(handle, process_dataset, particles.shape[0], path)
        log.info(
            "%s: %d events; fields %s, classes %s",
            path,
            total,
            _strings(handle, "Particles_Names"),
            _strings(handle, "Particles_Classes"),
        )
        out = Path(out)
        manifest = resume_or_start(out, OBJECTS, config)
        staging = staging_area(out)
        done = {s.file for s in manifest.shards}
        dataset = f"adc-{process}"
        with progress(total=total, desc=f"import {path.name}", unit="ev") as bar:
            for shard_index, (s0, s1) in enumerate(row_chunks(total, events_per_shard)):
                name = f"objects-{shard_index:05d}.parquet"
                if name in done:
                    bar.update(s1 - s0)
                    continue
                parts = []
                for c0, c1 in row_chunks(s1 - s0, chunk_rows):
                    rows = np.asarray(particles[s0 + c0 : s0 + c1])
                    classes = check_objects(rows, path, s0 + c0)
                    if ids is None:
                        chunk_ids = np.full(c1 - c0, process_id, dtype=np.int16)
                    else:
                        chunk_ids = np.asarray(ids[s0 + c0 : s0 + c1]).reshape(-1).astype(np.int16)
                    event_ids = np.arange(s0 + c0, s0 + c1, dtype=np.int64)
                    values = rows[:, :, :3]
                    parts.append(
                        object_table(
                            values, classes, chunk_ids, event_ids, label, process, dataset, prepare
                        )
                    )
                    bar.update(c1 - c0)
                table = pa.concat_tables(parts).combine_chunks()
                digest = write_parquet_atomic(table, staging / name)
                stats = {"source_rows": [s0, s1], **_counts(table)}
                publish(
                    out, manifest, staging / name, ShardRecord(name, table.num_rows, digest, stats)
                )
    splits = {
        split: sum(int(s.stats["splits"].get(split, 0)) for s in manifest.shards)
        for split in SPLITS
    }
    manifest.summary = {
        "dataset": dataset,
        "process": process,
        "label": label,
        "events": manifest.rows,
        "splits": splits,
        "source": str(path),
    }
    finish(out, manifest)
    return manifest


def _counts(table: pa.Table) -> dict[str, Any]:
    import pyarrow.compute as pc

    counts = {c["values"]: int(c["counts"]) for c in pc.value_counts(table["split"]).to_pylist()}
    return {"splits": {name: counts.get(name, 0) for name in SPLITS}}
