"""Pythia 8 event generation for one shard: settings, batched generation, detector, trigger.

Pythia hands out whole batches of events as awkward arrays (``Pythia.nextBatch``), so the final
state of hundreds of events is turned into flat numpy arrays without a per-particle Python loop.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from distributed_clr.config.schema import GenerateConfig
from distributed_clr.errors import RunError, UserError
from distributed_clr.physics.clustering import leading_jet_pt
from distributed_clr.physics.detector import apply_detector
from distributed_clr.physics.particles import Particles

log = logging.getLogger(__name__)

PYTHIA_SEED_MAX = 900_000_000
"""Pythia accepts seeds 1..900000000 (0 means 'from the clock', negative the default stream)."""

NEUTRINOS = (12, 14, 16)
LIGHT_QUARKS = (1, 2, 3, 4)  # d, u, s, c
X_ID, Y_ID, WPRIME_ID = 35, 36, 34  # Pythia's H0, A0 and W' slots, re-purposed as X, Y, W'


class GenerationError(RunError, RuntimeError):
    """Pythia could not produce events."""


class PythiaSettingsError(UserError, GenerationError):
    """Pythia refused a setting or failed to initialise with the settings given."""


def pythia_seed_lines(seed: int | None) -> list[str]:
    """The Pythia settings that seed a run (none for ``seed=None``)."""
    if seed is None:
        return []
    if not 1 <= seed <= PYTHIA_SEED_MAX:
        raise ValueError(f"Pythia seed must be in [1, {PYTHIA_SEED_MAX}], got {seed}")
    return ["Random:setSeed = on", f"Random:seed = {seed}"]


def pythia_settings(config: GenerateConfig, seed: int | None) -> list[str]:
    """The Pythia settings of a run, in the order they are read (raw settings last, so they win).

    ``seed=None`` leaves out the two seed lines (for the manifest, which lists seeds per shard).
    """
    seeding = pythia_seed_lines(seed)
    settings = [
        "Beams:idA = 2212",
        "Beams:idB = 2212",
        f"Beams:eCM = {config.sqrt_s}",
        "Print:quiet = on",
        "Next:numberCount = 0",
        *seeding,
        f"PartonLevel:MPI = {'on' if config.mpi else 'off'}",
        f"PartonLevel:ISR = {'on' if config.isr else 'off'}",
        f"PartonLevel:FSR = {'on' if config.fsr else 'off'}",
    ]
    if config.process == "qcd_dijet":
        settings += ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {config.pthat_min}"]
    else:
        settings += [
            "NewGaugeBoson:ffbar2Wprime = on",
            f"{WPRIME_ID}:m0 = {config.wprime_mass}",
            f"{WPRIME_ID}:mMin = {config.wprime_mass - config.wprime_window}",
            f"{WPRIME_ID}:mMax = {config.wprime_mass + config.wprime_window}",
            f"{WPRIME_ID}:onMode = off",
            f"{WPRIME_ID}:addChannel = 1 1.0 100 {X_ID} {Y_ID}",
            # W'+- -> X0 Y0 does not conserve charge (as in LHC-Olympics-style samples), so
            # Pythia's event check would reject every event.
            "Check:event = off",
        ]
        for pid, mass, width in (
            (X_ID, config.x_mass, config.x_width),
            (Y_ID, config.y_mass, config.y_width),
        ):
            settings += [f"{pid}:m0 = {mass}", f"{pid}:mWidth = {width}"]
            share = 1.0 / len(LIGHT_QUARKS)
            for i, quark in enumerate(LIGHT_QUARKS):
                verb = "oneChannel" if i == 0 else "addChannel"
                settings.append(f"{pid}:{verb} = 1 {share} 100 {quark} {-quark}")
    settings += [f"{key} = {value}" for key, value in config.pythia_settings.items()]
    return settings


def make_pythia(settings: list[str]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        import pythia8mc

    pythia = pythia8mc.Pythia("", False)  # no banner
    rejected = [line for line in settings if not pythia.readString(line)]
    if rejected:
        raise PythiaSettingsError(f"Pythia rejected the settings: {rejected}")
    if not pythia.init():
        raise PythiaSettingsError(
            "Pythia failed to initialise; the settings were:\n  " + "\n  ".join(settings)
        )
    return pythia


def _final_state(batch: ak.Array) -> Particles:
    """Visible final-state particles of a ``nextBatch`` record, flat, as (pt, eta, phi)."""
    prt = batch.prt
    final = prt[prt.status > 0]
    pid = np.abs(final.id)
    invisible = pid == NEUTRINOS[0]
    for neutrino in NEUTRINOS[1:]:
        invisible = invisible | (pid == neutrino)
    visible = final[~invisible]
    px = ak.to_numpy(ak.flatten(visible.p.px)).astype(np.float64)
    py = ak.to_numpy(ak.flatten(visible.p.py)).astype(np.float64)
    pz = ak.to_numpy(ak.flatten(visible.p.pz)).astype(np.float64)
    pt = np.hypot(px, py)
    # Massless kinematics from the momentum; pt > 0 for any final-state particle of a pp event.
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    phi = np.arctan2(py, px)
    counts = ak.to_numpy(ak.num(visible.id)).astype(np.int64)
    return Particles(pt, eta, phi, counts)


@dataclass
class ShardResult:
    """The detector-level events of a shard and the numbers that describe how they were made."""

    pythia_seed: int
    particles: Particles
    generated: int
    """Events Pythia produced (before the trigger)."""
    failed: int
    """Events Pythia failed to produce."""
    passed_trigger: int
    sigma_mb: float
    """Pythia's estimate of the generated cross-section [mb]."""
    sigma_err_mb: float

    def stats(self) -> dict[str, Any]:
        return {
            "pythia_seed": self.pythia_seed,
            "generated": self.generated,
            "failed": self.failed,
            "passed_trigger": self.passed_trigger,
            "sigma_gen_pb": self.sigma_mb * 1e9,
            "sigma_err_pb": self.sigma_err_mb * 1e9,
        }


