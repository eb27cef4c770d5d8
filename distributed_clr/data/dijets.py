"""Raw events -> dijets, for a whole batch of events at once.

For every event: anti-kT jets (fastjet's multi-event interface), the two selected jets (the two
heaviest, heavier first, or the two hardest, harder first), the cuts, each jet's hardest N
constituents (zero-padded, absolute coordinates), jet kinematics, N-subjettiness, m_jj and the
split. Events that fail are counted per reason, in this order:

* ``fewer_than_two_jets``: fewer than two jets above ``candidate_pt_min``;
* ``jet_pt``: a selected jet's pT outside [jet_pt_min, jet_pt_max];
* ``jet_eta``: a selected jet's |eta| >= jet_eta_max.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distributed_clr.config.schema import PrepareConfig
from distributed_clr.data.splits import assign_splits
from distributed_clr.physics.clustering import fastjet_module, momenta
from distributed_clr.physics.observables import kinematics, nsubjettiness, ratio
from distributed_clr.physics.particles import FloatArray, Particles, from_arrow
from distributed_clr.storage.formats import SPLITS, dijet_schema
from distributed_clr.storage.manifest import DatasetError

CUTS = ("fewer_than_two_jets", "jet_pt", "jet_eta")


class BadEventsError(DatasetError, ValueError):
    """Raw events that cannot be processed (non-finite values, negative pT, lists of different
    lengths)."""


@dataclass
class CutFlow:
    """Events in, events removed per reason, events out."""

    events_in: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CUTS, 0))
    events_out: int = 0

    def add(self, other: CutFlow) -> None:
        self.events_in += other.events_in
        self.events_out += other.events_out
        for reason, n in other.removed.items():
            self.removed[reason] = self.removed.get(reason, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {
            "events_in": self.events_in,
            "removed": dict(self.removed),
            "events_out": self.events_out,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CutFlow:
        removed = {str(k): int(v) for k, v in data["removed"].items()}
        return cls(int(data["events_in"]), removed, int(data["events_out"]))


def _check_lists(table: pa.Table, event_ids: npt.NDArray[np.int64], source: str) -> None:
    """Every event's pt, eta and phi lists have one entry per particle."""
    lengths = [
        table.column(name).combine_chunks().value_lengths().to_numpy(zero_copy_only=False)
        for name in ("pt", "eta", "phi")
    ]
    bad = (lengths[0] != lengths[1]) | (lengths[0] != lengths[2])
    if bad.any():
        row = int(np.argmax(bad))
        raise BadEventsError(
            f"{source}: event_id {int(event_ids[row])} (row {row} of the batch) has "
            f"{lengths[0][row]} pt, {lengths[1][row]} eta and {lengths[2][row]} phi values; "
            "each particle needs one of each"
        )


def _check_finite(particles: Particles, event_ids: npt.NDArray[np.int64], source: str) -> None:
    event_of = np.repeat(np.arange(len(particles.counts)), particles.counts)
    for name in ("pt", "eta", "phi"):
        values = getattr(particles, name)
        checks = [(~np.isfinite(values), f"a non-finite {name} (NaN or infinite)")]
        if name == "pt":
            checks.append((values < 0, "a negative pt"))
        for bad, what in checks:
            if bad.any():
                first = int(np.argmax(bad))
                raise BadEventsError(
                    f"{source}: event_id {int(event_ids[event_of[first]])} has {what}: "
                    f"{float(values[first])!r}"
                )


def _regular(array: ak.Array) -> FloatArray:
    return np.asarray(ak.to_numpy(array), dtype=np.float64)


def _pad_constituents(values: ak.Array, n: int) -> FloatArray:
    """(events, 2, var) -> (events, 2 * n): first n entries of each jet, zero-padded."""
    padded = ak.fill_none(ak.pad_none(values, n, axis=2, clip=True), 0.0)
    return _regular(padded).reshape(len(values), 2 * n)


