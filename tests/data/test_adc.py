"""``dclr import-adc``: fixtures written with h5py in the ADC2021 layout are reproduced value by
value, in bounded memory, and malformed files are refused naming file, row and slot."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import pyarrow.dataset as pads
import pytest

from distributed_clr.cli import main
from distributed_clr.data import adc
from distributed_clr.data.adc import OBJECTS, ADCFormatError, import_adc
from distributed_clr.storage.formats import object_schema
from distributed_clr.storage.manifest import require_complete

NAMES = [b"Pt", b"Eta", b"Phi", b"Class"]
CLASSES = [b"MET_class_1", b"Four_Ele_class_2", b"Four_Mu_class_3", b"Ten_Jet_class_4"]


def adc_events(n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """Valid events in the ADC2021 layout: MET, then up to 4 e, 4 mu and 10 jets per block,
    pT-ordered and zero-padded."""
    rng = np.random.default_rng(seed)
    values = np.zeros((n, 19, 4), dtype=np.float32)
    values[:, 0, 0] = rng.exponential(30.0, n) + 0.1
    values[:, 0, 2] = rng.uniform(-np.pi, np.pi, n)
    values[:, 0, 3] = 1
    for start, stop, code in ((1, 5, 2), (5, 9, 3), (9, 19, 4)):
        size = stop - start
        count = rng.integers(0, size + 1, n)
        pt = -np.sort(-(rng.exponential(40.0, (n, size)) + 15.0), axis=1)
        occupied = np.arange(size)[None, :] < count[:, None]
        block = values[:, start:stop]
        block[:, :, 0] = np.where(occupied, pt, 0)
        block[:, :, 1] = np.where(occupied, rng.uniform(-4, 4, (n, size)), 0)
        block[:, :, 2] = np.where(occupied, rng.uniform(-np.pi, np.pi, (n, size)), 0)
        block[:, :, 3] = np.where(occupied, code, 0)
    return values


def write_adc(path: Path, values: npt.NDArray[Any], **extra: npt.NDArray[Any]) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("Particles", data=values)
        handle.create_dataset("Particles_Names", data=np.array(NAMES))
        handle.create_dataset("Particles_Classes", data=np.array(CLASSES))
        for name, data in extra.items():
            handle.create_dataset(name, data=data)
    return path


def _read(out: Path) -> Any:
    paths = sorted(str(p) for p in out.glob("objects-*.parquet"))
    return pads.dataset(paths, format="parquet").to_table().sort_by("event_id")


def test_import_reproduces_every_value(tmp_path: Path) -> None:
    values = adc_events(2_500)
    ids = np.arange(2_500, dtype=np.int64) % 3
    source = write_adc(tmp_path / "background_for_training.h5", values, ProcessID=ids)
    out = tmp_path / "objects"
    manifest = import_adc(
        source, out, process="cocktail", label=0, process_dataset="ProcessID",
        events_per_shard=1_000, chunk_rows=300,
    )  # fmt: skip
    assert manifest.kind == OBJECTS
    assert len(manifest.shards) == 3
    assert require_complete(out, OBJECTS).rows == 2_500
    table = _read(out)
    assert table.schema.equals(object_schema())
    np.testing.assert_array_equal(table["event_id"].to_numpy(), np.arange(2_500))
    for column, index in (("pt", 0), ("eta", 1), ("phi", 2), ("object_class", 3)):
        stored = np.stack(table[column].to_numpy(zero_copy_only=False))
        np.testing.assert_array_equal(stored, values[:, :, index].astype(stored.dtype))
    np.testing.assert_array_equal(table["process_id"].to_numpy(), ids)
    assert set(table["label"].to_pylist()) == {0}
    splits = manifest.summary["splits"]
    assert sum(splits.values()) == 2_500
    assert 0.5 < splits["train"] / 2_500 < 0.7
    # Same bytes on a rerun elsewhere: splits depend on the event, not on the shard layout.
    again = import_adc(
        source, tmp_path / "again", process="cocktail", label=0, process_dataset="ProcessID",
        events_per_shard=700, chunk_rows=700,
    )  # fmt: skip
    assert again.summary["splits"] == splits
    assert _read(tmp_path / "again").equals(table)


def test_reading_is_chunked_and_memory_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = adc_events(40_000, seed=1)
    source = write_adc(tmp_path / "big.h5", values)
    del values
    chunks: list[int] = []
    original = adc.check_objects

    def spy(rows: Any, path: Path, first: int) -> Any:
        chunks.append(len(rows))
        return original(rows, path, first)

    monkeypatch.setattr(adc, "check_objects", spy)
    tracemalloc.start()
    try:
        import_adc(
            source, tmp_path / "out", process="bkg", label=0,
            events_per_shard=4_000, chunk_rows=2_000,
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(chunks) == 2_000
    assert sum(chunks) == 40_000
    whole = 40_000 * 19 * 4 * 8  # the file read at once, as float64 checks would see it
    assert peak < whole / 4, f"peak numpy memory {peak / 2**20:.1f} MiB"


def _broken(edit: Any) -> npt.NDArray[np.float32]:
    values = adc_events(20, seed=2)
    values[7, 9:, :] = 0  # no jets in event 7
    values[7, 1:5, :] = 0
    values[7, 1, :] = [50.0, 0.5, 0.1, 2]
    values[7, 2, :] = [30.0, 0.2, 0.3, 2]
    edit(values)
    return values


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda v: v.__setitem__((7, 2, 1), np.nan), r"row 7, slot 2 \(electron 2\): NaN"),
        (lambda v: v.__setitem__((7, 1, 0), -5.0), r"row 7, slot 1 \(electron 1\): negative pT"),
        (
            lambda v: v.__setitem__((7, 2, 3), 3),
            r"row 7, slot 2 \(electron 2\): class 3, expected 2",
        ),
        (lambda v: v.__setitem__((7, 9, 1), 1.0), r"row 7, slot 9 \(jet 1\): an empty slot"),
        (lambda v: v.__setitem__((7, 0, 1), 0.3), r"row 7, slot 0 \(MET\): MET with eta"),
        (
            lambda v: v.__setitem__((7, 4), [10.0, 0.0, 0.0, 2]),
            r"row 7, slot 4 \(electron 4\): occupied after an empty electron slot",
        ),
        (
            lambda v: v.__setitem__((7, 2, 0), 80.0),
            r"row 7, slot 2 \(electron 2\): pT 80 above the previous electron's 50",
        ),
    ],
)
def test_malformed_values_name_file_row_and_slot(tmp_path: Path, edit: Any, message: str) -> None:
    source = write_adc(tmp_path / "bad.h5", _broken(edit))
    with pytest.raises(ADCFormatError, match=message) as caught:
        import_adc(source, tmp_path / "out", process="x", label=1, chunk_rows=5)
    assert str(source) in str(caught.value)
    assert not (tmp_path / "out" / "objects-00000.parquet").exists()


def test_malformed_files_are_refused(tmp_path: Path) -> None:
    wrong_shape = write_adc(tmp_path / "shape.h5", np.zeros((5, 19, 3), np.float32))
    with pytest.raises(ADCFormatError, match=r"shape \(5, 19, 3\), expected \(events, 19, 4\)"):
        import_adc(wrong_shape, tmp_path / "a", process="x", label=0)
    missing = tmp_path / "missing.h5"
    with h5py.File(missing, "w") as handle:
        handle.create_dataset("Other", data=np.zeros(3))
    with pytest.raises(ADCFormatError, match="no dataset 'Particles'"):
        import_adc(missing, tmp_path / "b", process="x", label=0)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(ADCFormatError, match="not a readable HDF5 file"):
        import_adc(text, tmp_path / "c", process="x", label=0)
    good = write_adc(tmp_path / "good.h5", adc_events(10), ProcessID=np.zeros(9, np.int64))
    with pytest.raises(ADCFormatError, match=r"process ids 'ProcessID' must be integers"):
        import_adc(good, tmp_path / "d", process="x", label=0, process_dataset="ProcessID")
    with pytest.raises(ADCFormatError, match="label must be 0, 1 or -1"):
        import_adc(good, tmp_path / "e", process="x", label=2)
    with pytest.raises(ADCFormatError, match="no such file"):
        import_adc(tmp_path / "nope.h5", tmp_path / "f", process="x", label=0)


def test_cli_imports_a_signal_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_adc(tmp_path / "Ato4l_lepFilter_13TeV.h5", adc_events(300, seed=3))
    out = tmp_path / "ato4l"
    argv = ["import-adc", str(source), "--out", str(out), "--process", "Ato4l", "--label", "1"]
    assert main(argv) == 0
    assert "300 object-level Ato4l events (label 1)" in capsys.readouterr().out
    table = _read(out)
    assert set(table["label"].to_pylist()) == {1}
    assert set(table["process_id"].to_pylist()) == {-1}
    assert main(["import-adc", str(source), "--out", str(out), "--process", "Ato4l",
                 "--label", "0"]) == 2  # fmt: skip


def cocktail_events(n: int, seed: int = 0) -> tuple[npt.NDArray[np.float32], npt.NDArray[Any]]:
    """Events of three toy SM-like processes in the ADC2021 layout, and their process ids:
    0 one lepton with MET (W-like), 1 two same-flavour leptons (Z-like), 2 jets only with a
    soft lepton (QCD-like); each with a few jets. The processes differ in their objects, not
    in one variable, so a linear probe on a representation can tell them apart."""
    rng = np.random.default_rng(seed)
    values = adc_events(n, seed)
    ids = rng.integers(0, 3, n)
    leptons = values[:, 1:9]
    leptons[...] = 0
    flavour = rng.integers(0, 2, n)  # electron or muon block
    first = 1 + 4 * flavour
    row = np.arange(n)
    hard = rng.exponential(20.0, n) + 25.0
    soft = rng.exponential(10.0, n) + 15.0
    lead = np.where(ids == 2, rng.exponential(3.0, n) + 23.0, np.maximum(hard, soft))
    second = np.minimum(hard, soft)
    for slot, pt, use in ((first, lead, np.ones(n, bool)), (first + 1, second, ids == 1)):
        values[row[use], slot[use], 0] = pt[use]
        values[row[use], slot[use], 1] = rng.uniform(-2.4, 2.4, n)[use]
        values[row[use], slot[use], 2] = rng.uniform(-np.pi, np.pi, n)[use]
        values[row[use], slot[use], 3] = 2 + flavour[use]
    values[:, 0, 0] = np.where(ids == 0, rng.exponential(40.0, n) + 20.0, rng.exponential(8.0, n))
    values[:, 0, 0] += 0.1
    return values, ids


def four_lepton_events(n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """A toy signal in the ADC2021 layout: two electrons and two muons per event, and jets."""
    rng = np.random.default_rng(seed)
    values = adc_events(n, seed)
    values[:, 1:9] = 0
    for first, code in ((1, 2), (5, 3)):
        values[:, first : first + 2, 0] = -np.sort(-(rng.exponential(30, (n, 2)) + 20), axis=1)
        values[:, first : first + 2, 1] = rng.uniform(-2.4, 2.4, (n, 2))
        values[:, first : first + 2, 2] = rng.uniform(-np.pi, np.pi, (n, 2))
        values[:, first : first + 2, 3] = code
    return values
