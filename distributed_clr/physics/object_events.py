"""Pythia 8 settings of the object-level processes and the generation of one shard of them.

SM processes (the ADC2021 background cocktail):

* ``w_lnu``: W -> l nu (l = e, mu, tau), ``WeakSingleBoson:ffbar2W``.
* ``z_ll``: Z/gamma* -> l l with m > ``z_mass_min``, ``WeakSingleBoson:ffbar2gmZ``.
* ``ttbar``: ``Top:gg2ttbar`` and ``Top:qqbar2ttbar``, all decays.
* ``qcd``: heavy-flavour pairs (``HardQCD:hardbbbar``, ``hardccbar``) above
  ``qcd_pthat_min``: the QCD events that give a lepton. Light-flavour QCD passes the lepton
  preselection only through fakes, which the parametric reconstruction does not model.

Signals (the four ADC2021 samples, masses in config):

* ``ato4l``: a neutral scalar A (Pythia's H2, ``HiggsBSM:gg2H2``) -> Z Z* -> 4 l (e, mu).
* ``lq_btau``: leptoquark pairs (``LeptoQuark:all``), each LQ -> b tau (charge 2/3).
* ``h0_tautau``: a scalar (the SM Higgs slot at ``h0_mass``, ``HiggsSM:gg2H``) -> tau tau.
* ``hplus_taunu``: a charged scalar (``HiggsBSM:ffbar2H+-``) -> tau nu.

Taus decay in Pythia; their visible products become leptons and jets in the reconstruction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distributed_clr.config.schema import SM_PROCESSES, ObjectGenerateConfig
from distributed_clr.errors import RunError
from distributed_clr.physics.objects import FinalState, ObjectEvents, reconstruct
from distributed_clr.physics.pythia import derive_pythia_seed, make_pythia, pythia_seed_lines

__all__ = ["ObjectShard", "generate_object_events", "object_settings", "process_id", "settings_of"]

A_ID, LQ_ID, H_ID, HPLUS_ID = 35, 42, 25, 37


def process_id(process: str) -> int:
    """The SM process id of ``process`` (its position in ``SM_PROCESSES``), -1 for a signal."""
    return SM_PROCESSES.index(process) if process in SM_PROCESSES else -1


def settings_of(config: ObjectGenerateConfig, process: str) -> list[str]:
    """The process-specific Pythia settings of ``process``."""
    table: dict[str, list[str]] = {
        "w_lnu": ["WeakSingleBoson:ffbar2W = on", "24:onMode = off", "24:onIfAny = 11 13 15"],
        "z_ll": [
            "WeakSingleBoson:ffbar2gmZ = on",
            "23:onMode = off",
            "23:onIfAny = 11 13 15",
            f"PhaseSpace:mHatMin = {config.z_mass_min}",
        ],
        "ttbar": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"],
        "qcd": [
            "HardQCD:hardbbbar = on",
            "HardQCD:hardccbar = on",
            f"PhaseSpace:pTHatMin = {config.qcd_pthat_min}",
        ],
        "ato4l": [
            "Higgs:useBSM = on",
            "HiggsBSM:gg2H2 = on",
            f"{A_ID}:m0 = {config.a_mass}",
            f"{A_ID}:onMode = off",
            f"{A_ID}:onIfMatch = 23 23",
            "23:onMode = off",
            "23:onIfAny = 11 13",
        ],
        "lq_btau": [
            "LeptoQuark:all = on",
            f"{LQ_ID}:m0 = {config.lq_mass}",
            f"{LQ_ID}:chargeType = 2",
            f"{LQ_ID}:oneChannel = 1 1.0 0 5 -15",
        ],
        "h0_tautau": [
            "HiggsSM:gg2H = on",
            f"{H_ID}:m0 = {config.h0_mass}",
            f"{H_ID}:onMode = off",
            f"{H_ID}:onIfMatch = 15 -15",
        ],
        "hplus_taunu": [
            "Higgs:useBSM = on",
            "HiggsBSM:ffbar2H+- = on",
            f"{HPLUS_ID}:m0 = {config.hplus_mass}",
            f"{HPLUS_ID}:onMode = off",
            f"{HPLUS_ID}:onIfAny = 15",
        ],
    }
    return table[process]


def object_settings(config: ObjectGenerateConfig, process: str, seed: int | None) -> list[str]:
    """All Pythia settings of one process (raw settings last); ``seed=None`` leaves out the
    seed lines (for the manifest)."""
    return [
        "Beams:idA = 2212",
        "Beams:idB = 2212",
        f"Beams:eCM = {config.sqrt_s}",
        "Print:quiet = on",
        "Next:numberCount = 0",
        *pythia_seed_lines(seed),
        *settings_of(config, process),
        *(f"{key} = {value}" for key, value in config.pythia_settings.items()),
    ]


@dataclass
class ObjectShard:
    """The preselected events of one shard and how they were made."""

    events: ObjectEvents
    pythia_seed: int
    generated: int
    failed: int
    sigma_pb: float
    sigma_err_pb: float
    passed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        return {
            "pythia_seed": self.pythia_seed,
            "generated": self.generated,
            "failed": self.failed,
            "passed_preselection": self.passed,
            "preselection_efficiency": self.passed / self.generated if self.generated else 0.0,
            "sigma_gen_pb": self.sigma_pb,
            "sigma_err_pb": self.sigma_err_pb,
        }


def generate_object_events(
    config: ObjectGenerateConfig,
    process: str,
    n_events: int,
    seed_sequence: np.random.SeedSequence,
    *,
    max_generated: int | None = None,
) -> ObjectShard:
    """``n_events`` preselected object-level events of ``process`` (or, with
    ``max_generated``, whatever passes among that many generated events: the pilot run of
    cross-section mixing). Pythia and the reconstruction take their own seeds from
    ``seed_sequence``, so a shard is fully determined by it."""
    pythia_seq, reco_seq = seed_sequence.spawn(2)
    seed = derive_pythia_seed(pythia_seq)
    rng = np.random.default_rng(reco_seq)
    pythia = make_pythia(object_settings(config, process, seed))
    kept: list[ObjectEvents] = []
    have = generated = failed = 0
    limit = max_generated if max_generated is not None else math.inf
    while have < n_events and generated < limit:
        if generated:
            efficiency = (have + 1) / (generated + 1)
            want = math.ceil((n_events - have) / max(efficiency, 1e-3) * 1.1)
        else:
            want = 100
        chunk = int(min(max(want, 16), config.chunk_events, limit - generated))
        batch = pythia.nextBatch(chunk, "skip")
        made = len(batch)
        failed += chunk - made
        if made == 0:
            raise RunError(f"Pythia failed to produce any of {chunk} {process} events in a row")
        generated += made
        events = reconstruct(FinalState.from_batch(batch), config.reco, rng)
        passed = events.passed
        kept.append(ObjectEvents(events.values[passed], events.classes[passed], passed[passed]))
        have += int(passed.sum())
        if have == 0 and generated >= 200_000:
            raise RunError(
                f"no {process} event passed the preselection in {generated} generated events"
            )
    values = np.concatenate([k.values for k in kept])[:n_events]
    classes = np.concatenate([k.classes for k in kept])[:n_events]
    info = pythia.infoPython()
    return ObjectShard(
        events=ObjectEvents(values, classes, np.ones(len(values), dtype=bool)),
        pythia_seed=seed,
        generated=generated,
        failed=failed,
        sigma_pb=float(info.sigmaGen()) * 1e9,
        sigma_err_pb=float(info.sigmaErr()) * 1e9,
        passed=have,
    )
