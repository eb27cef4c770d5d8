"""Kill tests: a data stage killed at any point resumes to exactly the bytes of a run that was
never interrupted.

Each case starts ``dclr generate`` or ``dclr prepare`` in a session of its own with
``DCLR_CRASH_AT`` naming a point (``crashpoints.py``); reaching it SIGKILLs the driver, Ray's
processes and the worker that got there, as a power cut would. The test then kills whatever of
that session survived, checks that nothing was marked complete, reruns the stage (in this
process) and compares every shard's name and sha256, and the manifest's list, with a reference
run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distributed_clr.config import GenerateConfig, RayConfig, get_preset
from distributed_clr.data.generate import generate
from distributed_clr.data.prepare import prepare
from distributed_clr.storage.files import TMP_MARK, sha256_file
from distributed_clr.storage.manifest import STAGING, Manifest, read_manifest

pytestmark = pytest.mark.ray

DCLR = str(Path(sys.executable).with_name("dclr"))
GENERATE = GenerateConfig(process="wprime_xy", events=60, shards=3, seed=5)


def _session_processes(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the name: state, ppid, pgrp, session, ...
            found.append(int(entry.name))
    return found


def _run_until_crash(argv: list[str], crash_at: str) -> None:
    """Run ``dclr ARGV`` until the crash point kills it, then make sure nothing of it lives on
    (a Ray worker of a killed run could otherwise still write for a few seconds)."""
    env = {**os.environ, "DCLR_CRASH_AT": crash_at, "RAY_ADDRESS": "", "DCLR_PROGRESS": "0"}
    proc = subprocess.Popen(
        [DCLR, *argv],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        deadline = time.monotonic() + 30
        while survivors := _session_processes(proc.pid):
            for pid in survivors:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            assert time.monotonic() < deadline, f"session {proc.pid} would not die"
            time.sleep(0.2)
    assert proc.returncode == -signal.SIGKILL, (
        f"{crash_at}: exit {proc.returncode}, not killed\n{err.decode()[-2000:]}"
    )


def _state(directory: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(the manifest's {shard: sha256}, the shard files' {name: sha256})."""
    manifest = read_manifest(directory)
    assert manifest is not None
    assert manifest.complete
    listed = {s.file: s.sha256 for s in manifest.shards}
    files = {p.name: sha256_file(p) for p in directory.glob("*.parquet")}
    return listed, files


def _assert_clean(directory: Path) -> None:
    assert not (directory / STAGING).exists()
    assert not [p for p in directory.iterdir() if TMP_MARK in p.name]


def _not_complete(directory: Path) -> bool:
    manifest: Manifest | None = read_manifest(directory) if directory.is_dir() else None
    return manifest is None or not manifest.complete


@pytest.fixture(scope="module")
def generate_reference(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "wprime"
    generate(GENERATE, out, RayConfig())
    return out


@pytest.mark.parametrize(
    "crash_at",
    [
        "stage-started",  # the manifest exists, no shard yet
        "mid-write@shard-00001",  # a worker has half a shard on disk
        "publish#2",  # a second shard is in place but not in the manifest
        "mid-write@manifest.json#3",  # the driver dies writing the manifest
    ],
)
def test_killed_generate_resumes_to_the_same_bytes(
    generate_reference: Path, tmp_path: Path, crash_at: str
) -> None:
    out = tmp_path / "wprime"
    argv = ["generate", "--process", "wprime_xy", "--events", "60", "--shards", "3"]
    _run_until_crash([*argv, "--seed", "5", "--out", str(out)], crash_at)
    assert _not_complete(out)
    generate(GENERATE, out, RayConfig())
    assert _state(out) == _state(generate_reference)
    _assert_clean(out)


@pytest.fixture(scope="module")
def prepare_reference(generated: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "dijets"
    inputs = [generated["qcd_dijet"], generated["wprime_xy"]]
    prepare(inputs, out, get_preset("debug").prepare, RayConfig())
    return out


@pytest.mark.parametrize(
    "crash_at",
    [
        "stage-started",
        "mid-write@part-01",  # a worker has half of a W' unit's shard on disk
        "publish#2",
        "mid-write@manifest.json#2",
    ],
)
def test_killed_prepare_resumes_to_the_same_bytes(
    generated: dict[str, Path], prepare_reference: Path, tmp_path: Path, crash_at: str
) -> None:
    out = tmp_path / "dijets"
    inputs = [generated["qcd_dijet"], generated["wprime_xy"]]
    argv = ["prepare", *map(str, inputs), "--out", str(out), "--preset", "debug"]
    _run_until_crash(argv, crash_at)
    assert _not_complete(out)
    resumed = prepare(inputs, out, get_preset("debug").prepare, RayConfig())
    assert _state(out) == _state(prepare_reference)
    reference = read_manifest(prepare_reference)
    assert reference is not None
    assert resumed.summary["cut_flow"] == reference.summary["cut_flow"]  # nothing counted twice
    _assert_clean(out)


def test_two_uninterrupted_prepares_write_the_same_bytes(
    generated: dict[str, Path], prepare_reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "again"
    inputs = [generated["qcd_dijet"], generated["wprime_xy"]]
    prepare(inputs, out, get_preset("debug").prepare, RayConfig())
    assert _state(out) == _state(prepare_reference)
