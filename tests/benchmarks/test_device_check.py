"""The GPU device check (``benchmarks/device_check.sh``) in its CPU dry run: every section runs
end to end and reports what it should; and the analytic FLOP count behind its MFU equals torch's
``FlopCounterMode`` on the real training step.

The dry run takes one to two minutes on two cores, nearly all of it the Ray Train run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from distributed_clr.config import AugmentConfig, LossConfig, ModelConfig, TrainConfig, get_preset
from distributed_clr.models import build_model
from distributed_clr.train.trainer import Trainer
from tests.benchmarks.loader import BENCHMARKS, load_benchmark

SECTIONS = {"gpu_tests", "flops", "train_step", "augment_share", "seed_vs_ours", "ray_train"}


def _device_check() -> ModuleType:
    return load_benchmark("device_check")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("device_check")
    out = workdir / "x.json"
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "device_check.sh"), "--dry-run", "--out", str(out)],
        cwd=workdir,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "seed-style loop" in result.stdout  # the summary table
    assert not list(workdir.glob(".x.json.*")), "the atomic write left a temporary file"
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def test_dry_run_runs_every_section(report: dict[str, Any]) -> None:
    assert report["dry_run"] is True
    assert report["failed"] == []
    assert report["machine"]["device"] == "cpu"
    assert report["machine"]["cpu_count"] >= 1
    assert report["date"]
    sections = report["sections"]
    assert set(sections) == SECTIONS
    for name, section in sections.items():
        assert section["status"] == "ok", (name, section)
        assert section["seconds"] >= 0

    tests = sections["gpu_tests"]["figures"]
    assert tests["exit_status"] == 0
    assert tests["skipped"] >= 3  # the gpu tests exist and skip without CUDA
    assert "passed" not in tests


def test_dry_run_measures_the_step_and_its_augmentations(report: dict[str, Any]) -> None:
    step = report["sections"]["train_step"]["figures"]
    rows = {(r["precision"], r["batch"]): r for r in step["rows"]}
    assert set(rows) == {(p, b) for p in ("fp32", "bf16") for b in (32, 64)}
    for row in rows.values():
        assert row["events_per_s"] > 0
        assert row["steps_timed"] >= 3
        assert row["flops_per_step"] > 0
        assert row["mfu"] is None  # no peak FLOP/s for a CPU, and the reason is given
        assert "CPU" in row["peak_note"]
    assert rows["fp32", 64]["flops_per_step"] > rows["fp32", 32]["flops_per_step"]

    share = report["sections"]["augment_share"]["figures"]
    assert len(share["rows"]) == 4
    for row in share["rows"]:
        assert row["make_views_ms"] > 0
        assert 0 < row["share"] < 1  # the views are part of the step

    flops = report["sections"]["flops"]["figures"]
    assert flops["analytic"] > 0
    assert abs(flops["relative_difference"]) < 0.01
    assert flops["analytic"] == pytest.approx(flops["flop_counter"], rel=0.01)


def test_dry_run_compares_the_seed_loop_and_runs_ray_train(report: dict[str, Any]) -> None:
    loops = report["sections"]["seed_vs_ours"]["figures"]
    assert loops["seed_style"]["events_per_s"] > 0
    assert loops["ours"]["events_per_s"] > 0
    assert loops["seed_style"]["batch"] == 32
    assert loops["ours"]["batch"] == 64
    ratio = loops["ours"]["events_per_s"] / loops["seed_style"]["events_per_s"]
    assert loops["speedup"] == pytest.approx(ratio, rel=0.01)

    ray = report["sections"]["ray_train"]["figures"]
    assert ray["exit_status"] == 0
    assert ray["backend"] == "gloo"
    assert ray["events_per_s"] > 0
    assert len(ray["events_per_s_by_epoch"]) == ray["epochs"] == 1
    assert ray["command"].startswith("dclr pretrain ")
    assert "--gpu" not in ray["command"]


@pytest.mark.parametrize(
    ("model", "constituents", "batch"),
    [
        (get_preset("debug").model, 20, 4),
        (get_preset("paper_lhco").model, 20, 2),
        # a class token, width != latent size (an output layer), its own head and feed-forward
        (
            ModelConfig(
                latent_dim=16, width=32, depth=2, heads=4, ff_dim=48, pooling="cls",
                head_dim=24, head_out=12,
            ),
            24,
            3,
        ),
    ],
    ids=["debug", "paper", "cls-head"],
)  # fmt: skip
def test_analytic_flops_equal_the_flop_counter(
    model: ModelConfig, constituents: int, batch: int
) -> None:
    check = _device_check()
    torch.manual_seed(0)
    contrastive = build_model(model, constituents)
    trainer = Trainer(
        contrastive,
        train=TrainConfig(batch_size=batch),
        loss=LossConfig(),
        augment=AugmentConfig(),
        device=torch.device("cpu"),
        steps_per_epoch=1,
    )
    x, mask = check.sibling("augment_throughput").toy_dijets(batch, constituents, seed=1)
    events = {"x": torch.from_numpy(x), "mask": torch.from_numpy(mask), "label": torch.zeros(batch)}

    counted = check.counted_flops(trainer, events, "fp32")
    analytic = check.train_step_flops(model, contrastive.features.num_features, constituents, batch)
    assert analytic.train_step == counted
    assert analytic.forward < analytic.train_step < 3 * analytic.forward
    assert all(p.grad is None for p in contrastive.parameters())  # the count leaves no gradients


def test_analytic_flops_scale_as_documented() -> None:
    check = _device_check()
    model = get_preset("paper_lhco").model
    one, two = (check.train_step_flops(model, 6, 50, b) for b in (1024, 2048))
    # everything but the loss's (2B)^2 similarity matrix is linear in the batch
    assert two.feed_forward == 2 * one.feed_forward
    assert two.loss == 4 * one.loss
    # paper size, per view: ~66 MFLOP forward (2 layers of width 128 over 100 tokens)
    assert 60e6 < (one.forward - one.loss) / 2048 < 70e6
    with pytest.raises(ValueError, match="transformer"):
        check.train_step_flops(get_preset("paper_adc").model, 3, 19, 8)


def test_a_failed_section_leaves_the_others_and_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = _device_check()

    def broken(ctx: Any) -> dict[str, Any]:
        raise RuntimeError("out of luck")

    monkeypatch.setitem(check.SECTION_FUNCTIONS, "flops", broken)
    # main's process-wide settings stay out of this test process
    monkeypatch.setattr(check.signal, "signal", lambda *args: None)
    monkeypatch.setattr(check.torch, "set_num_threads", lambda n: None)
    out = tmp_path / "report.json"
    skip = ["gpu_tests", "train_step", "seed_vs_ours", "ray_train"]
    code = check.main(["--dry-run", "--out", str(out), *(f"--skip={s}" for s in skip)])

    assert code == 1
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert report["failed"] == ["flops"]
    assert sections["flops"] == {
        "status": "failed",
        "message": "RuntimeError: out of luck",
        "seconds": sections["flops"]["seconds"],
    }
    assert all(sections[name]["reason"] == "--skip" for name in skip)
    # a section whose input did not run is skipped with the reason, not failed
    assert sections["augment_share"]["status"] == "skipped"
    assert "train_step" in sections["augment_share"]["reason"]
