"""What the HDF5 importers (``lhco``, ``adc``) share: their size options checked, the file
opened with a clear error, rows read in chunks, and descriptive string datasets decoded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["check_positive", "decode_strings", "open_hdf5", "row_chunks"]


def check_positive(error: type[Exception], **values: int | None) -> None:
    """Raise ``error`` naming the first option (as its command-line flag) that is given and not
    positive."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise error(f"{name.replace('_', '-')} must be positive, got {value}")


def open_hdf5(path: Path, error: type[Exception]) -> Any:
    """The file opened read-only with h5py; ``error`` naming it when it is missing or not
    HDF5."""
    import h5py

    if not path.is_file():
        raise error(f"no such file: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise error(f"{path}: not a readable HDF5 file ({err})") from err


def row_chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive row ranges of at most ``size`` rows covering ``total``."""
    for start in range(0, total, size):
        yield start, min(start + size, total)


def decode_strings(values: Any) -> list[str]:
    """An HDF5 array of byte or text strings as Python strings."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]
