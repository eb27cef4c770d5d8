"""A slow, per-event reference of the dijet selection: the textbook FastJet loop.

For each event: a list of ``fastjet.PseudoJet`` -> ``ClusterSequence`` -> inclusive jets ->
selection and cuts -> constituents -> N-subjettiness from a per-jet exclusive-kT reclustering.
It exists to validate ``dijets.select_dijets`` (which must agree with it exactly) and as the
baseline of ``benchmarks/prepare_throughput.py``; nothing in the pipeline uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from distributed_clr.config.schema import PrepareConfig
from distributed_clr.physics.clustering import fastjet_module
from distributed_clr.physics.observables import MAX_SUBJETS, delta_phi, rapidity
from distributed_clr.physics.particles import Particles


@dataclass
class ReferenceDijet:
    """One selected event, as plain numpy."""

    row: int
    jets: npt.NDArray[np.float64]  # (2, 4): px, py, pz, E
    constituents: list[npt.NDArray[np.float64]]  # per jet (n, 3): pt, eta, phi, hardest first
    taus: npt.NDArray[np.float64]  # (2, 3)
    mjj: float


def _tau(constituents: npt.NDArray[np.float64], radius: float, fastjet: Any) -> list[float]:
    pt, eta, phi = constituents.T
    pseudojets = [
        fastjet.PseudoJet(p * np.cos(f), p * np.sin(f), p * np.sinh(e), p * np.cosh(e))
        for p, e, f in zip(pt, eta, phi, strict=True)
    ]
    sequence = fastjet.ClusterSequence(
        pseudojets, fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0)
    )
    norm = pt.sum() * radius
    taus = []
    for n in range(1, MAX_SUBJETS + 1):
        if len(pt) <= n or norm <= 0:
            taus.append(0.0)
            continue
        axes = sequence.exclusive_jets(n)
        ax_y = np.array([rapidity(np.array(a.pz()), np.array(a.E())) for a in axes])
        ax_phi = np.array([np.arctan2(a.py(), a.px()) for a in axes])
        dist = np.sqrt(
            (eta[:, None] - ax_y[None, :]) ** 2 + delta_phi(phi[:, None], ax_phi[None, :]) ** 2
        )
        taus.append(float((pt * dist.min(axis=1)).sum() / norm))
    return taus


def reference_dijets(particles: Particles, config: PrepareConfig) -> list[ReferenceDijet]:
    """The selected dijets of every event, one event at a time."""
    fastjet = fastjet_module()
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_radius)
    offsets = particles.offsets
    selected = []
    for row in range(len(particles.counts)):
        lo, hi = offsets[row], offsets[row + 1]
        pt, eta, phi = particles.pt[lo:hi], particles.eta[lo:hi], particles.phi[lo:hi]
        inputs = []
        for i, (p, e, f) in enumerate(zip(pt, eta, phi, strict=True)):
            jet = fastjet.PseudoJet(p * np.cos(f), p * np.sin(f), p * np.sinh(e), p * np.cosh(e))
            jet.set_user_index(i)
            inputs.append(jet)
        sequence = fastjet.ClusterSequence(inputs, definition)
        jets = sequence.inclusive_jets(config.candidate_pt_min)
        if len(jets) < 2:
            continue
        key = (lambda j: j.m()) if config.select_by == "mass" else (lambda j: j.pt())
        two = sorted(jets, key=key, reverse=True)[:2]
        if not all(config.jet_pt_min <= j.pt() <= config.jet_pt_max for j in two):
            continue
        if not all(abs(j.eta()) < config.jet_eta_max for j in two):
            continue
        constituents = []
        for jet in two:
            index = np.sort([c.user_index() for c in jet.constituents()])
            members = np.stack([pt[index], eta[index], phi[index]], axis=1)
            constituents.append(members[np.argsort(-members[:, 0], kind="stable")])
        four = np.array([[j.px(), j.py(), j.pz(), j.E()] for j in two])
        total = four.sum(axis=0)
        mjj = float(
            np.sqrt(max(total[3] ** 2 - total[0] ** 2 - total[1] ** 2 - total[2] ** 2, 0.0))
        )
        taus = np.array([_tau(c, config.jet_radius, fastjet) for c in constituents])
        selected.append(ReferenceDijet(row, four, constituents, taus, mjj))
    return selected
