"""The stage record: resume a dataset, reuse a finished result, refuse another configuration."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from distributed_clr.storage.files import write_parquet_atomic
from distributed_clr.storage.manifest import (
    DatasetError,
    Manifest,
    ShardRecord,
    finish,
    publish,
    read_manifest,
    resume_or_start,
    reuse_or_run,
    staging_area,
)


def _dataset(directory: Path, config: dict[str, int]) -> Manifest:
    manifest = resume_or_start(directory, "raw", config)
    for i in range(2):
        name = f"shard-{i}.parquet"
        digest = write_parquet_atomic(pa.table({"x": [i, i + 1]}), directory / name)
        manifest.shards.append(ShardRecord(name, 2, digest))
    manifest.complete = True
    manifest.write(directory)
    return manifest


def test_resume_keeps_a_verified_dataset_complete_and_drops_a_damaged_shard(
    tmp_path: Path,
) -> None:
    _dataset(tmp_path / "d", {"a": 1})
    again = resume_or_start(tmp_path / "d", "raw", {"a": 1})
    assert again.complete
    assert len(again.shards) == 2
    (tmp_path / "d" / "shard-1.parquet").write_bytes(b"broken")
    damaged = resume_or_start(tmp_path / "d", "raw", {"a": 1})
    assert not damaged.complete
    assert [s.file for s in damaged.shards] == ["shard-0.parquet"]
    with pytest.raises(DatasetError, match="different configuration"):
        resume_or_start(tmp_path / "d", "raw", {"a": 2})


def test_reuse_or_run_reuses_the_same_identity_and_replaces_another(tmp_path: Path) -> None:
    calls: list[int] = []

    def work(value: int) -> dict[str, int]:
        calls.append(value)
        return {"value": value}

    out = tmp_path / "result"
    assert reuse_or_run(out, "evaluation", {"k": 1}, lambda: work(1)) == {"value": 1}
    assert reuse_or_run(out, "evaluation", {"k": 1}, lambda: work(2)) == {"value": 1}
    assert calls == [1]
    assert reuse_or_run(out, "evaluation", {"k": 2}, lambda: work(3)) == {"value": 3}
    assert calls == [1, 3]
    (out / "manifest.json").write_text("{not json")
    assert reuse_or_run(out, "evaluation", {"k": 2}, lambda: work(4)) == {"value": 4}


def test_thread_map_keeps_order_and_raises_an_items_error() -> None:
    import time

    from distributed_clr.storage.parallel import thread_map

    def slow_square(n: int) -> int:
        time.sleep(0.01 * (5 - n % 5))  # later items finish first
        return n * n

    assert thread_map(slow_square, list(range(12)), threads=4) == [n * n for n in range(12)]
    assert thread_map(slow_square, [], threads=4) == []
    assert thread_map(slow_square, [3], threads=1) == [9]

    def fail_on_seven(n: int) -> int:
        if n == 7:
            raise ValueError("item 7")
        return n

    with pytest.raises(ValueError, match="item 7"):
        thread_map(fail_on_seven, list(range(10)), threads=3)


def test_map_shards_reads_what_the_stream_reads(tmp_path: Path) -> None:
    """Every shard's rows of the chosen splits, converted, in shard order; empty shards skipped."""
    from distributed_clr.storage.reader import iter_tables, map_shards

    manifest = Manifest(kind="raw", config={})
    splits = [["train", "val"], ["test", "test"], ["val", "train"]]
    for i, split in enumerate(splits):
        name = f"shard-{i}.parquet"
        table = pa.table({"x": [10 * i, 10 * i + 1], "split": split})
        manifest.shards.append(ShardRecord(name, 2, write_parquet_atomic(table, tmp_path / name)))
    manifest.complete = True
    manifest.write(tmp_path)

    def xs(index: int, table: pa.Table) -> list[int]:
        return [index, *table.column("x").to_pylist()]

    got = map_shards(tmp_path, "raw", xs, splits=["train", "val"], columns=["x"], threads=3)
    assert got == [[0, 0, 1], [2, 20, 21]]  # shard 1 holds only test events
    tables = iter_tables(tmp_path, "raw", splits=["train", "val"])
    streamed = [x for table in tables for x in table.column("x").to_pylist()]
    assert [x for part in got for x in part[1:]] == streamed
    with pytest.raises(DatasetError, match="lacks column"):
        map_shards(tmp_path, "raw", xs, columns=["nope"])


def test_string_columns_become_object_arrays_of_their_values() -> None:
    from distributed_clr.storage.reader import column_to_numpy

    column = pa.chunked_array([pa.array(["qcd", "wprime", "qcd"]), pa.array(["test"])])
    values = column_to_numpy(column)
    assert values.dtype == object
    assert values.tolist() == ["qcd", "wprime", "qcd", "test"]
    assert column_to_numpy(pa.array([], pa.string())).tolist() == []
    assert column_to_numpy(pa.array(["a", None])).tolist() == ["a", None]


def test_manifest_rewrites_are_spaced_by_what_they_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``publish`` rewrites the record only once the time since the last write is
    ``WRITE_SPACING`` times what that write took (a driver's time on the record stays a small
    share however many shards a job has); ``finish`` writes whatever is pending."""
    from distributed_clr.storage import manifest as manifest_module

    out = tmp_path / "ds"
    record = resume_or_start(out, "raw", {"x": 1})
    staging = staging_area(out)
    for name in ("a.parquet", "b.parquet"):
        (staging / name).write_bytes(b"shard")
    monkeypatch.setattr(manifest_module, "WRITE_SPACING", 1e9)
    publish(out, record, staging / "a.parquet", ShardRecord("a.parquet", 1, "0" * 64))
    on_disk = read_manifest(out)
    assert on_disk is not None
    assert on_disk.shards == []
    assert (out / "a.parquet").exists()
    monkeypatch.setattr(manifest_module, "WRITE_SPACING", 0.0)
    publish(out, record, staging / "b.parquet", ShardRecord("b.parquet", 1, "1" * 64))
    on_disk = read_manifest(out)
    assert on_disk is not None
    assert [s.file for s in on_disk.shards] == ["a.parquet", "b.parquet"]
    monkeypatch.setattr(manifest_module, "WRITE_SPACING", 1e9)
    record.summary["note"] = "pending"
    assert not record.write_due(out)
    finish(out, record)
    on_disk = read_manifest(out)
    assert on_disk is not None
    assert on_disk.complete
    assert on_disk.summary["note"] == "pending"


def test_only_string_columns_are_dictionary_encoded(tmp_path: Path) -> None:
    """Names (split, process) get Parquet dictionaries; momenta, nearly all distinct, do not
    (a dictionary per page that overflows only costs time and bytes); the table reads back
    equal."""
    import numpy as np
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "split": pa.array(["train", "val", "test"] * 400),
            "pt": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.random(1200 * 8, dtype=np.float32)), 8
            ),
        }
    )
    write_parquet_atomic(table, tmp_path / "t.parquet")
    metadata = pq.ParquetFile(tmp_path / "t.parquet").metadata.row_group(0)
    encodings = {
        metadata.column(i).path_in_schema: metadata.column(i).encodings
        for i in range(metadata.num_columns)
    }
    assert "RLE_DICTIONARY" in encodings["split"]
    assert "RLE_DICTIONARY" not in encodings["pt.list.element"]
    assert pq.read_table(tmp_path / "t.parquet").equals(table)
