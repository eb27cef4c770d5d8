"""Small, independent physics helpers for tests (not the package's observables)."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distributed_clr.physics.clustering import antikt_jets
from distributed_clr.physics.particles import from_arrow
from distributed_clr.storage.reader import shard_paths


def read_raw(directory: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in shard_paths(directory, "raw")])


def leading_dijets(directory: Path, radius: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(m_jj, jet masses (events, 2)) of the two hardest anti-kT jets of events with two jets."""
    jets = antikt_jets(from_arrow(read_raw(directory)), radius)
    jets = jets[ak.num(jets) >= 2][:, :2]
    px, py, pz, e = (ak.to_numpy(jets[c]) for c in ("px", "py", "pz", "E"))
    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    total = [x.sum(axis=1) for x in (px, py, pz, e)]
    mjj = np.sqrt(np.maximum(total[3] ** 2 - total[0] ** 2 - total[1] ** 2 - total[2] ** 2, 0.0))
    return mjj, mass


def histogram_peak(values: np.ndarray, bins: np.ndarray) -> float:
    """Centre of the most populated bin."""
    counts, edges = np.histogram(values, bins=bins)
    i = int(np.argmax(counts))
    return float(0.5 * (edges[i] + edges[i + 1]))
