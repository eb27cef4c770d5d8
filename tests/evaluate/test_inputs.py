"""Evaluation inputs: the join of embeddings to prepared dijets, its checks, the label gate."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest

from distributed_clr.evaluate.features import feature_matrix
from distributed_clr.evaluate.inputs import (
    EvaluationInputs,
    labelled,
    load_inputs,
    match_keys,
    needs_data,
)
from distributed_clr.storage.files import write_parquet_atomic
from distributed_clr.storage.formats import EMBEDDING_KEYS, embedding_schema
from distributed_clr.storage.manifest import DatasetError, Manifest, ShardRecord
from distributed_clr.storage.reader import column_to_numpy, shard_paths

DIM = 4


def prepared_keys(data: Path) -> pa.Table:
    """The embedding key columns of every prepared event, in shard order."""
    paths = [str(p) for p in shard_paths(data, "dijet")]
    return pads.dataset(paths, format="parquet").to_table(columns=list(EMBEDDING_KEYS))


def write_embeddings(
    data: Path,
    out: Path,
    *,
    edit: Callable[[pa.Table], pa.Table] | None = None,
    shards: int = 2,
    seed: int = 0,
) -> Path:
    """A synthetic embedding dataset of ``data``'s events (random vectors, rows shuffled), as
    ``dclr embed`` would lay it out, without a model; ``edit`` may change the table first."""
    keys = prepared_keys(data)
    rng = np.random.default_rng(seed)
    keys = keys.take(pa.array(rng.permutation(keys.num_rows)))
    values = rng.normal(size=(keys.num_rows, DIM)).astype(np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), DIM)
    table = pa.Table.from_arrays(
        [*(keys.column(name) for name in EMBEDDING_KEYS), embedding],
        schema=embedding_schema(DIM),
    )
    if edit is not None:
        table = edit(table)
    manifest = Manifest(kind="embedding", config={"checkpoint": None, "synthetic": True})
    bounds = np.linspace(0, table.num_rows, shards + 1).astype(int)
    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        name = f"embedding-{index:05d}.parquet"
        part = table.slice(int(start), int(stop - start))
        manifest.shards.append(
            ShardRecord(name, part.num_rows, write_parquet_atomic(part, out / name))
        )
    counts = pc.value_counts(table.column("split")).to_pylist()
    manifest.summary = {
        "events": table.num_rows,
        "dim": DIM,
        "splits": {str(c["values"]): int(c["counts"]) for c in counts},
    }
    manifest.complete = True
    manifest.write(out)
    return out


def _sorted_by_key(table: pa.Table) -> pa.Table:
    return table.sort_by([("dataset", "ascending"), ("event_id", "ascending")])


@pytest.mark.ray
def test_join_gives_each_embedding_its_own_event(prepared: Path, tmp_path: Path) -> None:
    embeddings = write_embeddings(prepared, tmp_path / "emb")
    sets = ["latent", "event", "highlevel", "constituents"]
    inputs = load_inputs(embeddings, prepared, sets, ["train", "test"])

    paths = [str(p) for p in shard_paths(prepared, "dijet")]
    data = pads.dataset(paths, format="parquet").to_table(
        filter=pads.field("split").isin(["train", "test"])
    )
    assert len(inputs) == data.num_rows
    assert set(np.unique(inputs.split)) == {"train", "test"}
    # Put both in key order and compare every feature set to the one computed from the data.
    order = np.lexsort((inputs.event_id, inputs.dataset.astype(str)))
    expected = _sorted_by_key(data)
    np.testing.assert_array_equal(inputs.event_id[order], column_to_numpy(expected["event_id"]))
    np.testing.assert_array_equal(inputs.label[order], column_to_numpy(expected["label"]))
    np.testing.assert_array_equal(
        inputs.mjj[order], column_to_numpy(expected["mjj"]).astype(np.float64)
    )
    for name in ("event", "highlevel"):
        np.testing.assert_array_equal(
            inputs.features[name][order],
            feature_matrix(expected, name),
        )
    constituents = inputs.features["constituents"][order]
    assert constituents.shape == (data.num_rows, 2, 16, 3)
    np.testing.assert_array_equal(
        constituents[..., 0].reshape(data.num_rows, -1), column_to_numpy(expected["pt"])
    )
    # The latent vectors stay with their own events (the embeddings were shuffled).
    emb_paths = [str(p) for p in shard_paths(embeddings, "embedding")]
    emb = _sorted_by_key(
        pads.dataset(emb_paths, format="parquet").to_table(
            filter=pads.field("split").isin(["train", "test"])
        )
    )
    np.testing.assert_array_equal(
        inputs.features["latent"][order], column_to_numpy(emb["embedding"])
    )
    # Shard order is kept: the same call gives the same rows in the same order.
    again = load_inputs(embeddings, prepared, ["highlevel"], ["train", "test"])
    np.testing.assert_array_equal(again.event_id, inputs.event_id)
    np.testing.assert_array_equal(again.features["highlevel"], inputs.features["highlevel"])


def _replace(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(
        index, table.schema.field(name), pa.array(values, table.schema.field(name).type)
    )


def _shift_ids(table: pa.Table) -> pa.Table:
    ids = column_to_numpy(table["event_id"]).copy()
    ids[:3] += 10**15
    return _replace(table, "event_id", ids)


def _shift_mjj(table: pa.Table) -> pa.Table:
    mjj = column_to_numpy(table["mjj"]).copy()
    mjj[5] += 1.0
    return _replace(table, "mjj", mjj)


def _flip_label(table: pa.Table) -> pa.Table:
    labels = column_to_numpy(table["label"]).copy()
    labels[7] = 1 - labels[7]
    return _replace(table, "label", labels)


def _drop_rows(table: pa.Table) -> pa.Table:
    return table.slice(4)


def _duplicate(table: pa.Table) -> pa.Table:
    return pa.concat_tables([table, table.slice(0, 1)])


@pytest.mark.ray
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_shift_ids, r"3 of \d+ embedded events are not in .*made from other data"),
        (_drop_rows, r"have no embedding in .*made from other data"),
        (_shift_mjj, r"'mjj' differs .* for 1 events"),
        (_flip_label, r"'label' differs .* for 1 events"),
        (_duplicate, r"duplicate event keys"),
    ],
)
def test_embeddings_of_other_data_are_refused(
    prepared: Path, tmp_path: Path, edit: Callable[[pa.Table], pa.Table], match: str
) -> None:
    embeddings = write_embeddings(prepared, tmp_path / "emb", edit=edit, shards=1)
    with pytest.raises(DatasetError, match=match):
        load_inputs(embeddings, prepared, ["highlevel"])


@pytest.mark.ray
def test_latent_needs_no_data_but_other_sets_do(prepared: Path, tmp_path: Path) -> None:
    embeddings = write_embeddings(prepared, tmp_path / "emb")
    inputs = load_inputs(embeddings, None, ["latent"], ["test"])
    assert set(inputs.split) == {"test"}
    assert inputs.features["latent"].shape == (len(inputs), DIM)
    assert needs_data(["latent", "highlevel"])
    assert not needs_data(["latent"])
    with pytest.raises(ValueError, match="--data"):
        load_inputs(embeddings, None, ["latent", "event"])
    with pytest.raises(ValueError, match="unknown feature set"):
        load_inputs(embeddings, prepared, ["jets"])
    with pytest.raises(ValueError, match="unknown split"):
        load_inputs(embeddings, prepared, ["latent"], ["training"])


@pytest.mark.ray
def test_a_split_the_embeddings_lack_is_an_error(prepared: Path, tmp_path: Path) -> None:
    def only_test(table: pa.Table) -> pa.Table:
        return table.filter(pc.equal(table["split"], "test"))

    embeddings = write_embeddings(prepared, tmp_path / "emb", edit=only_test)
    only = load_inputs(embeddings, prepared, ["highlevel"], ["test"])
    assert len(only) > 0
    # Without a choice of splits, the data is read for the splits the embeddings hold.
    every = load_inputs(embeddings, prepared, ["highlevel"])
    np.testing.assert_array_equal(every.event_id, only.event_id)
    with pytest.raises(DatasetError, match=r"no events of split\(s\) train .*holds: test"):
        load_inputs(embeddings, prepared, ["highlevel"], ["train", "test"])


# ------------------------------------------------------------------------------------------------
# the label gate (no data needed)


def toy_inputs(labels: list[int], splits: list[str]) -> EvaluationInputs:
    n = len(labels)
    return EvaluationInputs(
        event_id=np.arange(n, dtype=np.int64),
        dataset_code=np.zeros(n, dtype=np.int32),
        dataset_names=["toy"],
        label=np.asarray(labels, dtype=np.int8),
        process=np.where(np.asarray(labels) == 1, "wprime_xy", "qcd_dijet").astype(object),
        split=np.asarray(splits),
        fold=(np.arange(n) % 5).astype(np.int8),
        mjj=np.linspace(3000.0, 4000.0, n),
        features={"latent": np.arange(2 * n, dtype=np.float32).reshape(n, 2)},
    )


def test_labelled_leaves_out_unknown_labels_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    inputs = toy_inputs([0, 1, -1, 0, 1, -1, 1], ["train"] * 6 + ["test"])
    with caplog.at_level(logging.WARNING, logger="distributed_clr.evaluate.inputs"):
        train = labelled(inputs, "train", "the classifier test")
    assert train.label.tolist() == [0, 1, 0, 1]
    assert train.event_id.tolist() == [0, 1, 3, 4]
    np.testing.assert_array_equal(train.features["latent"], inputs.features["latent"][[0, 1, 3, 4]])
    assert train.excluded_unlabelled == 2
    assert "2 of 6 events of split 'train' have label -1" in caplog.text
    assert "the classifier test" in caplog.text
    assert train.dataset.tolist() == ["toy"] * 4
    keys = train.keys_table()
    assert keys.column_names == ["event_id", "dataset", "label", "split", "fold"]


def test_labelled_refuses_bad_or_one_sided_labels() -> None:
    with pytest.raises(ValueError, match=r"labels \[2\]"):
        labelled(toy_inputs([0, 1, 2], ["train"] * 3), "train", "x")
    with pytest.raises(ValueError, match=r"0 background and 2 signal .*1 unlabelled left out"):
        labelled(toy_inputs([1, 1, -1], ["train"] * 3), "train", "x")
    with pytest.raises(ValueError, match="0 background and 0 signal"):
        labelled(toy_inputs([0, 1], ["train"] * 2), "test", "x")


def test_match_keys_by_dataset_and_event_id() -> None:
    left_code = np.array([1, 0, 1, 2], dtype=np.int32)
    left_id = np.array([5, 5, 7, 1], dtype=np.int64)
    right_code = np.array([0, 1, 1, 0], dtype=np.int32)
    right_id = np.array([5, 7, 5, 9], dtype=np.int64)
    order = np.lexsort((right_id, right_code)).astype(np.int64)
    rows, found = match_keys(left_code, left_id, right_code, right_id, order)
    assert found.tolist() == [True, True, True, False]
    assert rows[:3].tolist() == [2, 0, 1]


@pytest.mark.ray
def test_reading_on_threads_gives_what_one_thread_gives(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards read and matrices assembled on several threads equal a one-thread read, in order."""
    import distributed_clr.evaluate.inputs as inputs_module
    import distributed_clr.storage.parallel as parallel

    embeddings = write_embeddings(prepared, tmp_path / "emb", shards=3)
    sets = ["latent", "event", "highlevel", "constituents"]
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 1)
    monkeypatch.setattr(inputs_module, "usable_cpus", lambda: 1)
    one = load_inputs(embeddings, prepared, sets)
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 3)
    monkeypatch.setattr(inputs_module, "usable_cpus", lambda: 3)
    many = load_inputs(embeddings, prepared, sets)
    for name in ("event_id", "dataset_code", "label", "process", "split", "fold", "mjj"):
        np.testing.assert_array_equal(getattr(many, name), getattr(one, name))
    for name in sets:
        np.testing.assert_array_equal(many.features[name], one.features[name])
    assert many.process.dtype == object
    assert isinstance(many.process[0], str)


def test_take_returns_rows_in_order_without_a_copy_when_nothing_moves() -> None:
    from distributed_clr.evaluate.inputs import _take

    matrix = np.arange(40, dtype=np.float32).reshape(10, 4)
    assert _take(matrix, np.arange(10)) is matrix
    rows = np.array([3, 1, 1, 9, 0, 2, 8], dtype=np.int64)
    np.testing.assert_array_equal(_take(matrix, rows), matrix[rows])
    np.testing.assert_array_equal(_take(matrix, np.arange(5)), matrix[:5])
