"""Event generation: reproducibility, physics of the samples, resumption, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from distributed_clr.config import GenerateConfig, RayConfig
from distributed_clr.data.generate import event_ids, events_per_shard, generate, shard_seed
from distributed_clr.physics.pythia import GenerationError, generate_events, pythia_settings
from distributed_clr.storage.formats import RAW_SCHEMA, check_schema
from distributed_clr.storage.manifest import DatasetError, read_manifest, require_complete
from tests.data.physics import histogram_peak, leading_dijets, read_raw

DCLR = str(Path(sys.executable).parent / "dclr")


def _digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.glob("*.parquet"))
    }


# ------------------------------------------------------------------------------------------------
# pure functions


def test_events_are_split_evenly_over_shards() -> None:
    assert events_per_shard(10, 3) == [4, 3, 3]
    assert sum(events_per_shard(1001, 7)) == 1001


def test_shard_seeds_are_independent_of_the_shard_count_and_the_process() -> None:
    a = shard_seed(GenerateConfig(shards=2), 1).generate_state(4)
    b = shard_seed(GenerateConfig(shards=8), 1).generate_state(4)
    c = shard_seed(GenerateConfig(shards=2), 0).generate_state(4)
    d = shard_seed(GenerateConfig(shards=2, process="wprime_xy"), 1).generate_state(4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, d)


def test_event_ids_are_unique_across_shards_and_datasets() -> None:
    config = GenerateConfig()
    ids = np.concatenate([event_ids(config, i, 1000) for i in range(5)])
    other = event_ids(GenerateConfig(process="wprime_xy"), 0, 1000)
    assert len(np.unique(ids)) == len(ids)
    assert not np.intersect1d(ids, other).size
    assert ids.min() >= 0


def test_pythia_settings_for_the_signal() -> None:
    config = GenerateConfig(
        process="wprime_xy", pythia_settings={"PartonLevel:MPI": "off", "34:m0": "3000"}
    )
    settings = pythia_settings(config, seed=42)
    assert "NewGaugeBoson:ffbar2Wprime = on" in settings
    assert "34:addChannel = 1 1.0 100 35 36" in settings
    assert "Check:event = off" in settings
    assert "35:m0 = 500.0" in settings
    assert "36:m0 = 100.0" in settings
    assert "Random:seed = 42" in settings
    # Raw settings come last, so they override the generated ones.
    assert settings[-2:] == ["PartonLevel:MPI = off", "34:m0 = 3000"]
    assert not any("Random" in s for s in pythia_settings(config, seed=None))
    with pytest.raises(ValueError, match="Pythia seed"):
        pythia_settings(config, seed=0)


def test_a_misspelled_pythia_setting_is_reported() -> None:
    config = GenerateConfig(pythia_settings={"HardQCD:alll": "on"})
    with pytest.raises(GenerationError, match=r"HardQCD:alll"):
        generate_events(config, 1, np.random.SeedSequence(0))


def test_generation_without_trigger_or_detector_is_truth_level() -> None:
    config = GenerateConfig(
        process="wprime_xy", trigger=False, detector={"enabled": False}, mpi=False
    )
    result = generate_events(config, 20, np.random.SeedSequence(5))
    assert result.generated == 20
    assert result.passed_trigger == 20
    # Truth-level particles extend beyond any detector acceptance.
    assert np.abs(result.particles.eta).max() > 2.5
    assert result.sigma_mb > 0


# ------------------------------------------------------------------------------------------------
# datasets


@pytest.mark.ray
def test_same_seed_same_bytes_other_seed_other_bytes(ray_session: None, tmp_path: Path) -> None:
    def run(seed: int, out: Path) -> dict[str, str]:
        config = GenerateConfig(process="wprime_xy", events=60, shards=2, seed=seed)
        manifest = generate(config, out, RayConfig())
        assert manifest.complete
        assert {s.file: s.sha256 for s in manifest.shards} == _digests(out)
        return _digests(out)

    a, b, c = run(7, tmp_path / "a"), run(7, tmp_path / "b"), run(8, tmp_path / "c")
    assert a == b
    assert len(a) == 2
    assert not set(a.values()) & set(c.values())


@pytest.mark.ray
def test_dataset_format_and_manifest(generated: dict[str, Path]) -> None:
    for process, directory in generated.items():
        table = read_raw(directory)
        check_schema(table.schema, RAW_SCHEMA, directory)
        assert table.num_rows == 400
        assert set(table.column("process").to_pylist()) == {process}
        assert set(table.column("label").to_pylist()) == {1 if process == "wprime_xy" else 0}
        ids = table.column("event_id").to_numpy()
        assert len(np.unique(ids)) == len(ids)

        manifest = require_complete(directory, "raw")
        summary = manifest.summary
        assert summary["events"] == 400
        assert 0 < summary["trigger_efficiency"] < 1
        assert summary["generated"] == sum(s.stats["generated"] for s in manifest.shards)
        assert summary["sigma_gen_pb"] > 0
        assert len({s.stats["pythia_seed"] for s in manifest.shards}) == 2
        assert manifest.config["process"] == process


@pytest.mark.ray
def test_signal_resonances_appear_at_their_masses(generated: dict[str, Path]) -> None:
    config = GenerateConfig()
    mjj, mass = leading_dijets(generated["wprime_xy"])
    peak = histogram_peak(mjj, np.arange(2000.0, 5000.0, 100.0))
    assert abs(peak - config.wprime_mass) < 0.1 * config.wprime_mass
    heavy, light = mass.max(axis=1), mass.min(axis=1)
    assert abs(histogram_peak(heavy, np.arange(0.0, 800.0, 40.0)) - config.x_mass) < 60
    assert abs(histogram_peak(light, np.arange(0.0, 400.0, 20.0)) - config.y_mass) < 25


@pytest.mark.ray
def test_qcd_mjj_falls_steeply_above_the_trigger_turn_on(generated: dict[str, Path]) -> None:
    mjj, _ = leading_dijets(generated["qcd_dijet"])
    edges = np.arange(2000.0, 6001.0, 500.0)
    counts, _ = np.histogram(mjj, bins=edges)
    peak = int(np.argmax(counts))
    # The turn-on sits near twice the trigger threshold (two ~1.2 TeV jets).
    assert 2000 <= edges[peak] <= 3000
    above = counts[peak:]
    assert above[0] > 3 * above[2]  # a steep fall over 1 TeV ...
    assert above[2] >= above[-1]  # ... that keeps falling
    assert np.median(mjj) < 3500


@pytest.mark.ray
def test_rerun_skips_finished_shards_and_redoes_corrupted_ones(
    ray_session: None, tmp_path: Path
) -> None:
    config = GenerateConfig(process="wprime_xy", events=40, shards=2, seed=3)
    out = tmp_path / "ds"
    generate(config, out, RayConfig())
    before = _digests(out)
    stamp = (out / "shard-00000.parquet").stat().st_mtime_ns
    (out / "shard-00001.parquet").write_bytes(b"truncated")
    generate(config, out, RayConfig())
    assert _digests(out) == before
    assert (out / "shard-00000.parquet").stat().st_mtime_ns == stamp  # not rewritten


@pytest.mark.ray
def test_another_config_into_the_same_directory_is_refused(
    ray_session: None, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    generate(GenerateConfig(process="wprime_xy", events=20, shards=1), out, RayConfig())
    before = _digests(out)
    with pytest.raises(DatasetError, match="different configuration"):
        generate(GenerateConfig(process="wprime_xy", events=20, shards=1, seed=9), out, RayConfig())
    assert _digests(out) == before


def test_impossible_requests_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot fill"):
        generate(GenerateConfig(events=2, shards=3), tmp_path / "x", RayConfig())
    assert not (tmp_path / "x").exists()


@pytest.mark.ray
def test_killed_run_resumes_to_the_same_shards(ray_session: None, tmp_path: Path) -> None:
    args = ["--process", "wprime_xy", "--events", "120", "--shards", "4", "--seed", "5"]
    reference = tmp_path / "reference"
    config = GenerateConfig(process="wprime_xy", events=120, shards=4, seed=5)
    generate(config, reference, RayConfig())

    out = tmp_path / "interrupted"
    command = [DCLR, "-q", "generate", *args, "--out", str(out), "--set", "ray.num_cpus=1"]
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(command, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            manifest = read_manifest(out) if (out / "manifest.json").exists() else None
            if manifest is not None and manifest.shards:
                break
            assert proc.poll() is None, "generate finished or failed before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    partial = json.loads((out / "manifest.json").read_text())
    assert not partial["complete"]
    assert 1 <= len(partial["shards"]) < 4

    subprocess.run(command, check=True, env=env)
    assert _digests(out) == _digests(reference)
    assert require_complete(out, "raw").rows == 120
