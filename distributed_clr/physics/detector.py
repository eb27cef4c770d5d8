"""A parametric, calorimeter-like detector response for generated particles.

The model, applied to every visible final-state particle (neutrinos never reach it), in order:

1. **Acceptance**: particles with ``|eta| >= eta_max`` are lost.
2. **Energy resolution**: the energy is smeared by a Gaussian of relative width
   ``sigma_E / E = a / sqrt(E) (+) b / E (+) c`` (the stochastic, noise and constant terms added in
   quadrature, E in GeV), the usual calorimeter parametrisation. The particle stays massless, so
   its pT scales with its energy. A particle smeared to E <= 0 is lost.
3. **Granularity**: eta and phi are smeared by a Gaussian of width ``cell / sqrt(12)``, the
   standard deviation of a position uniformly distributed within a cell; phi is wrapped back into
   (-pi, pi].
4. **Threshold**: particles with smeared pT below ``pt_min`` are lost.

Everything works on flat arrays of all particles of many events at once, with the event
boundaries given as per-event counts; one ``numpy.random.Generator`` drives all randomness, so the
same seed and input give the same output.
"""

from __future__ import annotations

import numpy as np

from distributed_clr.config.schema import DetectorConfig
from distributed_clr.physics.particles import FloatArray, Particles, wrap_phi


def energy_resolution(energy: FloatArray, config: DetectorConfig) -> FloatArray:
    """Relative resolution sigma_E / E for energies in GeV (the three terms in quadrature)."""
    safe = np.maximum(energy, 1e-9)
    return np.sqrt(
        (config.stochastic / np.sqrt(safe)) ** 2 + (config.noise / safe) ** 2 + config.constant**2
    )


def apply_detector(
    particles: Particles, config: DetectorConfig, rng: np.random.Generator
) -> Particles:
    """The detector-level particles of many events (see the module docstring for the model).

    With ``config.enabled`` False the input is returned unchanged.
    """
    if not config.enabled:
        return particles
    inside = np.abs(particles.eta) < config.eta_max
    p = particles.select(inside)
    n = len(p.pt)

    cosh = np.cosh(p.eta)
    energy = p.pt * cosh
    smeared = energy * (1.0 + energy_resolution(energy, config) * rng.standard_normal(n))
    eta = p.eta + rng.normal(0.0, config.cell_eta / np.sqrt(12.0), n)
    phi = wrap_phi(p.phi + rng.normal(0.0, config.cell_phi / np.sqrt(12.0), n))
    # The particle keeps its (true) direction's relation E = pT cosh(eta) at the measured eta.
    pt = np.where(smeared > 0, smeared / np.cosh(eta), 0.0)

    measured = Particles(pt, eta, phi, p.counts)
    return measured.select(pt >= max(config.pt_min, np.finfo(np.float64).tiny))
