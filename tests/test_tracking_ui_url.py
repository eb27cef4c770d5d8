"""``RunHandle.ui_url``: the run's page in a tracking server's UI, and None for local stores
(the commands print it at the end; the browser test opens it on a real server)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from distributed_clr.tracking import RunHandle


class _Client:
    """Answers ``get_run`` with a run of experiment 7, and counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def get_run(self, run_id: str) -> Any:
        self.calls += 1
        return SimpleNamespace(info=SimpleNamespace(experiment_id="7", run_id=run_id))


def _handle(uri: str) -> tuple[RunHandle, _Client]:
    handle = RunHandle(uri, "0123abcd", "learns")
    fake = _Client()
    handle.__dict__["client"] = fake  # the cached MlflowClient
    return handle, fake


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000/#/experiments/7/runs/0123abcd"),
        ("http://mlflow:5000/", "http://mlflow:5000/#/experiments/7/runs/0123abcd"),
        (
            "https://user:secret@mlflow.example.org/tracking/",
            "https://mlflow.example.org/tracking/#/experiments/7/runs/0123abcd",
        ),
        ("http://[::1]:5000", "http://[::1]:5000/#/experiments/7/runs/0123abcd"),
    ],
)
def test_a_server_run_has_a_page_in_the_ui(uri: str, expected: str) -> None:
    handle, fake = _handle(uri)
    assert handle.ui_url() == expected
    assert fake.calls == 1


@pytest.mark.parametrize(
    "uri", ["sqlite:////tmp/mlflow.db", "file:///tmp/mlruns", "/tmp/mlruns", "databricks"]
)
def test_a_local_store_has_none_and_is_not_asked(uri: str) -> None:
    handle, fake = _handle(uri)
    assert handle.ui_url() is None
    assert fake.calls == 0