def select_dijets(
    table: pa.Table, config: PrepareConfig, dataset: str, source: str = "batch"
) -> tuple[pa.Table, CutFlow]:
    """The prepared dijets (``dijet_schema``) of a raw-event table, and its cut flow."""
    n_const = config.num_constituents
    flow = CutFlow(events_in=table.num_rows)
    event_ids = table.column("event_id").to_numpy().astype(np.int64)
    _check_lists(table, event_ids, source)
    particles = from_arrow(table)
    _check_finite(particles, event_ids, source)

    fastjet = fastjet_module()
    sequence = fastjet.ClusterSequence(
        momenta(particles), fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_radius)
    )
    jets = sequence.inclusive_jets(min_pt=config.candidate_pt_min)
    members = sequence.constituent_index(min_pt=config.candidate_pt_min)  # same jet order

    # The two selected jets of every event that has two.
    jet_pt = np.hypot(jets.px, jets.py)
    jet_m = np.sqrt(np.maximum(jets.E**2 - jets.px**2 - jets.py**2 - jets.pz**2, 0.0))
    key = jet_m if config.select_by == "mass" else jet_pt
    two = ak.to_numpy(ak.num(jets) >= 2)
    flow.removed["fewer_than_two_jets"] = int((~two).sum())
    order = ak.argsort(key, axis=1, ascending=False)[two][:, :2]
    jets, members = jets[two][order], members[two][order]
    rows = np.flatnonzero(two)

    px, py, pz, e = (_regular(jets[c]) for c in ("px", "py", "pz", "E"))  # (n, 2)
    pt, eta, phi, mass = kinematics(px, py, pz, e)
    pt_ok = ((pt >= config.jet_pt_min) & (pt <= config.jet_pt_max)).all(axis=1)
    eta_ok = (np.abs(eta) < config.jet_eta_max).all(axis=1)
    flow.removed["jet_pt"] = int((~pt_ok).sum())
    flow.removed["jet_eta"] = int((pt_ok & ~eta_ok).sum())
    keep = pt_ok & eta_ok
    rows, members = rows[keep], members[keep]
    px, py, pz, e, pt, eta, phi, mass = (x[keep] for x in (px, py, pz, e, pt, eta, phi, mass))
    flow.events_out = len(rows)

    # Constituents of the selected jets, hardest first: gather from the flat particle arrays.
    offsets = particles.offsets[rows]
    flat_index = ak.flatten(members + offsets[:, None, None], axis=None)
    per_jet = ak.flatten(ak.num(members, axis=2), axis=None)
    c_pt, c_eta, c_phi = (
        ak.unflatten(ak.unflatten(getattr(particles, name)[ak.to_numpy(flat_index)], per_jet), 2)
        for name in ("pt", "eta", "phi")
    )
    hardest = ak.argsort(c_pt, axis=2, ascending=False)
    c_pt, c_eta, c_phi = c_pt[hardest], c_eta[hardest], c_phi[hardest]

    counts = ak.to_numpy(per_jet).astype(np.int64)
    taus = nsubjettiness(
        ak.to_numpy(ak.flatten(c_pt, axis=None)),
        ak.to_numpy(ak.flatten(c_eta, axis=None)),
        ak.to_numpy(ak.flatten(c_phi, axis=None)),
        counts,
        config.jet_radius,
    ).reshape(len(rows), 2, 3)
    tot = [x.sum(axis=1) for x in (px, py, pz, e)]
    mjj = np.sqrt(np.maximum(tot[3] ** 2 - tot[0] ** 2 - tot[1] ** 2 - tot[2] ** 2, 0.0))

    split, fold = assign_splits(
        event_ids[rows],
        dataset,
        train_fraction=config.train_fraction,
        val_fraction=config.val_fraction,
        num_folds=config.num_folds,
        salt=config.split_salt,
    )
    source_table = table.select(["event_id", "label", "process"]).take(pa.array(rows))
    columns: dict[str, pa.Array] = {
        "event_id": source_table.column("event_id").combine_chunks(),
        "label": source_table.column("label").combine_chunks(),
        "process": source_table.column("process").combine_chunks(),
        "dataset": pa.array([dataset] * len(rows), pa.string()),
        "split": pa.array(np.asarray(SPLITS, dtype=object)[split], pa.string()),
        "fold": pa.array(fold, pa.int8()),
        "pt": _fixed(_pad_constituents(c_pt, n_const), 2 * n_const),
        "eta": _fixed(_pad_constituents(c_eta, n_const), 2 * n_const),
        "phi": _fixed(_pad_constituents(c_phi, n_const), 2 * n_const),
        "jet_n": pa.FixedSizeListArray.from_arrays(pa.array(counts.astype(np.int16)), 2),
        "jet_pt": _fixed(pt, 2),
        "jet_eta": _fixed(eta, 2),
        "jet_phi": _fixed(phi, 2),
        "jet_m": _fixed(mass, 2),
        "tau1": _fixed(taus[:, :, 0], 2),
        "tau2": _fixed(taus[:, :, 1], 2),
        "tau3": _fixed(taus[:, :, 2], 2),
        "tau21": _fixed(ratio(taus[:, :, 1], taus[:, :, 0]), 2),
        "tau32": _fixed(ratio(taus[:, :, 2], taus[:, :, 1]), 2),
        "mjj": pa.array(mjj.astype(np.float32)),
    }
    return pa.table(columns, schema=dijet_schema(n_const)), flow


def _fixed(values: FloatArray, width: int) -> pa.FixedSizeListArray:
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), width)
