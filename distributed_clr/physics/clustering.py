"""Jet clustering of many events at once through fastjet's multi-event (awkward) interface."""

from __future__ import annotations

import logging
from typing import Any

import awkward as ak
import numpy as np
import numpy.typing as npt

from distributed_clr.physics.particles import Particles

log = logging.getLogger(__name__)


def fastjet_module() -> Any:
    """The fastjet module, with its banner switched off."""
    import fastjet

    # FastJet writes a banner to the C++ stdout on first clustering; switch it off.
    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
    return fastjet


def momenta(particles: Particles) -> ak.Array:
    """Jagged (events x particles) massless four-momenta with fields px, py, pz, E [GeV]."""
    pt, eta, phi = particles.pt, particles.eta, particles.phi
    flat = ak.zip(
        {
            "px": pt * np.cos(phi),
            "py": pt * np.sin(phi),
            "pz": pt * np.sinh(eta),
            "E": pt * np.cosh(eta),
        }
    )
    return ak.unflatten(flat, particles.counts)


def antikt_jets(particles: Particles, radius: float) -> ak.Array:
    """Inclusive anti-kT jets of every event (jagged, fields px, py, pz, E), hardest first."""
    fastjet = fastjet_module()
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    sequence = fastjet.ClusterSequence(momenta(particles), definition)
    jets = sequence.inclusive_jets()
    order = ak.argsort(jets.px**2 + jets.py**2, axis=1, ascending=False)
    return jets[order]


def leading_jet_pt(particles: Particles, radius: float) -> npt.NDArray[np.float64]:
    """pT of each event's hardest anti-kT jet [GeV]; 0 for an event with no particles."""
    if len(particles.counts) == 0:
        return np.zeros(0)
    jets = antikt_jets(particles, radius)
    pt = np.hypot(jets.px, jets.py)
    return np.asarray(ak.fill_none(ak.max(pt, axis=1), 0.0), dtype=np.float64)
