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
    resume_or_start,
    reuse_or_run,
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
