"""Jet observables on many jets at once: four-vector kinematics and N-subjettiness.

N-subjettiness (Thaler, Van Tilburg, JHEP 03 (2011) 015), with angular exponent beta = 1:

    tau_N = sum_i pT_i * min_k dR(i, axis_k) / (sum_i pT_i * R0),

where i runs over the jet's constituents, dR is the distance in (rapidity, phi) and R0 the jet
radius (the 'normalised measure'). The N axes are the jet's exclusive kT subjets: the
constituents are reclustered with the kT algorithm until N subjets remain (FastJet contrib's
``KT_Axes``). A jet with N or fewer constituents has tau_N = 0. The ratios tau21 = tau2/tau1
and tau32 = tau3/tau2 are small for two- and three-prong jets respectively; a ratio with a zero
denominator is set to 0.

Everything works on flat arrays: the constituents of M jets concatenated, with ``counts[j]``
constituents in jet j.
"""

from __future__ import annotations

import warnings
from typing import Any

import awkward as ak
import numpy as np
import numpy.typing as npt

from distributed_clr.physics.clustering import fastjet_module
from distributed_clr.physics.particles import FloatArray, IntArray

MAX_SUBJETS = 3
# FastJet's largest allowed radius: reclustering with it puts each jet's constituents in one tree.
_RECLUSTER_RADIUS = 1000.0


def kinematics(
    px: FloatArray, py: FloatArray, pz: FloatArray, e: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(pT, pseudorapidity, phi, mass) of four-vectors in GeV; mass is 0 where m^2 < 0."""
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    phi = np.arctan2(py, px)
    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    return pt, eta, phi, mass


def rapidity(pz: FloatArray, e: FloatArray) -> FloatArray:
    """Rapidity 0.5 ln((E + pz) / (E - pz)), finite for |pz| < E."""
    num = np.maximum(e + pz, 1e-300)
    den = np.maximum(e - pz, 1e-300)
    return 0.5 * np.log(num / den)


def delta_phi(a: FloatArray, b: FloatArray) -> FloatArray:
    """a - b wrapped into [-pi, pi)."""
    return np.mod(a - b + np.pi, 2 * np.pi) - np.pi


def _kt_sequence(pt: FloatArray, eta: FloatArray, phi: FloatArray, counts: IntArray) -> Any:
    """One kT reclustering of every jet's constituents (each jet as its own 'event')."""
    fastjet = fastjet_module()
    flat = ak.zip(
        {
            "px": pt * np.cos(phi),
            "py": pt * np.sin(phi),
            "pz": pt * np.sinh(eta),
            "E": pt * np.cosh(eta),
        }
    )
    return fastjet.ClusterSequence(
        ak.unflatten(flat, counts), fastjet.JetDefinition(fastjet.kt_algorithm, _RECLUSTER_RADIUS)
    )


def exclusive_kt_axes(
    sequence: Any, n: int
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """The n exclusive-kT axes of every jet of a kT ``sequence`` as (rapidity, phi, valid), each
    of shape (M, n). A jet with fewer than n constituents has fewer axes; the missing ones are
    marked invalid."""
    with warnings.catch_warnings():
        # fastjet warns about exclusive jets for every algorithm, kT included.
        warnings.filterwarnings("ignore", message="dcut and exclusive jets")
        axes = sequence.exclusive_jets_up_to(n_jets=n)
    padded = ak.pad_none(axes, n, axis=1, clip=True)
    valid = ak.to_numpy(~ak.is_none(padded, axis=1))
    filled = ak.fill_none(padded, {"px": 0.0, "py": 0.0, "pz": 0.0, "E": 1.0})
    ax_px, ax_py, ax_pz, ax_e = (
        np.asarray(ak.to_numpy(filled[c]), dtype=np.float64) for c in ("px", "py", "pz", "E")
    )
    return rapidity(ax_pz, ax_e), np.arctan2(ax_py, ax_px), valid.astype(bool)


def nsubjettiness(
    pt: FloatArray,
    eta: FloatArray,
    phi: FloatArray,
    counts: IntArray,
    radius: float,
    n_max: int = MAX_SUBJETS,
) -> npt.NDArray[np.float64]:
    """tau_1 .. tau_{n_max} of M jets (beta = 1, exclusive-kT axes), shape (M, n_max).

    pt, eta, phi are the massless constituents of all jets, flat, ``counts`` per jet.
    """
    m = len(counts)
    taus = np.zeros((m, n_max))
    if m == 0 or len(pt) == 0:
        return taus
    sequence = _kt_sequence(pt, eta, phi, counts)
    jet_of = np.repeat(np.arange(m), counts)
    norm = np.bincount(jet_of, weights=pt, minlength=m) * radius
    safe_norm = np.where(norm > 0, norm, 1.0)
    for n in range(1, n_max + 1):
        ax_y, ax_phi, valid = exclusive_kt_axes(sequence, n)
        # Distance of every constituent to each of its own jet's axes; invalid axes are far away.
        dy = eta[:, None] - ax_y[jet_of]
        dphi = delta_phi(phi[:, None], ax_phi[jet_of])
        dist = np.where(valid[jet_of], np.sqrt(dy**2 + dphi**2), np.inf)
        nearest = dist.min(axis=1)
        nearest = np.where(np.isfinite(nearest), nearest, 0.0)
        total = np.bincount(jet_of, weights=pt * nearest, minlength=m)
        taus[:, n - 1] = np.where((counts > n) & (norm > 0), total / safe_norm, 0.0)
    return taus


def ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den, 0 where den is 0."""
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