def derive_pythia_seed(seed_sequence: np.random.SeedSequence) -> int:
    """A Pythia seed in [1, 900000000] drawn from ``seed_sequence``."""
    return int(seed_sequence.generate_state(1, dtype=np.uint64)[0] % PYTHIA_SEED_MAX) + 1


def generate_events(
    config: GenerateConfig, n_events: int, seed_sequence: np.random.SeedSequence
) -> ShardResult:
    """Generate ``n_events`` detector-level events (after the trigger, when it is on).

    Pythia and the detector each take their own seed from ``seed_sequence``, so a shard is fully
    determined by it. Events are made in batches sized from the trigger efficiency seen so far.
    """
    pythia_seed_seq, detector_seed_seq = seed_sequence.spawn(2)
    pythia_seed = derive_pythia_seed(pythia_seed_seq)
    rng = np.random.default_rng(detector_seed_seq)
    pythia = make_pythia(pythia_settings(config, pythia_seed))

    kept: list[Particles] = []
    have = generated = failed = 0
    while have < n_events:
        if generated:
            efficiency = (have + 1) / (generated + 1)
            want = math.ceil((n_events - have) / max(efficiency, 0.02) * 1.1)
        else:  # a first, small batch measures the trigger efficiency
            want = min(n_events, 100)
        chunk = min(max(want, 16), config.chunk_events)
        batch = pythia.nextBatch(chunk, "skip")
        made = len(batch)
        failed += chunk - made
        if made == 0:
            raise GenerationError(
                f"Pythia failed to produce any of {chunk} events in a row; check the settings"
            )
        generated += made
        events = apply_detector(_final_state(batch), config.detector, rng)
        if config.trigger:
            passed = leading_jet_pt(events, config.trigger_radius) > config.trigger_pt
            events = events.take_events(passed)
        kept.append(events)
        have += len(events.counts)
        if generated > 200 and have == 0 and generated > 50 * config.chunk_events:
            raise GenerationError(
                f"no event passed the trigger in {generated} generated events; "
                "lower generate.trigger_pt or raise generate.pthat_min"
            )

    info = pythia.infoPython()
    return ShardResult(
        pythia_seed=pythia_seed,
        particles=Particles.concat(kept).head(n_events),
        generated=generated,
        failed=failed,
        passed_trigger=have,
        sigma_mb=float(info.sigmaGen()),
        sigma_err_mb=float(info.sigmaErr()),
    )
