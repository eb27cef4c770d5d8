"""Particles of many events as flat arrays, and their conversion to and from raw-event Arrow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distributed_clr.storage.formats import RAW_SCHEMA

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Particles:
    """Particles of many events, flat, with ``counts[i]`` particles belonging to event i.

    pt in GeV, eta dimensionless, phi in radians within (-pi, pi].
    """

    pt: FloatArray
    eta: FloatArray
    phi: FloatArray
    counts: IntArray

    def __post_init__(self) -> None:
        n = len(self.pt)
        if not (len(self.eta) == len(self.phi) == n == int(self.counts.sum())):
            raise ValueError(
                f"inconsistent particle arrays: pt {n}, eta {len(self.eta)}, phi {len(self.phi)}, "
                f"counts sum {int(self.counts.sum())}"
            )

    @property
    def offsets(self) -> IntArray:
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def select(self, keep: npt.NDArray[np.bool_]) -> Particles:
        """The particles where ``keep`` is True, with event counts updated."""
        event = np.repeat(np.arange(len(self.counts)), self.counts)
        counts = np.bincount(event[keep], minlength=len(self.counts)).astype(np.int64)
        return Particles(self.pt[keep], self.eta[keep], self.phi[keep], counts)

    def take_events(self, keep: npt.NDArray[np.bool_]) -> Particles:
        """The events where ``keep`` (one flag per event) is True, with all their particles."""
        per_particle = np.repeat(keep, self.counts)
        return Particles(
            self.pt[per_particle], self.eta[per_particle], self.phi[per_particle], self.counts[keep]
        )

    def head(self, n: int) -> Particles:
        """The first ``n`` events."""
        end = int(self.counts[:n].sum())
        return Particles(self.pt[:end], self.eta[:end], self.phi[:end], self.counts[:n])

    @classmethod
    def concat(cls, parts: list[Particles]) -> Particles:
        """The events of ``parts`` one after another."""
        if not parts:
            empty = np.zeros(0)
            return cls(empty, empty, empty, np.zeros(0, dtype=np.int64))
        return cls(
            np.concatenate([p.pt for p in parts]),
            np.concatenate([p.eta for p in parts]),
            np.concatenate([p.phi for p in parts]),
            np.concatenate([p.counts for p in parts]),
        )


def wrap_phi(phi: FloatArray) -> FloatArray:
    """Map angles into (-pi, pi]."""
    wrapped = np.mod(phi + np.pi, 2 * np.pi) - np.pi  # [-pi, pi)
    return np.where(wrapped == -np.pi, np.pi, wrapped)


def to_arrow(
    particles: Particles,
    ids: np.ndarray[Any, np.dtype[np.int64]],
    label: int | npt.NDArray[np.int8],
    process: str,
) -> pa.Table:
    """A raw-event table (``RAW_SCHEMA``) from flat particle arrays (stored as float32)."""
    offsets = pa.array(particles.offsets.astype(np.int32))

    def column(values: np.ndarray[Any, Any]) -> pa.ListArray:
        return pa.ListArray.from_arrays(offsets, pa.array(values.astype(np.float32)))

    n = len(particles.counts)
    return pa.table(
        {
            "event_id": pa.array(ids, pa.int64()),
            "label": pa.array(np.broadcast_to(np.asarray(label, dtype=np.int8), (n,))),
            "process": pa.array([process] * n, pa.string()),
            "pt": column(particles.pt),
            "eta": column(particles.eta),
            "phi": column(particles.phi),
        },
        schema=RAW_SCHEMA,
    )


def from_arrow(table: pa.Table) -> Particles:
    """Flat particles (float64) of a raw-event table, without a per-event loop."""
    columns = {name: table.column(name).combine_chunks() for name in ("pt", "eta", "phi")}

    def flat(name: str) -> FloatArray:
        values = columns[name].flatten().to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype=np.float64)

    counts = columns["pt"].value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    return Particles(flat("pt"), flat("eta"), flat("phi"), counts)
