"""The parametric detector: acceptance, resolution, granularity, threshold, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from distributed_clr.config import DetectorConfig
from distributed_clr.physics.detector import apply_detector, energy_resolution
from distributed_clr.physics.particles import Particles, wrap_phi


def _particles(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, counts: list[int]) -> Particles:
    return Particles(pt, eta, phi, np.asarray(counts, dtype=np.int64))


def test_disabled_detector_is_the_identity() -> None:
    p = _particles(np.ones(3), np.zeros(3), np.zeros(3), [1, 2])
    assert apply_detector(p, DetectorConfig(enabled=False), np.random.default_rng(0)) is p


def test_acceptance_drops_forward_particles_and_keeps_event_boundaries() -> None:
    eta = np.array([0.0, 2.6, -3.0, 1.0, 2.49, -2.51])
    p = _particles(np.full(6, 50.0), eta, np.zeros(6), [2, 0, 3, 1])
    config = DetectorConfig(
        eta_max=2.5, stochastic=0, noise=0, constant=0, cell_eta=1e-9, cell_phi=1e-9
    )
    out = apply_detector(p, config, np.random.default_rng(0))
    assert out.counts.tolist() == [1, 0, 2, 0]
    np.testing.assert_allclose(out.eta, [0.0, 1.0, 2.49], atol=1e-6)
    np.testing.assert_allclose(out.pt, 50.0, rtol=1e-6)


def test_energy_resolution_matches_the_parametrisation() -> None:
    config = DetectorConfig(stochastic=0.5, noise=1.0, constant=0.05, cell_eta=0.1, cell_phi=0.2)
    n, energy = 40_000, 100.0
    p = _particles(np.full(n, energy), np.zeros(n), np.zeros(n), [n])
    out = apply_detector(p, config, np.random.default_rng(1))
    expected = np.sqrt((0.5 / 10) ** 2 + (1.0 / 100) ** 2 + 0.05**2)
    assert energy_resolution(np.array([energy]), config)[0] == pytest.approx(expected)
    measured_e = out.pt * np.cosh(out.eta)
    assert np.mean(measured_e) == pytest.approx(energy, rel=0.005)
    assert np.std(measured_e) / energy == pytest.approx(expected, rel=0.03)
    # Positions are smeared by the standard deviation of a uniform position in a cell.
    assert np.std(out.eta) == pytest.approx(0.1 / np.sqrt(12), rel=0.03)
    assert np.std(out.phi) == pytest.approx(0.2 / np.sqrt(12), rel=0.03)


def test_resolution_improves_with_energy() -> None:
    config = DetectorConfig()
    res = energy_resolution(np.array([10.0, 100.0, 1000.0]), config)
    assert res[0] > res[1] > res[2] > config.constant


def test_threshold_and_phi_range() -> None:
    rng = np.random.default_rng(2)
    n = 5000
    p = _particles(
        rng.exponential(2.0, n), rng.uniform(-2, 2, n), rng.uniform(-np.pi, np.pi, n), [n]
    )
    out = apply_detector(p, DetectorConfig(pt_min=1.0, cell_phi=0.5), rng)
    assert out.pt.min() >= 1.0
    assert 0 < len(out.pt) < n
    assert out.phi.min() > -np.pi
    assert out.phi.max() <= np.pi


def test_wrap_phi_maps_into_half_open_interval() -> None:
    phi = np.array([np.pi, -np.pi, 3 * np.pi, -3 * np.pi, 0.5 + 2 * np.pi, -0.5 - 4 * np.pi])
    np.testing.assert_allclose(wrap_phi(phi), [np.pi, np.pi, np.pi, np.pi, 0.5, -0.5], atol=1e-12)


def test_same_seed_same_output() -> None:
    rng = np.random.default_rng(3)
    p = _particles(
        rng.exponential(20, 100), rng.normal(0, 1, 100), rng.uniform(-3, 3, 100), [60, 40]
    )
    a = apply_detector(p, DetectorConfig(), np.random.default_rng(7))
    b = apply_detector(p, DetectorConfig(), np.random.default_rng(7))
    c = apply_detector(p, DetectorConfig(), np.random.default_rng(8))
    assert np.array_equal(a.pt, b.pt)
    assert np.array_equal(a.phi, b.phi)
    assert not np.array_equal(a.pt, c.pt)


def test_inconsistent_arrays_are_rejected() -> None:
    with pytest.raises(ValueError, match="inconsistent particle arrays"):
        _particles(np.ones(3), np.ones(2), np.ones(3), [3])
