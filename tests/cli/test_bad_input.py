"""Bad input and damaged data, tried through the command line as a user would.

Every case asserts the exit code (2: bad input, nothing changed), that the one-line message names
the culprit (file, key, value), that no traceback is printed, and that nothing half-written is
left or marked complete.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distributed_clr.cli import main
from distributed_clr.physics.particles import Particles, to_arrow
from distributed_clr.storage.files import sha256_file
from distributed_clr.storage.manifest import Manifest, ShardRecord, read_manifest
from tests.evaluate.helpers import Encoder

Run = Callable[[list[str]], tuple[int, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``dclr ARGS``: (exit code, stderr + stdout); asserts that no traceback was printed and,
    on failure, that the error is one line and the results stream holds nothing else."""

    def call(argv: list[str]) -> tuple[int, str]:
        code = main(argv)
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err, captured.err
        if code:
            assert captured.out.strip() == "" or "problem" in captured.out, captured.out
            # Logs may precede it; the error itself is the one last line.
            lines = captured.err.strip().splitlines()
            assert lines[-1].startswith("dclr: "), captured.err
            assert sum(line.startswith("dclr: ") for line in lines) == 1, captured.err
        return code, captured.err + captured.out

    return call


def _raw(directory: Path, events: int = 3, *, pt: float = 1000.0) -> Path:
    """A complete raw dataset of ``events`` two-particle events."""
    counts = np.full(events, 2, dtype=np.int64)
    flat = np.tile([pt, pt / 2], events).astype(float)
    particles = Particles(flat, np.zeros_like(flat), np.zeros_like(flat), counts)
    table = to_arrow(particles, np.arange(events, dtype=np.int64), 0, "toy")
    return _dataset(directory, table, "raw")


def _dataset(directory: Path, table: pa.Table, kind: str, complete: bool = True) -> Path:
    directory.mkdir(parents=True)
    pq.write_table(table, directory / "shard-00000.parquet")
    record = ShardRecord(
        "shard-00000.parquet", table.num_rows, sha256_file(directory / "shard-00000.parquet")
    )
    summary = {"dataset": directory.name}
    manifest = Manifest(
        kind, {"toy": directory.name}, shards=[record], summary=summary, complete=complete
    )
    manifest.write(directory)
    return directory


def _not_complete(directory: Path) -> bool:
    """Nothing there, or a stage record that does not claim to be complete."""
    if not directory.exists():
        return True
    manifest = read_manifest(directory) if directory.is_dir() else None
    return manifest is None or not manifest.complete


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "remove":
        path.unlink()


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _first_shard(directory: Path) -> Path:
    return sorted(directory.glob("*.parquet"))[0]


