"""The stage benchmark's reading of a stage's log and its ratios."""

from __future__ import annotations

import logging
from types import ModuleType

import pytest

from distributed_clr.runtime import log_stage_rate
from tests.benchmarks.loader import load_benchmark


def _stage_throughput() -> ModuleType:
    return load_benchmark("stage_throughput")


def test_the_benchmark_reads_the_work_time_a_stage_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="distributed_clr.runtime"):
        log_stage_rate("prepare", 200_000, 100, 52.25, 2)
    message = caplog.records[-1].getMessage()
    assert "3828 events/s" in message
    found = _stage_throughput().WORK_LINE.search(f"2026-12-04 INFO x: {message}")
    assert found is not None
    assert found.group(1) == "prepare"
    assert int(found.group(2)) == 200_000
    assert int(found.group(3)) == 2
    assert float(found.group(4)) == pytest.approx(52.25, abs=0.05)


def test_figures_compare_with_cores_times_the_one_core_rate() -> None:
    figures = _stage_throughput().figures(1000, 2.0, 400.0, 2, work=1.5)
    assert figures["command_events_per_s"] == 500
    assert figures["over_cores_x_in_process"] == pytest.approx(500 / 800)
    assert figures["work_over_cores_x_in_process"] == pytest.approx(1000 / 1.5 / 800, abs=1e-3)
    assert figures["fixed_s"] == pytest.approx(0.5)
    staged = _stage_throughput().figures(1000, 2.0, 400.0, 2, "stage")
    assert "stage_wall_s" in staged
    assert "work_s" not in staged
