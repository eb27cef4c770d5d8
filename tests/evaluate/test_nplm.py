"""``evaluate nplm`` end to end: pools that never share an event, toys on Ray with their
outputs and MLflow run, a planted signal found with rising power, resumption after an
interruption, and clear errors for bad inputs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from distributed_clr.cli import main
from distributed_clr.config import NPLMConfig, RayConfig
from distributed_clr.evaluate import EvaluationError, nplm
from distributed_clr.evaluate.inputs import load_inputs
from distributed_clr.evaluate.nplm import TOYS, build_pools, toy_specs
from tests.evaluate.helpers import Encoder, assert_png
from tests.evaluate.test_inputs import write_embeddings

pytestmark = pytest.mark.ray
# The package exports the function ``nplm``, which hides the module of the same name.
nplm_module = importlib.import_module("distributed_clr.evaluate.nplm")

SMALL = NPLMConfig(
    reference_events=150,
    data_events=60,
    signal_events=[10, 40],
    toys=8,
    centers=40,
    toys_per_task=4,
    feature_sets=["latent", "highlevel"],
)
RAY = RayConfig(num_cpus=4)


def test_pools_are_disjoint_sized_and_seeded(encoder: Encoder) -> None:
    inputs = load_inputs(encoder.embeddings, None, ["latent"])
    pools = build_pools(inputs, SMALL)
    assert len(pools.reference) == SMALL.reference_events
    assert not set(pools.reference) & set(pools.data)
    assert (inputs.label[pools.reference] == 0).all()
    assert (inputs.label[pools.data] == 0).all()
    assert len(pools.reference) + len(pools.data) == int((inputs.label == 0).sum())
    for process, rows in pools.signal.items():
        assert (inputs.label[rows] == 1).all()
        assert (inputs.process[rows] == process).all()
    again = build_pools(inputs, SMALL)
    np.testing.assert_array_equal(again.reference, pools.reference)
    other = build_pools(inputs, SMALL.model_copy(update={"seed": 1}))
    assert set(other.reference) != set(pools.reference)
    # The same toy has the same seed whatever else is asked for.
    specs = toy_specs(SMALL, ["wprime_xy"])
    assert len(specs) == SMALL.toys * (1 + len(SMALL.signal_events))
    fewer = toy_specs(SMALL.model_copy(update={"signal_events": [40]}), ["wprime_xy"])
    assert {s.seed for s in fewer} <= {s.seed for s in specs}


def test_too_few_events_name_the_counts(encoder: Encoder) -> None:
    inputs = load_inputs(encoder.embeddings, None, ["latent"])
    background = int((inputs.label == 0).sum())
    with pytest.raises(EvaluationError, match=rf"embeddings hold {background} background events"):
        build_pools(inputs, SMALL.model_copy(update={"reference_events": background}))
    with pytest.raises(EvaluationError, match="signal process 'wprime_xy' has"):
        build_pools(inputs, SMALL.model_copy(update={"signal_events": [10_000]}))
    with pytest.raises(EvaluationError, match=r"\['nope'\] are not among"):
        build_pools(inputs, SMALL.model_copy(update={"signal_processes": ["nope"]}))
    only_background = inputs.take(inputs.label == 0)
    with pytest.raises(EvaluationError, match="no signal events"):
        build_pools(only_background, SMALL)
    # Calibration alone needs no signal.
    assert build_pools(only_background, SMALL.model_copy(update={"signal_events": []})).signal == {}


def test_nplm_end_to_end_with_its_run_and_a_reuse(encoder: Encoder, tmp_path: Path) -> None:
    out = tmp_path / "nplm"
    summary = nplm(
        SMALL, encoder.embeddings, encoder.data, out, ray_config=RAY, tracking=encoder.tracking
    )
    toys = pq.read_table(out / TOYS)
    assert toys.num_rows == 2 * SMALL.toys * 3
    assert set(toys.column("kind").to_pylist()) == {"null", "signal"}
    assert np.isfinite(toys.column("t").to_numpy()).all()
    for feature_set in ("latent", "highlevel"):
        part = toys.filter(pc.equal(toys["feature_set"], feature_set))
        # Both feature sets see the same toys (the same events).
        assert (
            part.column("seed").to_pylist()
            == toys.filter(pc.equal(toys["feature_set"], "latent")).column("seed").to_pylist()
        )
        result = summary["results"][feature_set]
        assert result["calibration"]["toys"] == SMALL.toys
        assert result["calibration"]["dof"] > 0
        signal = result["signals"]["wprime_xy"]
        assert set(signal) == {"10", "40"}
        for entry in signal.values():
            for cell in entry["power"].values():
                assert cell["low"] <= cell["power"] <= cell["high"]
        assert_png(out / "plots" / f"nplm_t0_{feature_set}.png")
        assert_png(out / "plots" / f"nplm_t_{feature_set}.png")
    assert_png(out / "plots" / "nplm_power.png")
    assert summary["pools"]["reference"] == SMALL.reference_events
    assert not list(out.glob("partial-*")), "the partial results are removed once complete"

    run = mlflow.MlflowClient(encoder.tracking.uri).get_run(summary["mlflow"]["run_id"])
    assert run.data.tags["mlflow.parentRunId"] == encoder.parent_run_id
    assert run.data.params["nplm.reference_events"] == str(SMALL.reference_events)
    assert "nplm/dof/latent" in run.data.metrics
    assert "nplm/power_z2/highlevel/wprime_xy/n_40" in run.data.metrics

    again = nplm(
        SMALL, encoder.embeddings, encoder.data, out, ray_config=RAY, tracking=encoder.tracking
    )
    assert again == summary


def _shifted(table: pa.Table) -> pa.Table:
    """Signal events' latent vectors moved by +1.5 in their first two coordinates."""
    values = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    signal = table.column("label").to_numpy() == 1
    values[signal, :2] += 1.5
    column = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
    return table.set_column(table.schema.get_field_index("embedding"), "embedding", column)


