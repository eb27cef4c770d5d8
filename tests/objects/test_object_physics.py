"""Physics checks of the object-level generator: the Z peak, the W transverse-mass edge, the
A -> 4l mass, the preselection, the ADC2021 layout, seeds, and the cocktail's fractions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest

from distributed_clr.config import PrepareConfig, RayConfig
from distributed_clr.config.schema import ObjectGenerateConfig, ObjectRecoConfig
from distributed_clr.data.adc import check_objects
from distributed_clr.data.generate_objects import generate_objects, plan_shards, shares
from distributed_clr.physics.object_events import generate_object_events
from distributed_clr.physics.object_observables import (
    dilepton_mass,
    four_lepton_mass,
    leading_lepton_pt,
    transverse_mass,
)
from distributed_clr.physics.objects import FinalState, reconstruct

CONFIG = ObjectGenerateConfig()


def _events(process: str, n: int, seed: int = 1) -> np.ndarray:
    shard = generate_object_events(CONFIG, process, n, np.random.SeedSequence(seed))
    values = shard.events.values
    assert len(values) == n
    return values


def _peak(x: np.ndarray, bins: np.ndarray) -> float:
    counts, edges = np.histogram(x[np.isfinite(x)], bins=bins)
    return float(edges[counts.argmax()] + 0.5 * (edges[1] - edges[0]))


def test_z_to_leptons_peaks_at_the_z_mass() -> None:
    mass = dilepton_mass(_events("z_ll", 200))
    found = mass[np.isfinite(mass)]
    assert len(found) > 80  # most Z -> e e / mu mu events keep both leptons
    assert 86 <= _peak(found, np.arange(40, 150, 4)) <= 96
    assert np.median(found) == pytest.approx(91.2, abs=3)


def test_w_transverse_mass_has_its_edge_at_the_w_mass() -> None:
    mt = transverse_mass(_events("w_lnu", 300))
    assert np.isfinite(mt).all()  # every preselected event has a lepton
    counts, edges = np.histogram(mt, bins=np.arange(0, 130, 10))
    drop = int(np.argmin(np.diff(counts)))  # the steepest fall of the distribution
    assert 65 <= edges[drop + 1] <= 95
    assert np.mean(mt > 100) < 0.05  # beyond the edge only resolution tails


def test_a_to_four_leptons_peaks_at_the_configured_mass() -> None:
    mass = four_lepton_mass(_events("ato4l", 250))
    found = mass[np.isfinite(mass)]
    assert len(found) >= 15
    assert np.median(found) == pytest.approx(CONFIG.a_mass, abs=5)
    assert np.mean(np.abs(found - CONFIG.a_mass) < 10) > 0.8


@pytest.mark.parametrize("process", ["w_lnu", "lq_btau"])
def test_generated_events_pass_the_preselection_and_the_adc_layout_checks(process: str) -> None:
    values = _events(process, 60, seed=3)
    assert np.all(leading_lepton_pt(values) >= CONFIG.reco.trigger_lepton_pt)
    jets = values[:, 9:]
    assert np.all(np.abs(jets[..., 1][jets[..., 0] > 0]) < 4.0)
    classes = np.zeros(values.shape[:2])
    for first, end, code in ((0, 1, 1), (1, 5, 2), (5, 9, 3), (9, 19, 4)):
        classes[:, first:end] = np.where(values[:, first:end, 0] > 0, code, 0)
    rows = np.concatenate([values, classes[..., None]], axis=-1)
    check_objects(rows, Path("generated"), 0)  # the importer's layout checks pass


def _state(particles: list[list[tuple[int, float, float, float]]]) -> FinalState:
    """Events given as (pid, pt, eta, phi) particles."""
    flat = [p for event in particles for p in event]
    pid = np.array([p[0] for p in flat])
    pt, eta, phi = (np.array([p[i] for p in flat], dtype=float) for i in (1, 2, 3))
    return FinalState(
        pid, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta),
        np.array([len(e) for e in particles]),
    )  # fmt: skip


def test_the_preselection_and_the_jet_acceptance_remove_what_they_should() -> None:
    reco = ObjectRecoConfig(electron_efficiency=1.0, muon_efficiency=1.0)
    hadrons = [(211, 40.0, 0.5, 1.0), (211, 35.0, 0.55, 1.05), (211, 60.0, 4.5, -2.0)]
    events = _state(
        [
            [(11, 30.0, 0.1, 0.0), *hadrons],  # a 30 GeV electron: kept
            [(13, 20.0, 0.1, 0.0), *hadrons],  # a 20 GeV muon: below 23 GeV, removed
            [(11, 30.0, 2.7, 0.0), *hadrons],  # beyond the tracker: no lepton, removed
            [(13, 25.0, -1.0, 2.0), (12, 50.0, 0.0, -1.0), *hadrons],  # muon + neutrino: kept
        ]
    )
    out = reconstruct(events, reco, np.random.default_rng(0))
    assert out.passed.tolist() == [True, False, False, True]
    jets = out.values[:, 9:]
    assert np.all(np.abs(jets[..., 1][jets[..., 0] > 0]) < 4.0)  # the eta 4.5 hadron made none
    assert np.all((jets[:, 0, 0] > 60) & (jets[:, 0, 0] < 90))  # the two central pions: a jet
    assert out.classes[0, 1] == 2
    assert out.classes[3, 5] == 3
    # MET is minus the vector sum of what was measured (the neutrino is not): event 4
    visible = [(25.0, 2.0), (40.0, 1.0), (35.0, 1.05), (60.0, -2.0)]
    px = sum(pt * np.cos(phi) for pt, phi in visible)
    py = sum(pt * np.sin(phi) for pt, phi in visible)
    assert out.values[3, 0, 0] == pytest.approx(np.hypot(px, py), abs=3.0)
    assert out.values[3, 0, 2] == pytest.approx(np.arctan2(-py, -px), abs=0.1)


def test_a_shard_is_fixed_by_its_seed() -> None:
    a = generate_object_events(CONFIG, "z_ll", 20, np.random.SeedSequence(7))
    b = generate_object_events(CONFIG, "z_ll", 20, np.random.SeedSequence(7))
    c = generate_object_events(CONFIG, "z_ll", 20, np.random.SeedSequence(8))
    np.testing.assert_array_equal(a.events.values, b.events.values)
    assert not np.array_equal(a.events.values, c.events.values)


def test_the_cocktail_plan_follows_the_fractions() -> None:
    config = ObjectGenerateConfig(events=10_000, shards=8)
    plan = plan_shards(config, shares(config, None))
    events: dict[str, int] = {}
    for process, _, n in plan:
        events[process] = events.get(process, 0) + n
    assert events == {"w_lnu": 5920, "qcd": 3380, "z_ll": 670, "ttbar": 30}
    assert {p for p, _, _ in plan} == set(events)  # every process has a shard of its own
    pilot = {
        "w_lnu": {"sigma_gen_pb": 4.0e4, "efficiency": 0.3},
        "qcd": {"sigma_gen_pb": 8.0e4, "efficiency": 0.05},
        "z_ll": {"sigma_gen_pb": 4.0e3, "efficiency": 0.45},
        "ttbar": {"sigma_gen_pb": 500.0, "efficiency": 0.3},
    }
    by_sigma = shares(config.model_copy(update={"mix": "cross_section"}), pilot)
    assert by_sigma["w_lnu"] == pytest.approx(1.2e4 / (1.2e4 + 4e3 + 1.8e3 + 150))


@pytest.mark.ray
def test_a_generated_cocktail_has_the_configured_fractions_and_resumes(
    ray_session: None, tmp_path: Path
) -> None:
    config = ObjectGenerateConfig(
        events=240, shards=3, fractions={"w_lnu": 0.5, "z_ll": 0.25, "ttbar": 0.25}
    )
    out = tmp_path / "cocktail"
    manifest = generate_objects(config, out, RayConfig(num_cpus=4), PrepareConfig())
    table = pads.dataset(sorted(map(str, out.glob("*.parquet"))), format="parquet").to_table()
    processes, counts = np.unique(
        table["process"].to_numpy(zero_copy_only=False), return_counts=True
    )
    assert dict(zip(processes.tolist(), counts.tolist(), strict=True)) == {
        "w_lnu": 120, "z_ll": 60, "ttbar": 60,
    }  # fmt: skip
    ids = dict(zip(table["process"].to_pylist(), table["process_id"].to_pylist(), strict=True))
    assert ids == {"w_lnu": 0, "z_ll": 2, "ttbar": 3}
    assert set(table["label"].to_pylist()) == {0}
    assert manifest.summary["processes"]["z_ll"]["fraction"] == pytest.approx(0.25)
    # a rerun after losing a shard redoes that shard alone, with the same bytes
    first = sorted(manifest.shards, key=lambda s: s.file)[0]
    (out / first.file).unlink()
    again = generate_objects(config, out, RayConfig(num_cpus=4), PrepareConfig())
    assert {s.file: s.sha256 for s in again.shards} == {s.file: s.sha256 for s in manifest.shards}


@pytest.mark.ray
def test_cross_section_mixing_follows_the_pilot_run(ray_session: None, tmp_path: Path) -> None:
    config = ObjectGenerateConfig(events=60, shards=2, mix="cross_section", pilot_events=300)
    manifest = generate_objects(config, tmp_path / "mixed", RayConfig(num_cpus=4))
    pilot = manifest.summary["pilot"]
    assert set(pilot) == {"w_lnu", "qcd", "z_ll", "ttbar"}
    for entry in pilot.values():
        assert entry["generated"] == 300
        assert entry["sigma_gen_pb"] > 0
    weights = {p: e["sigma_gen_pb"] * e["efficiency"] for p, e in pilot.items()}
    expected = {p: w / sum(weights.values()) for p, w in weights.items()}
    realised = {p: e["fraction"] for p, e in manifest.summary["processes"].items()}
    for process, fraction in realised.items():
        assert fraction == pytest.approx(expected[process], abs=1 / 60 + 1e-9)
    # W has the largest cross-section times efficiency of the four
    assert max(realised, key=realised.__getitem__) == "w_lnu"
