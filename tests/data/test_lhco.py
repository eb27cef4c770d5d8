"""LHC Olympics import on files written in exactly the published layout."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distributed_clr.data import lhco
from distributed_clr.data.lhco import LHCOFormatError, import_lhco
from distributed_clr.storage.formats import RAW_SCHEMA, check_schema
from distributed_clr.storage.manifest import DatasetError, require_complete
from tests.data.physics import read_raw

PARTICLES = 700


def _events(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2100) zero-padded (pT, eta, phi) rows with float32-exact values, and 0/1 labels."""
    rng = np.random.default_rng(seed)
    values = np.zeros((n, 3 * PARTICLES))
    for i in range(n):
        k = int(rng.integers(1, PARTICLES + 1)) if i else PARTICLES  # one event fills all 700
        triples = np.stack(
            [
                rng.exponential(20.0, k) + 0.5,
                rng.normal(0.0, 1.5, k),
                rng.uniform(-np.pi, np.pi, k),
            ],
            axis=1,
        ).astype(np.float32)
        values[i, : 3 * k] = triples.ravel()
    return values, rng.integers(0, 2, n).astype(float)


def _write(path: Path, values: np.ndarray, labels: np.ndarray | None, storage: str) -> None:
    frame = pd.DataFrame(values if labels is None else np.column_stack([values, labels]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTables' performance warnings about wide tables
        frame.to_hdf(path, key="df", mode="w", format=storage)


def _expected(values: np.ndarray, i: int) -> np.ndarray:
    triples = values[i].reshape(-1, 3)
    return triples[triples[:, 0] > 0].astype(np.float32)


@pytest.mark.parametrize("storage", ["fixed", "table"])
def test_every_particle_is_reproduced_exactly(tmp_path: Path, storage: str) -> None:
    values, labels = _events(23)
    path = tmp_path / "events_anomalydetection.h5"
    _write(path, values, labels, storage)
    assert pd.read_hdf(path).shape == (23, 2101)  # the published layout

    out = tmp_path / "raw"
    manifest = import_lhco([path], out, events_per_shard=10, chunk_rows=4)
    assert [s.rows for s in manifest.shards] == [10, 10, 3]
    table = read_raw(out)
    check_schema(table.schema, RAW_SCHEMA, out)
    assert table.column("label").to_pylist() == labels.astype(int).tolist()
    assert manifest.summary["labels"]["signal"] == int(labels.sum())
    for i in range(len(values)):
        expected = _expected(values, i)
        for j, name in enumerate(("pt", "eta", "phi")):
            got = table.column(name)[i].values.to_numpy()
            assert np.array_equal(got, expected[:, j]), (i, name)
    assert table.column("pt")[0].values.to_numpy().size == PARTICLES


def test_black_box_files_have_unknown_labels(tmp_path: Path) -> None:
    values, _ = _events(5)
    path = tmp_path / "events_LHCO2020_BlackBox1.h5"
    _write(path, values, None, "fixed")
    import_lhco([path], tmp_path / "bb", process="lhco_bb1")
    table = read_raw(tmp_path / "bb")
    assert set(table.column("label").to_pylist()) == {-1}
    assert set(table.column("process").to_pylist()) == {"lhco_bb1"}


def test_label_override_and_several_files(tmp_path: Path) -> None:
    paths = []
    for k in range(2):
        values, labels = _events(4, seed=k)
        paths.append(tmp_path / f"f{k}.h5")
        _write(paths[-1], values, labels, "fixed")
    import_lhco(paths, tmp_path / "out", label=1, process="lhco_3prong")
    table = read_raw(tmp_path / "out")
    assert table.num_rows == 8
    assert set(table.column("label").to_pylist()) == {1}
    assert len(set(table.column("event_id").to_pylist())) == 8


def test_reads_in_bounded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values, labels = _events(30)
    path = tmp_path / "big.h5"
    _write(path, values, labels, "table")
    sizes: list[int] = []
    original = lhco._read_rows

    def spy(group: object, layout: object, start: int, stop: int) -> np.ndarray:
        sizes.append(stop - start)
        return original(group, layout, start, stop)  # type: ignore[arg-type]

    monkeypatch.setattr(lhco, "_read_rows", spy)
    import_lhco([path], tmp_path / "out", chunk_rows=7, events_per_shard=100)
    assert max(sizes) == 7
    assert sum(sizes) == 30


def _nan_at_row_3(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = values.copy()
    values[3, 4] = np.nan
    return values, labels


def _label_half(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = labels.copy()
    labels[2] = 0.5
    return values, labels


def _extra_column(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.column_stack([values, values[:, :1]]), labels


def _negative_pt(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = values.copy()
    values[4, 0] = -1.0
    return values, labels


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (_nan_at_row_3, r"row 3, column 4 is not finite"),
        (_label_half, r"row 2 has label 0\.5"),
        (_extra_column, r"2102 columns"),
        (_negative_pt, r"row 4 has a negative pT"),
    ],
)
def test_bad_files_are_named_with_the_row(
    tmp_path: Path,
    mutate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    pattern: str,
) -> None:
    values, labels = mutate(*_events(6))
    path = tmp_path / "bad.h5"
    _write(path, values, labels, "fixed")
    with pytest.raises(LHCOFormatError, match=rf"bad\.h5: {pattern}"):
        import_lhco([path], tmp_path / "out")
    # Nothing half-done passes as a dataset.
    with pytest.raises(DatasetError):
        require_complete(tmp_path / "out", "raw")


def test_not_an_hdf5_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.h5"
    path.write_text("not hdf5")
    with pytest.raises(LHCOFormatError, match=r"junk\.h5: not a readable HDF5 file"):
        import_lhco([path], tmp_path / "out")


def test_interrupted_import_resumes(tmp_path: Path) -> None:
    values, labels = _events(12)
    path = tmp_path / "f.h5"
    _write(path, values, labels, "fixed")
    out = tmp_path / "out"
    first = import_lhco([path], out, events_per_shard=5)
    digests = {s.file: s.sha256 for s in first.shards}
    (out / first.shards[1].file).unlink()
    second = import_lhco([path], out, events_per_shard=5)
    assert {s.file: s.sha256 for s in second.shards} == digests
