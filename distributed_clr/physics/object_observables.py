"""Observables of object-level events (the ADC2021 layout), for physics checks and plots.

Every function takes ``values`` (B, 19, 3) = (pT [GeV], eta, phi) with slots 0 MET, 1-4
electrons, 5-8 muons, 9-18 jets (zero-padded) and returns one number per event, NaN where the
event lacks the objects it needs. Leptons are massless here (m_e, m_mu << the scales checked).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

ELECTRONS = slice(1, 5)
MUONS = slice(5, 9)
LEPTONS = slice(1, 9)

__all__ = ["dilepton_mass", "four_lepton_mass", "leading_lepton_pt", "transverse_mass"]


def _four_vectors(values: npt.NDArray[np.floating], block: slice) -> FloatArray:
    """(B, K, 4) massless (E, px, py, pz) of the slots of ``block`` (zero where empty)."""
    pt, eta, phi = (values[:, block, i].astype(np.float64) for i in range(3))
    return np.stack(
        (pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)), axis=-1
    )


def _mass(p: FloatArray) -> FloatArray:
    m2 = p[..., 0] ** 2 - p[..., 1] ** 2 - p[..., 2] ** 2 - p[..., 3] ** 2
    return np.sqrt(np.maximum(m2, 0.0))


def dilepton_mass(values: npt.NDArray[np.floating]) -> FloatArray:
    """Invariant mass of the two leading electrons, or else of the two leading muons (the
    same-flavour pair of a Z -> l l decay); NaN without two of one flavour."""
    out = np.full(len(values), np.nan)
    for block in (MUONS, ELECTRONS):  # electrons win where an event has both pairs
        p = _four_vectors(values, block)
        pair = values[:, block, 0][:, 1] > 0
        out[pair] = _mass(p[pair, 0] + p[pair, 1])
    return out


def transverse_mass(values: npt.NDArray[np.floating]) -> FloatArray:
    """m_T of the leading lepton (electron or muon) and MET: sqrt(2 pT MET (1 - cos dphi));
    its distribution in W -> l nu has its Jacobian edge at m_W. NaN without a lepton."""
    lepton_pt = values[:, LEPTONS, 0].astype(np.float64)
    lead = lepton_pt.argmax(axis=1)
    rows = np.arange(len(values))
    pt = lepton_pt[rows, lead]
    phi = values[:, LEPTONS, 2][rows, lead].astype(np.float64)
    met, met_phi = values[:, 0, 0].astype(np.float64), values[:, 0, 2].astype(np.float64)
    mt = np.sqrt(np.maximum(2 * pt * met * (1 - np.cos(phi - met_phi)), 0.0))
    return np.where(pt > 0, mt, np.nan)


def four_lepton_mass(values: npt.NDArray[np.floating]) -> FloatArray:
    """Invariant mass of all reconstructed electrons and muons of events with exactly four;
    NaN otherwise."""
    p = _four_vectors(values, LEPTONS).sum(axis=1)
    n = (values[:, LEPTONS, 0] > 0).sum(axis=1)
    return np.where(n == 4, _mass(p), np.nan)


def leading_lepton_pt(values: npt.NDArray[np.floating]) -> FloatArray:
    """pT of the leading electron or muon (0 without one) [GeV]."""
    return np.asarray(values[:, LEPTONS, 0].max(axis=1), dtype=np.float64)
