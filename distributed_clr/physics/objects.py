"""A parametric reconstruction of physics objects from generated final-state particles.

It turns the final state of many Pythia events (flat arrays with per-event counts) into the
CMS ADC2021 object layout: slot 0 MET, 1-4 electrons, 5-8 muons, 9-18 jets, each block
pT-ordered and zero-padded, and applies the ADC preselection. Every constant is a field of
``ObjectRecoConfig`` (``config/stages.py``); the model, in order:

1. **Invisible particles**: neutrinos (and nothing else) escape.
2. **Lepton candidates**: final-state electrons and muons with |eta| < ``lepton_eta_max`` and
   pT above ``electron_pt_min`` / ``muon_pt_min``.
3. **Isolation** (optional, off by default as for the ADC2021 Level-1 objects): the scalar pT
   sum of the other visible particles within ``isolation_radius`` of the candidate, divided by
   its pT, must be below ``isolation_max`` (leptons from heavy-flavour decays mostly fail).
4. **Efficiency and resolution**: an isolated candidate is found with probability
   ``electron_efficiency`` / ``muon_efficiency``; its pT is smeared by a Gaussian of relative
   width ``electron_resolution`` / ``muon_resolution`` (direction exact).
5. **Calorimeter**: every other visible particle except muons (minimum-ionising, they leave no
   jet energy) goes through the calorimeter model of ``physics/detector.py`` (``detector``
   sub-section: acceptance, energy resolution, granularity, threshold).
6. **Jets**: anti-kT with ``jet_radius`` (0.4) on the calorimeter particles; jets with
   pT > ``jet_pt_min`` and |eta| < ``jet_eta_max`` (4) are kept, hardest first.
7. **MET**: minus the vector sum of everything visible that was measured (calorimeter
   particles and reconstructed leptons); eta 0.
8. **Preselection**: the leading electron or muon has pT >= ``trigger_lepton_pt`` (23 GeV).

At most 4 electrons, 4 muons and 10 jets per event are kept, the hardest.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np
import numpy.typing as npt

from distributed_clr.config.schema import ObjectRecoConfig
from distributed_clr.physics.clustering import antikt_jets
from distributed_clr.physics.detector import apply_detector
from distributed_clr.physics.particles import FloatArray, Particles, wrap_phi

__all__ = ["FinalState", "ObjectEvents", "reconstruct"]

NEUTRINOS = (12, 14, 16)
ELECTRON, MUON = 11, 13
BLOCKS = ((1, 4, 2), (5, 4, 3), (9, 10, 4))
"""(first slot, capacity, class id) of the electron, muon and jet blocks."""
SLOTS = 19

IntArray = npt.NDArray[np.int64]


@dataclass
class FinalState:
    """Final-state particles of many events, flat: PDG id, momentum [GeV], per-event counts."""

    pid: IntArray
    px: FloatArray
    py: FloatArray
    pz: FloatArray
    counts: IntArray

    @classmethod
    def from_batch(cls, batch: ak.Array) -> FinalState:
        """The final state (status > 0) of a ``Pythia.nextBatch`` record."""
        prt = batch.prt
        final = prt[prt.status > 0]

        def flat(values: ak.Array) -> FloatArray:
            return np.asarray(ak.to_numpy(ak.flatten(values)), dtype=np.float64)

        return cls(
            np.asarray(ak.to_numpy(ak.flatten(final.id)), dtype=np.int64),
            flat(final.p.px),
            flat(final.p.py),
            flat(final.p.pz),
            np.asarray(ak.to_numpy(ak.num(final.id)), dtype=np.int64),
        )


@dataclass
class ObjectEvents:
    """Reconstructed events: ``values`` (B, 19, 3) = (pT, eta, phi), ``classes`` (B, 19) int8,
    and ``passed`` (B,) the preselection."""

    values: npt.NDArray[np.float32]
    classes: npt.NDArray[np.int8]
    passed: npt.NDArray[np.bool_]


def _event_index(counts: IntArray) -> IntArray:
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def _isolation(
    lepton: IntArray, event: IntArray, offsets: IntArray, counts: IntArray,
    pt: FloatArray, eta: FloatArray, phi: FloatArray, visible: npt.NDArray[np.bool_],
    radius: float,
) -> FloatArray:  # fmt: skip
    """Scalar pT sum of the other visible particles within ``radius`` of each lepton."""
    lengths = counts[event[lepton]]
    owner = np.repeat(np.arange(len(lepton)), lengths)
    starts = np.repeat(offsets[event[lepton]], lengths)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    other = starts + within
    d_eta = eta[other] - eta[lepton][owner]
    d_phi = wrap_phi(phi[other] - phi[lepton][owner])
    near = (d_eta**2 + d_phi**2 < radius**2) & visible[other] & (other != lepton[owner])
    sums: FloatArray = np.bincount(
        owner, weights=np.where(near, pt[other], 0.0), minlength=len(lepton)
    ).astype(np.float64)
    return sums


def _top(
    event: IntArray, pt: FloatArray, n_events: int, capacity: int
) -> tuple[IntArray, IntArray, IntArray]:
    """The ``capacity`` hardest entries of each event: (entry, event, rank)."""
    order = np.lexsort((-pt, event))
    sorted_event = event[order]
    first = np.searchsorted(sorted_event, np.arange(n_events))
    rank = np.arange(len(order)) - first[sorted_event]
    keep = rank < capacity
    return order[keep], sorted_event[keep], rank[keep]


def reconstruct(
    state: FinalState, config: ObjectRecoConfig, rng: np.random.Generator
) -> ObjectEvents:
    """The objects of every event of ``state`` (module docstring), in the ADC2021 layout."""
    n_events = len(state.counts)
    event = _event_index(state.counts)
    offsets = np.concatenate([[0], np.cumsum(state.counts)[:-1]]).astype(np.int64)
    apid = np.abs(state.pid)
    pt = np.hypot(state.px, state.py)
    eta = np.arcsinh(np.divide(state.pz, pt, out=np.zeros_like(pt), where=pt > 0))
    phi = np.arctan2(state.py, state.px)
    visible = ~np.isin(apid, NEUTRINOS)

    pt_min = np.where(apid == ELECTRON, config.electron_pt_min, config.muon_pt_min)
    candidate = np.flatnonzero(
        ((apid == ELECTRON) | (apid == MUON)) & (np.abs(eta) < config.lepton_eta_max)
        & (pt > pt_min)
    )  # fmt: skip
    is_electron = apid[candidate] == ELECTRON
    efficiency = np.where(is_electron, config.electron_efficiency, config.muon_efficiency)
    isolated = np.ones(len(candidate), dtype=bool)
    if config.isolation_max is not None:
        iso = _isolation(
            candidate, event, offsets, state.counts, pt, eta, phi, visible,
            config.isolation_radius,
        )  # fmt: skip
        isolated = iso < config.isolation_max * pt[candidate]
    found = isolated & (rng.random(len(candidate)) < efficiency)
    leptons = candidate[found]
    resolution = np.where(is_electron[found], config.electron_resolution, config.muon_resolution)
    lepton_pt = pt[leptons] * np.maximum(1.0 + resolution * rng.standard_normal(len(leptons)), 0)

    calo = visible & (apid != MUON)
    calo[leptons] = False
    calo_particles = apply_detector(
        Particles(pt[calo], eta[calo], phi[calo], np.bincount(event[calo], minlength=n_events)),
        config.detector,
        rng,
    )

    values = np.zeros((n_events, SLOTS, 3), dtype=np.float32)
    classes = np.zeros((n_events, SLOTS), dtype=np.int8)
    # MET: minus the vector sum of everything measured
    lepton_event = event[leptons]
    calo_event = _event_index(calo_particles.counts)
    met_x = -np.bincount(calo_event, calo_particles.pt * np.cos(calo_particles.phi), n_events)
    met_y = -np.bincount(calo_event, calo_particles.pt * np.sin(calo_particles.phi), n_events)
    met_x -= np.bincount(lepton_event, lepton_pt * np.cos(phi[leptons]), n_events)
    met_y -= np.bincount(lepton_event, lepton_pt * np.sin(phi[leptons]), n_events)
    values[:, 0, 0] = np.hypot(met_x, met_y)
    values[:, 0, 2] = np.arctan2(met_y, met_x)
    classes[:, 0] = 1

    for flavour, (first, capacity, code) in zip((ELECTRON, MUON), BLOCKS[:2], strict=True):
        mine = apid[leptons] == flavour
        entry, ev, rank = _top(lepton_event[mine], lepton_pt[mine], n_events, capacity)
        chosen = leptons[mine][entry]
        values[ev, first + rank, 0] = lepton_pt[mine][entry]
        values[ev, first + rank, 1] = eta[chosen]
        values[ev, first + rank, 2] = phi[chosen]
        classes[ev, first + rank] = code

    jets = antikt_jets(calo_particles, config.jet_radius)
    jet_pt = np.hypot(jets.px, jets.py)
    jet_eta = np.arcsinh(jets.pz / ak.where(jet_pt > 0, jet_pt, 1.0))
    good = (jet_pt > config.jet_pt_min) & (np.abs(jet_eta) < config.jet_eta_max)
    jets, jet_pt, jet_eta = jets[good], jet_pt[good], jet_eta[good]
    jet_event = _event_index(ak.to_numpy(ak.num(jet_pt)).astype(np.int64))
    flat_pt = ak.to_numpy(ak.flatten(jet_pt)).astype(np.float64)
    flat_eta = ak.to_numpy(ak.flatten(jet_eta)).astype(np.float64)
    flat_phi = np.arctan2(
        ak.to_numpy(ak.flatten(jets.py)), ak.to_numpy(ak.flatten(jets.px))
    ).astype(np.float64)
    first, capacity, code = BLOCKS[2]
    entry, ev, rank = _top(jet_event, flat_pt, n_events, capacity)
    values[ev, first + rank, 0] = flat_pt[entry]
    values[ev, first + rank, 1] = flat_eta[entry]
    values[ev, first + rank, 2] = flat_phi[entry]
    classes[ev, first + rank] = code

    leading_lepton = values[:, 1:9, 0].max(axis=1)
    return ObjectEvents(values, classes, leading_lepton >= config.trigger_lepton_pt)
