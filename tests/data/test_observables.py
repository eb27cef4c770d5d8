"""N-subjettiness and jet kinematics: hand-computed values, a FastJet cross-check, physics."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from distributed_clr.physics.clustering import fastjet_module
from distributed_clr.physics.observables import delta_phi, kinematics, nsubjettiness, ratio


def _four(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], 1)


def _axis(p4: np.ndarray) -> tuple[float, float]:
    px, py, pz, e = p4.sum(axis=0)
    return 0.5 * np.log((e + pz) / (e - pz)), float(np.arctan2(py, px))


def test_tau_by_hand_on_three_particles() -> None:
    pt = np.array([100.0, 50.0, 50.0])
    eta = np.array([0.0, 0.3, 0.0])
    phi = np.array([0.0, 0.0, 0.4])
    p4 = _four(pt, eta, phi)
    norm = pt.sum() * 0.8

    # tau1: the axis is the whole jet (E-scheme sum of the three).
    y, f = _axis(p4)
    tau1 = np.sum(pt * np.hypot(eta - y, phi - f)) / norm
    # tau2: kT distances min(pT_i^2, pT_j^2) dR_ij^2 are 225 (1,2), 400 (1,3), 625 (2,3), so
    # particles 1 and 2 merge first; particle 3 is its own axis at distance 0.
    y12, f12 = _axis(p4[:2])
    tau2 = np.sum(pt[:2] * np.hypot(eta[:2] - y12, phi[:2] - f12)) / norm

    taus = nsubjettiness(pt, eta, phi, np.array([3]), radius=0.8)
    np.testing.assert_allclose(taus[0], [tau1, tau2, 0.0], rtol=1e-12, atol=1e-15)


def test_agrees_with_fastjet_njettiness() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 40, 300)
    n = counts.sum()
    pt = rng.exponential(20.0, n) + 0.1
    eta = rng.normal(0.0, 0.3, n)
    phi = delta_phi(rng.normal(3.0, 0.3, n), np.zeros(n))  # straddles the phi = pi seam
    ours = nsubjettiness(pt, eta, phi, counts, radius=0.8)

    fastjet = fastjet_module()
    p4 = _four(pt, eta, phi)
    jets = ak.unflatten(
        ak.zip({"px": p4[:, 0], "py": p4[:, 1], "pz": p4[:, 2], "E": p4[:, 3]}), counts
    )
    sequence = fastjet.ClusterSequence(jets, fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0))
    theirs = ak.to_numpy(
        sequence.njettiness(
            measure_definition="NormalizedMeasure",
            axes_definition="KT_Axes",
            njets=[1, 2, 3],
            beta=1.0,
            R0=0.8,
        )
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def _prongs(rng: np.random.Generator, centres: list[tuple[float, float]], n: int = 30) -> tuple:
    parts = [
        (rng.exponential(30.0, n) + 1, rng.normal(e, 0.02, n), rng.normal(f, 0.02, n))
        for e, f in centres
    ]
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def test_tau21_separates_two_prong_from_one_prong_jets() -> None:
    rng = np.random.default_rng(1)
    one = _prongs(rng, [(0.0, 0.0)], n=60)
    two = _prongs(rng, [(0.0, 0.0), (0.3, 0.25)])
    pt, eta, phi = (np.concatenate([a, b]) for a, b in zip(one, two, strict=True))
    taus = nsubjettiness(pt, eta, phi, np.array([60, 60]), radius=0.8)
    tau21 = ratio(taus[:, 1], taus[:, 0])
    assert tau21[1] < 0.3 < tau21[0]
    three = _prongs(rng, [(0.0, 0.0), (0.3, 0.25), (-0.25, 0.3)])
    taus3 = nsubjettiness(*three, np.array([90]), radius=0.8)
    assert ratio(taus3[:, 2], taus3[:, 1])[0] < 0.5


def test_small_jets_and_empty_input() -> None:
    taus = nsubjettiness(
        np.array([10.0, 5.0]), np.zeros(2), np.array([0.0, 0.1]), np.array([1, 1]), 0.8
    )
    assert np.array_equal(taus, np.zeros((2, 3)))
    assert nsubjettiness(
        np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), 0.8
    ).shape == (0, 3)


def test_kinematics_of_a_hand_built_dijet() -> None:
    # Two massless jets of 1 TeV at eta = +-1, back to back: m^2 = 2 pT^2 (cosh(2) + 1).
    p4 = _four(np.array([1000.0, 1000.0]), np.array([1.0, -1.0]), np.array([0.0, np.pi]))
    total = p4.sum(axis=0)
    _, _, _, mjj = kinematics(*(total[None, i] for i in range(4)))
    assert mjj[0] == pytest.approx(1000.0 * np.sqrt(2 * (np.cosh(2.0) + 1)), rel=1e-12)
    pt, eta, _, m = kinematics(*(p4[:, i] for i in range(4)))
    np.testing.assert_allclose(pt, 1000.0)
    np.testing.assert_allclose(eta, [1.0, -1.0])
    np.testing.assert_allclose(m, 0.0, atol=1e-4)
