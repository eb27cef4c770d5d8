"""Datasets on object storage (``storage/location.py``), against an S3-compatible server started
in this process (moto's threaded server on 127.0.0.1), with credentials from the environment."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from distributed_clr.storage import location
from distributed_clr.storage.location import RemotePath, StorageError, as_storage_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the credentials and endpoint only in the environment, as in production."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    name = f"dclr-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def test_local_paths_and_uris_are_told_apart() -> None:
    assert as_storage_path("data/dijets") == Path("data/dijets")
    assert as_storage_path("file:///tmp/x") == Path("/tmp/x")
    assert isinstance(as_storage_path(Path("s3:/not/a/uri")), Path)
    with pytest.raises(StorageError, match="names no bucket"):
        RemotePath("s3://")


def test_remote_path_reads_writes_lists_moves_and_deletes(bucket: str) -> None:
    root = RemotePath(f"s3://{bucket}/a/b")
    assert str(root / "c.txt") == f"s3://{bucket}/a/b/c.txt"
    assert (root / "c.txt").parent == root
    assert (root / "x.parquet").stem == "x"
    assert not root.exists()
    (root / "c.txt").write_text("hello")
    assert root.is_dir()
    assert (root / "c.txt").is_file()
    assert (root / "c.txt").read_text() == "hello"
    assert (root / "c.txt").stat().st_size == 5
    (root / "c.txt").replace(root / "d.txt")
    assert sorted(p.name for p in root.iterdir()) == ["d.txt"]
    (root / "d.txt").unlink()
    (root / "d.txt").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        (root / "d.txt").unlink()
    (root / "sub" / "e").write_bytes(b"1")
    location.remove_tree(root)
    assert not (root / "sub" / "e").exists()


def upload(directory: Path, uri: str) -> None:
    """A finished dataset copied file by file (``location.copy``, local to S3)."""
    for path in sorted(directory.iterdir()):
        if path.is_file():
            location.copy(path, RemotePath(uri) / path.name)


def test_a_dataset_on_s3_is_verified_and_read_like_a_local_one(bucket: str, prepared: Path) -> None:
    from distributed_clr.storage.reader import iter_tables
    from distributed_clr.storage.verify import check_directory

    uri = f"s3://{bucket}/dijets"
    upload(prepared, uri)
    manifest, problems = check_directory(uri)
    assert problems == []
    assert manifest is not None
    assert manifest.complete
    local = pa.concat_tables(iter_tables(prepared, "dijet", columns=["event_id"]))
    remote = pa.concat_tables(iter_tables(uri, "dijet", columns=["event_id"]))
    assert sorted(remote.column("event_id").to_pylist()) == sorted(
        local.column("event_id").to_pylist()
    )


def test_a_stage_resumes_on_s3_and_removes_what_a_killed_run_left(bucket: str) -> None:
    from distributed_clr.storage import manifest as records
    from distributed_clr.storage.files import write_parquet_atomic

    out = RemotePath(f"s3://{bucket}/stage")
    started = records.resume_or_start(out, "dijet", {"x": 1})
    staging = records.staging_area(out)
    table = pa.table({"a": [1, 2, 3]})
    digest = write_parquet_atomic(table, staging / "part-0.parquet")
    records.publish(
        out, started, staging / "part-0.parquet", records.ShardRecord("part-0.parquet", 3, digest)
    )
    started.write(out)  # publish rewrites the record when due; here it is written
    write_parquet_atomic(table, staging / "part-1.parquet")  # the run dies here
    write_parquet_atomic(table, out / "stray.parquet")
    resumed = records.resume_or_start(out, "dijet", {"x": 1})
    assert [s.file for s in resumed.shards] == ["part-0.parquet"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "part-0.parquet"]
    records.finish(out, resumed)
    assert records.require_complete(out, "dijet").rows == 3
    with pytest.raises(records.DatasetError, match="different configuration"):
        records.resume_or_start(out, "dijet", {"x": 2})


def test_a_changed_object_is_refused_by_name(bucket: str, prepared: Path) -> None:
    from distributed_clr.storage.manifest import DatasetError
    from distributed_clr.storage.reader import shard_paths
    from distributed_clr.storage.verify import check_directory

    uri = f"s3://{bucket}/dijets"
    upload(prepared, uri)
    victim = shard_paths(uri, "dijet")[0]
    data = victim.read_bytes()
    assert isinstance(victim, RemotePath)
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    _, problems = check_directory(uri)
    assert any(victim.name in p for p in problems)
    with pytest.raises(DatasetError, match=victim.name):
        shard_paths(uri, "dijet")


def test_missing_datasets_and_unknown_storage_get_clear_errors(bucket: str) -> None:
    from distributed_clr.storage.manifest import DatasetError
    from distributed_clr.storage.reader import shard_paths

    with pytest.raises(DatasetError, match="does not exist"):
        shard_paths(f"s3://{bucket}/nothing-here", "dijet")
    unknown = RemotePath("nosuchscheme://bucket/key")  # naming it touches nothing
    with pytest.raises(StorageError, match="cannot open storage"):
        unknown.exists()