# ------------------------------------------------------------------------------------------------
# configuration


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        (b"model: {latent_dim: 8}\n\xff\xfe bad\n", "is not UTF-8 text"),
        (b"model: {latent_dim: [\n", "is not valid YAML"),
        (b"train:\n  lr: 0.1\n", "'train.lr' was renamed to 'train.optimizer.lr'"),
        (b"- a list\n", "must hold a mapping"),
    ],
)
def test_a_bad_config_file_is_named(run: Run, tmp_path: Path, text: bytes, culprit: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(text)
    code, err = run(["config", "show", "--config", str(path)])
    assert code == 2
    assert culprit in err
    assert "bad.yaml" in err


def test_a_renamed_key_on_the_command_line(run: Run) -> None:
    code, err = run(["config", "show", "--set", "evaluate.fcn_epochs=3"])
    assert code == 2
    assert "'evaluate.fcn_epochs' was renamed to 'evaluate.fcn.epochs'" in err


# ------------------------------------------------------------------------------------------------
# output locations, checked before anything starts


@pytest.mark.parametrize("command", ["generate", "prepare", "import-lhco"])
def test_out_is_a_file(run: Run, tmp_path: Path, command: str) -> None:
    out = tmp_path / "taken.txt"
    out.write_text("keep me")
    raw = _raw(tmp_path / "raw")
    argv = {
        "generate": ["generate", "--events", "10", "--shards", "1", "--out", str(out)],
        "prepare": ["prepare", str(raw), "--out", str(out)],
        "import-lhco": ["import-lhco", str(raw / "shard-00000.parquet"), "--out", str(out)],
    }[command]
    code, err = run(argv)
    assert code == 2
    assert "taken.txt" in err
    assert out.read_text() == "keep me"


def test_out_cannot_be_written(run: Run, tmp_path: Path) -> None:
    out = Path("/proc/dclr-cannot-write-here")
    code, err = run(["generate", "--events", "10", "--shards", "1", "--out", str(out)])
    assert code == 2
    assert "cannot be written" in err
    assert str(out) in err


# ------------------------------------------------------------------------------------------------
# raw inputs of prepare


def test_a_file_given_as_a_dataset(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(b"x")
    code, err = run(["prepare", str(path), "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"{path} is a file, not a dataset directory" in err
    assert _not_complete(tmp_path / "out")


def test_a_missing_dataset(run: Run, tmp_path: Path) -> None:
    code, err = run(["prepare", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "absent does not exist" in err


def test_an_incomplete_dataset_says_how_to_finish_it(run: Run, tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw")
    manifest = read_manifest(raw)
    assert manifest is not None
    manifest.complete = False
    manifest.write(raw)
    code, err = run(["prepare", str(raw), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "is incomplete" in err
    assert "rerun the command that made it" in err


def test_a_dataset_of_the_wrong_kind(run: Run, prepared: Path, tmp_path: Path) -> None:
    code, err = run(["prepare", str(prepared), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "holds a 'dijet' dataset, expected 'raw'" in err


@pytest.mark.parametrize(
    ("how", "culprit"),
    [
        ("flip", "has sha256"),
        ("truncate", "not a readable Parquet file"),
        ("remove", "is missing"),
    ],
)
def test_a_damaged_raw_shard_is_refused_before_work(
    run: Run, tmp_path: Path, how: str, culprit: str
) -> None:
    raw = _raw(tmp_path / "raw", events=50)
    _damage(raw / "shard-00000.parquet", how)
    code, err = run(["prepare", str(raw), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "shard-00000.parquet" in err
    assert culprit in err
    assert _not_complete(tmp_path / "out")


def test_a_swapped_raw_shard(run: Run, tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw", events=5)
    other = _raw(tmp_path / "other", events=5, pt=1100.0)
    shutil.copy(other / "shard-00000.parquet", raw / "shard-00000.parquet")
    code, err = run(["prepare", str(raw), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "raw/shard-00000.parquet has sha256" in err


@pytest.mark.ray
def test_lists_of_different_lengths_name_the_event(
    run: Run, ray_session: None, tmp_path: Path
) -> None:
    pt = pa.array([[1000.0, 500.0], [900.0, 450.0]], pa.list_(pa.float32()))
    eta = pa.array([[0.0, 0.1], [0.0]], pa.list_(pa.float32()))
    table = pa.table(
        {
            "event_id": pa.array([7, 8], pa.int64()),
            "label": pa.array([0, 0], pa.int8()),
            "process": pa.array(["toy", "toy"]),
            "pt": pt,
            "eta": eta,
            "phi": pt,
        }
    )
    raw = _dataset(tmp_path / "raw", table, "raw")
    code, err = run(["prepare", str(raw), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "event_id 8" in err
    assert "2 pt, 1 eta and 2 phi values" in err
    assert _not_complete(tmp_path / "out")


@pytest.mark.ray
def test_an_infinite_eta_is_not_called_negative(
    run: Run, ray_session: None, tmp_path: Path
) -> None:
    counts = np.array([2], dtype=np.int64)
    particles = Particles(np.array([1000.0, 500.0]), np.array([-0.5, np.inf]), np.zeros(2), counts)
    raw = _dataset(tmp_path / "raw", to_arrow(particles, np.array([3]), 0, "toy"), "raw")
    code, err = run(["prepare", str(raw), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "event_id 3 has a non-finite eta (NaN or infinite): inf" in err


# ------------------------------------------------------------------------------------------------
# LHC Olympics import


def _lhco(path: Path, frame: pd.DataFrame) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame.to_hdf(path, key="df", mode="w")
    return path


def test_import_max_events_must_be_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _lhco(tmp_path / "f.h5", pd.DataFrame(np.zeros((2, 7))))
    with pytest.raises(SystemExit) as info:
        main(["import-lhco", str(path), "--out", str(tmp_path / "out"), "--max-events", "-3"])
    assert info.value.code == 2
    assert "must be a positive integer, got -3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_import_key_naming_a_dataset(run: Run, tmp_path: Path) -> None:
    path = _lhco(tmp_path / "f.h5", pd.DataFrame(np.zeros((2, 7))))
    with h5py.File(path, "a") as handle:
        handle["plain"] = np.zeros(3)
    code, err = run(["import-lhco", str(path), "--out", str(tmp_path / "out"), "--key", "plain"])
    assert code == 2
    assert "'plain' is an HDF5 dataset, not a pandas frame" in err
    assert _not_complete(tmp_path / "out")


def test_import_a_string_column(run: Run, tmp_path: Path) -> None:
    frame = pd.DataFrame(np.zeros((2, 7)))
    frame[7] = ["a", "b"]
    path = _lhco(tmp_path / "f.h5", frame)
    code, err = run(["import-lhco", str(path), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "an LHC Olympics file holds numbers only" in err
    assert "f.h5" in err


def test_import_a_missing_file(run: Run, tmp_path: Path) -> None:
    code, err = run(["import-lhco", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "no such file" in err
    assert "nope.h5" in err


# ------------------------------------------------------------------------------------------------
# pretrain, embed, evaluate on damaged or wrong inputs


@pytest.mark.parametrize("how", ["flip", "truncate", "remove", "swap"])
def test_pretrain_refuses_a_damaged_dataset_before_starting(
    run: Run, prepared: Path, tmp_path: Path, how: str
) -> None:
    data = _copy(prepared, tmp_path / "dijets")
    shards = sorted(data.glob("*.parquet"))
    if how == "swap":
        shutil.copy(shards[1], shards[0])
    else:
        _damage(shards[0], how)
    argv = ["pretrain", "--data", str(data), "--preset", "debug", "--run-name", "x"]
    argv += ["--set", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]
    argv += ["--set", f"ray.storage_path={tmp_path}/ray_results"]
    code, err = run(argv)
    assert code == 2
    assert shards[0].name in err
    assert not (tmp_path / "mlflow.db").exists()  # refused before MLflow, Ray or a model
    assert not (tmp_path / "ray_results").exists()


def test_pretrain_on_raw_events(run: Run, tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw")
    code, err = run(["pretrain", "--data", str(raw), "--preset", "debug"])
    assert code == 2
    assert "holds a 'raw' dataset, expected 'dijet' or 'objects'" in err


def test_pretrain_batch_larger_than_the_data(run: Run, prepared: Path, tmp_path: Path) -> None:
    argv = ["pretrain", "--data", str(prepared), "--preset", "debug", "--set"]
    argv += ["train.batch_size=100000", "--set", f"tracking.uri=sqlite:///{tmp_path}/m.db"]
    code, err = run(argv)
    assert code == 2
    assert "the train split has" in err
    assert "lower train.batch_size" in err


def test_pretrain_a_bad_run_name(run: Run, prepared: Path) -> None:
    code, err = run(["pretrain", "--data", str(prepared), "--run-name", "../escape"])
    assert code == 2
    assert "invalid run name '../escape'" in err


@pytest.mark.parametrize("broken", ["missing", "garbage"])
def test_embed_a_directory_that_is_not_a_checkpoint(
    run: Run, encoder: Encoder, tmp_path: Path, broken: str
) -> None:
    checkpoint = _copy(encoder.checkpoint, tmp_path / "checkpoint")
    if broken == "missing":
        (checkpoint / "state.pt").unlink()
    else:
        (checkpoint / "state.pt").write_bytes(b"not a torch file")
    out = tmp_path / "emb"
    argv = ["embed", "--checkpoint", str(checkpoint), "--data", str(encoder.data)]
    code, err = run([*argv, "--out", str(out)])
    assert code == 2
    assert "state.pt" in err
    assert "checkpoint" in err
    assert not out.exists()  # refused before Ray and before any output


def test_embed_out_is_a_file(run: Run, encoder: Encoder, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.write_text("keep")
    argv = ["embed", "--checkpoint", str(encoder.checkpoint), "--data", str(encoder.data)]
    code, err = run([*argv, "--out", str(out)])
    assert code == 2
    assert "taken is a file" in err
    assert out.read_text() == "keep"


@pytest.mark.ray
def test_embed_refuses_a_damaged_dataset(
    run: Run, ray_session: None, encoder: Encoder, tmp_path: Path
) -> None:
    data = _copy(encoder.data, tmp_path / "dijets")
    victim = _first_shard(data)
    _damage(victim, "flip")
    out = tmp_path / "emb"
    argv = ["embed", "--checkpoint", str(encoder.checkpoint), "--data", str(data)]
    code, err = run([*argv, "--out", str(out)])
    assert code == 2
    assert victim.name in err
    assert "has sha256" in err
    assert _not_complete(out)


def test_embed_an_unknown_mlflow_run(run: Run, encoder: Encoder, tmp_path: Path) -> None:
    argv = ["embed", "--run", "0123456789abcdef", "--data", str(encoder.data)]
    argv += ["--out", str(tmp_path / "emb"), "--set", f"tracking.uri={encoder.tracking.uri}"]
    code, err = run(argv)
    assert code == 2
    assert "no MLflow run 0123456789abcdef" in err


def _evaluate(encoder: Encoder, out: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "classify",
        "--embeddings",
        str(encoder.embeddings),
        "--out",
        str(out),
        "--preset",
        "debug",
        "--set",
        "tracking.enabled=false",
        "--set",
        "evaluate.trans_bc.enabled=false",
        *extra,
    ]


def test_evaluate_out_is_a_file_fails_before_computing(
    run: Run, encoder: Encoder, tmp_path: Path
) -> None:
    out = tmp_path / "result"
    out.write_text("keep")
    code, err = run(_evaluate(encoder, out, "--feature-set", "latent"))
    assert code == 2
    assert "result is a file" in err
    assert out.read_text() == "keep"


def test_evaluate_data_of_the_wrong_kind_even_for_the_latent_space(
    run: Run, encoder: Encoder, tmp_path: Path
) -> None:
    raw = _raw(tmp_path / "raw")
    code, err = run(
        _evaluate(encoder, tmp_path / "out", "--data", str(raw), "--feature-set", "latent")
    )
    assert code == 2
    assert "holds a 'raw' dataset, expected 'dijet' or 'objects'" in err
    assert not (tmp_path / "out" / "summary.json").exists()


def test_evaluate_embeddings_of_the_wrong_kind(run: Run, encoder: Encoder, tmp_path: Path) -> None:
    argv = _evaluate(encoder, tmp_path / "out", "--feature-set", "latent")
    argv[argv.index(str(encoder.embeddings))] = str(encoder.data)
    code, err = run(argv)
    assert code == 2
    assert "expected 'embedding'" in err


def test_evaluate_refuses_a_damaged_embedding_shard(
    run: Run, encoder: Encoder, tmp_path: Path
) -> None:
    embeddings = _copy(encoder.embeddings, tmp_path / "embeddings")
    victim = _first_shard(embeddings)
    _damage(victim, "flip")
    argv = _evaluate(encoder, tmp_path / "out", "--feature-set", "latent")
    argv[argv.index(str(encoder.embeddings))] = str(embeddings)
    code, err = run(argv)
    assert code == 2
    assert victim.name in err
    assert not (tmp_path / "out" / "summary.json").exists()
    assert _not_complete(tmp_path / "out")


def test_evaluate_refuses_a_damaged_data_shard(run: Run, encoder: Encoder, tmp_path: Path) -> None:
    data = _copy(encoder.data, tmp_path / "dijets")
    victim = _first_shard(data)
    _damage(victim, "truncate")
    code, err = run(
        _evaluate(encoder, tmp_path / "out", "--data", str(data), "--feature-set", "highlevel")
    )
    assert code == 2
    assert victim.name in err
    assert not (tmp_path / "out" / "summary.json").exists()


# ------------------------------------------------------------------------------------------------
# dclr verify


def test_verify_passes_a_good_dataset_and_lists_what_is_wrong(
    run: Run, prepared: Path, tmp_path: Path
) -> None:
    code, out = run(["verify", str(prepared)])
    assert code == 0
    assert "OK (dijet" in out
    data = _copy(prepared, tmp_path / "dijets")
    shards = sorted(data.glob("*.parquet"))
    _damage(shards[0], "flip")
    _damage(shards[1], "remove")
    code, out = run(["verify", str(data), str(tmp_path / "absent")])
    assert code == 2
    assert f"{data}: 2 problem(s)" in out
    assert shards[0].name in out
    assert f"shard {shards[1]} is missing" in out
    assert "absent does not exist" in out
    assert json.loads((data / "manifest.json").read_text())["complete"]  # verify changes nothing


def test_generate_objects_refuses_unknown_cocktail_processes(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "objects"
    args = ["generate-objects", "--out", str(out), "--set", "objects.fractions={higgs: 1.0}"]
    code, err = run(args)
    assert code == 2
    assert "fractions name unknown processes ['higgs']" in err
    assert "w_lnu, qcd, z_ll, ttbar" in err
    assert not out.exists()


def test_combining_datasets_that_are_not_events_is_refused(run: Run, tmp_path: Path) -> None:
    raw, other = _raw(tmp_path / "raw"), _raw(tmp_path / "other")
    code, err = run(["combine", str(raw), str(other), "--out", str(tmp_path / "both")])
    assert code == 2
    assert "expected 'dijet' or 'objects'" in err
    assert not (tmp_path / "both").exists()