def test_planted_signal_is_found_with_rising_power(prepared: Path, tmp_path: Path) -> None:
    embeddings = write_embeddings(prepared, tmp_path / "emb", edit=_shifted)
    config = SMALL.model_copy(
        update={"feature_sets": ["latent"], "toys": 16, "signal_events": [5, 20, 60]}
    )
    summary = nplm(config, embeddings, None, tmp_path / "out", ray_config=RAY)
    signal = summary["results"]["latent"]["signals"]["wprime_xy"]
    medians = [signal[n]["z_median"] for n in ("5", "20", "60")]
    powers = [signal[n]["power"]["2"]["power"] for n in ("5", "20", "60")]
    assert medians[0] < medians[1] < medians[2], medians
    assert powers[0] <= powers[1] <= powers[2], powers
    assert powers[2] >= 0.9, powers
    null = summary["results"]["latent"]["null_fraction_above"]["2"]
    assert null["fraction"] <= 0.25


def test_an_interrupted_run_resumes_its_toys(
    encoder: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    config = SMALL.model_copy(update={"feature_sets": ["latent"], "toys_per_task": 2})
    reference = nplm(config, encoder.embeddings, None, tmp_path / "clean", ray_config=RAY)

    written: list[Path] = []
    original = nplm_module.write_parquet_atomic

    def interrupting(table: pa.Table, path: Path) -> Any:
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        return original(table, path)

    monkeypatch.setattr(nplm_module, "write_parquet_atomic", interrupting)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        nplm(config, encoder.embeddings, None, out, ray_config=RAY)
    assert len(list(next(out.glob("partial-*")).glob("part-*.parquet"))) == 3
    monkeypatch.setattr(nplm_module, "write_parquet_atomic", original)
    with caplog.at_level("INFO", logger="distributed_clr.evaluate.nplm"):
        resumed = nplm(config, encoder.embeddings, None, out, ray_config=RAY)
    assert "resuming: 6 toys already finished" in caplog.text
    assert (
        pq.read_table(out / TOYS)
        .drop(["seconds"])
        .equals(pq.read_table(tmp_path / "clean" / TOYS).drop(["seconds"]))
    )
    assert (
        resumed["results"]["latent"]["calibration"]
        == (reference["results"]["latent"]["calibration"])
    )


def test_nan_embeddings_are_refused(prepared: Path, tmp_path: Path) -> None:
    def poison(table: pa.Table) -> pa.Table:
        values = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
        values[3, 1] = np.nan
        column = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        return table.set_column(table.schema.get_field_index("embedding"), "embedding", column)

    embeddings = write_embeddings(prepared, tmp_path / "emb", edit=poison)
    with pytest.raises(EvaluationError, match="feature set 'latent' holds 1 events with NaN"):
        nplm(SMALL.model_copy(update={"feature_sets": ["latent"]}), embeddings, None,
             tmp_path / "out", ray_config=RAY)  # fmt: skip


def test_cli_prints_the_power_table(
    encoder: Encoder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    argv = [
        "evaluate", "nplm", "--embeddings", str(encoder.embeddings), "--out", str(out),
        "--feature-set", "latent", "--toys", "4", "--method", "nn",
        "--set", "nplm.reference_events=150", "--set", "nplm.data_events=60",
        "--set", "nplm.signal_events=[40]", "--set", "nplm.nn_epochs=50",
        "--set", "tracking.enabled=false", "--set", "ray.num_cpus=4",
    ]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "NPLM (nn): reference 150 background events" in text
    assert "P(Z > 3) [68% CL]" in text
    assert "wprime_xy" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "nn"
    # debug preset: latent 8 -> 8 hidden -> 1
    assert summary["results"]["latent"]["nominal_dof"] == (8 + 1) * 8 + (8 + 1) * 1
    assert summary["results"]["latent"]["signals"]["wprime_xy"]["40"]["toys"] == 4
