"""What a finished pretraining run leaves: its best and latest checkpoints, and the final
artifacts of its MLflow run (the checkpoint, the model, val/test embeddings, the loss curve)."""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from distributed_clr import __version__
from distributed_clr.checkpoint import load_checkpoint, load_model
from distributed_clr.config.schema import SELECTION_MODES, RunConfig
from distributed_clr.plotting import save_figure
from distributed_clr.runtime import join
from distributed_clr.storage.location import StoragePath
from distributed_clr.storage.manifest import DatasetError
from distributed_clr.tracking import RunHandle
from distributed_clr.train.plan import PretrainError

log = logging.getLogger(__name__)

__all__ = ["PretrainResult", "log_final_artifacts", "loss_curve_figure", "result_from_storage"]


@dataclass
class PretrainResult:
    """What a finished run left behind."""

    run_name: str
    storage: str
    best_checkpoint: str
    latest_checkpoint: str
    best_epoch: int
    """The epoch of the best ``selection_metric``: the checkpoint kept and embedded."""
    best_val_loss: float
    """The validation loss at the best epoch."""
    epochs: int
    """Epochs finished (over all attempts)."""
    stopped_early: bool
    selection_metric: str = "val_loss"
    best_value: float = math.nan
    """The selection metric at the best epoch."""
    history: list[dict[str, float]] = field(default_factory=list)
    composition: dict[str, Any] = field(default_factory=dict)
    """What the run trained and validated on (``samples.SamplePlan.compositions``)."""
    mlflow_run_id: str | None = None
    tracking_uri: str | None = None


def _local_path(checkpoint: Any) -> str:
    """A local directory with the checkpoint's files: the checkpoint itself on a local file
    system, a downloaded copy for object storage (s3://, gs://, ...)."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return str(checkpoint.path)
    target = tempfile.mkdtemp(prefix=f"dclr-{Path(checkpoint.path).name}-")
    return str(checkpoint.to_directory(target))


def result_from_storage(
    run_name: str, storage: str, run: RunHandle | None, result: Any = None
) -> PretrainResult:
    """Best and latest checkpoints of a run (from a Ray result, or its storage directory)."""
    if result is not None:
        latest = _local_path(result.checkpoint)
        candidates = [_local_path(c) for c, _ in result.best_checkpoints] or [latest]
    else:
        root = Path(join(storage, run_name))
        candidates = sorted(str(p.parent) for p in root.glob("*/state.pt"))
        if not candidates:
            raise PretrainError(f"no checkpoints under {root}")
        latest = candidates[-1]
    state = load_checkpoint(latest)["train_state"]
    epochs = {path: int(load_checkpoint(path)["train_state"].epoch) for path in candidates}
    best = next((p for p in candidates if epochs[p] == state.best_epoch), None)
    if best is None:  # the best epoch's checkpoint is gone: the best one kept
        sign = 1.0 if SELECTION_MODES.get(state.selection_metric, "min") == "min" else -1.0
        values = {
            p: load_checkpoint(p)["train_state"].history[-1].get(state.selection_metric)
            for p in candidates
        }
        best = min(candidates, key=lambda p: (sign * float(values[p] or math.inf), p))
    return PretrainResult(
        run_name=run_name,
        storage=join(storage, run_name),
        best_checkpoint=best,
        latest_checkpoint=latest,
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val_loss,
        selection_metric=state.selection_metric,
        best_value=state.best_value,
        epochs=state.epoch + 1,
        stopped_early=state.stopped_early,
        history=list(state.history),
        mlflow_run_id=None if run is None else run.run_id,
        tracking_uri=None if run is None else run.uri,
    )


def loss_curve_figure(history: Sequence[Mapping[str, float]], best_epoch: int) -> Figure:
    """Train and validation loss per epoch (left), alignment + uniformity (middle), the view
    retrieval and the linear-probe AUC (right); the best epoch (by the selection metric)
    marked."""
    epochs = [int(h["epoch"]) for h in history]
    figure = Figure(figsize=(14, 4))
    loss_ax, geometry_ax, probe_ax = figure.subplots(1, 3)
    geometry_ax.plot(
        epochs, [h.get("val_align_uniform", math.nan) for h in history], marker="o",
        color="tab:purple",
    )  # fmt: skip
    geometry_ax.axvline(best_epoch, color="grey", linestyle=":")
    geometry_ax.set_xlabel("epoch")
    geometry_ax.set_ylabel("alignment + uniformity (no labels; lower is better)")
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [h.get(key, math.nan) for h in history]
        loss_ax.plot(epochs, values, marker="o", label=label)
    loss_ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best (epoch {best_epoch})")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("contrastive loss")
    loss_ax.legend()
    for key, label, color in (
        ("val_view_retrieval", "view retrieval (no labels)", "tab:blue"),
        ("val_probe_auc", "linear-probe AUC (labels)", "tab:green"),
    ):
        values = [h.get(key, math.nan) for h in history]
        probe_ax.plot(epochs, values, marker="o", color=color, label=label)
    probe_ax.axvline(best_epoch, color="grey", linestyle=":")
    probe_ax.set_xlabel("epoch")
    probe_ax.set_ylabel("validation")
    probe_ax.set_ylim(0.0, 1.0)
    probe_ax.legend()
    figure.tight_layout()
    return figure


def log_final_artifacts(
    run: RunHandle,
    result: PretrainResult,
    config: RunConfig,
    data: StoragePath,
    log_embeddings: bool,
) -> None:
    """Checkpoint, model, embeddings and the loss curve of the best epoch into the run."""
    import torch

    best = Path(result.best_checkpoint)
    run.log_artifacts(best, "checkpoint")
    if result.history:
        with tempfile.TemporaryDirectory(prefix="dclr-plots-") as tmp:
            path = save_figure(
                loss_curve_figure(result.history, result.best_epoch),
                Path(tmp) / "loss_curve.png",
                bbox_inches="tight",
            )
            run.log_artifact(path, "plots")
    run.log_metrics({"best_epoch": result.best_epoch, "final_best_val_loss": result.best_val_loss})
    model, _ = load_model(best)
    run.log_model(
        model,
        pip_requirements=[
            f"torch=={torch.__version__.split('+')[0]}",
            f"distributed_clr=={__version__}",
        ],
    )
    if log_embeddings:
        from distributed_clr.embed import embed

        with tempfile.TemporaryDirectory(prefix="dclr-embed-") as tmp:
            for split in (config.data.val_split, config.data.test_split):
                out = Path(tmp) / split
                try:
                    embed(best, data, out, config.ray, splits=[split], verify=config.data.verify)
                except DatasetError as err:
                    log.warning("no %s embeddings: %s", split, err)
                    continue
                run.log_artifacts(out, f"embeddings/{split}")
