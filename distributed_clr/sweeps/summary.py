"""A sweep's results: what Tune knows of each trial, the summary table (one row per trial, best
first), the plots of the selection metric against temperature and latent size, and the
``SweepResult`` that ``sweep`` returns.

The summary of a local sweep is written to ``<ray.storage_path>/<name>/summary``
(``summary.csv`` and ``<metric>_vs_<param>.png``), each file atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distributed_clr.augment.normalize import INVARIANT
from distributed_clr.sweeps.space import REPORTED_METRICS, SearchSpace, is_scalar
from distributed_clr.sweeps.tuner import trial_run_name
from distributed_clr.tracking import COMPLETE_TAG

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PLOTTED_PARAMS",
    "SweepResult",
    "TrialRecord",
    "ablation_note",
    "load_trials",
    "metric_vs_param_figure",
    "summarize",
    "write_results",
]

PLOTTED_PARAMS = {
    "loss.temperature": ("temperature", "temperature"),
    "model.latent_dim": ("latent size", "latent_dim"),
}
"""Params with a plot of the metric against them: key -> (axis label, file-name stem)."""


@dataclass
class TrialRecord:
    """What Tune knows of one trial."""

    trial_id: str
    status: str
    """Tune's status: TERMINATED, ERROR, PENDING, RUNNING or PAUSED."""
    params: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    """Reported metrics per epoch (one row per epoch; a repeated epoch keeps its last report)."""
    error: str = ""


@dataclass
class SweepResult:
    """A finished (or interrupted) sweep."""

    name: str
    """The sweep's name (Tune experiment, MLflow parent run); rerun with it to resume."""
    experiment_path: str
    """The Tune experiment: ``<ray.storage_path>/<name>``."""
    summary: Any
    """pandas DataFrame, one row per trial, best first (see ``summarize``)."""
    metric: str
    """The selection metric (``train.selection_metric``); the summary has ``best_<metric>``,
    the value at the epoch whose checkpoint each trial kept."""
    mode: str
    """``max`` or ``min``: the direction of the metric (``SELECTION_MODES``)."""
    summary_csv: Path
    plots: list[Path] = field(default_factory=list)
    parent_run_id: str | None = None
    """The MLflow parent run (None with tracking off)."""
    tracking_uri: str | None = None
    complete: bool = True
    """Every trial reached a final state (complete, stopped by the scheduler, or error)."""

    @property
    def best(self) -> dict[str, Any] | None:
        """The summary row of the best trial (by its best epoch), or None without any metric."""
        column = f"best_{self.metric}"
        rows = self.summary[self.summary[column].notna()]
        if rows.empty:
            return None
        return dict(rows.iloc[0])

    @property
    def failed(self) -> int:
        """Trials that ended in an error (a rerun with the same name resumes them)."""
        return int((self.summary["status"] == "error").sum())


def _history(frame: Any) -> list[dict[str, float]]:
    """Tune's result rows of a trial -> one dict per epoch, in epoch order."""
    if frame is None or len(frame) == 0 or "epoch" not in frame:
        return []
    keep = [m for m in (*REPORTED_METRICS, "epoch") if m in frame]
    by_epoch: dict[int, dict[str, float]] = {}
    for row in frame[keep].to_dict("records"):
        if row.get("epoch") is None or math.isnan(float(row["epoch"])):
            continue
        by_epoch[int(row["epoch"])] = {k: float(v) for k, v in row.items() if v is not None}
    return [by_epoch[e] for e in sorted(by_epoch)]


def load_trials(experiment_path: str, space: SearchSpace) -> list[TrialRecord]:
    """Every trial of the Tune experiment at ``experiment_path``: status, params, reported
    history and error."""
    from ray import tune

    analysis = tune.ExperimentAnalysis(experiment_path)
    frames = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        error = ""
        if trial.status == "ERROR":
            try:
                error = str(trial.get_error() or "")
            except Exception:  # the error file may be missing after a hard kill
                error = "error (no details stored)"
        records.append(
            TrialRecord(
                trial_id=str(trial.trial_id),
                status=str(trial.status),
                params=space.decode(trial.config),
                history=_history(frames.get(trial.trial_id)),
                error=error,
            )
        )
    return records


def _param_column(value: Any) -> Any:
    return value if is_scalar(value) else json.dumps(value)


PIPELINE = "augment.pipeline"


def ablation_note(params: Mapping[str, Any], full: Sequence[str], inputs: str) -> str:
    """What a trial of an augmentation ablation leaves out of the ``full`` pipeline, e.g.
    ``without rotate``; a left-out augmentation the encoder's ``inputs`` are invariant to by
    construction is marked as a no-op (the row then differs from the full one only by noise)."""
    pipeline = params.get(PIPELINE)
    if pipeline is None:
        return ""
    missing = [name for name in full if name not in pipeline]
    if not missing:
        return "all augmentations" if len(pipeline) == len(full) else ""
    invariant = INVARIANT.get(str(params.get("model.inputs", inputs)), frozenset())
    parts = [
        f"{name} (no-op: inputs invariant to it)" if name in invariant else name for name in missing
    ]
    return "without " + ", ".join(parts)


def _full_pipeline(records: Sequence[TrialRecord]) -> list[str]:
    """Every augmentation any trial uses, in first-seen order."""
    names: dict[str, None] = {}
    for record in records:
        for name in record.params.get(PIPELINE) or []:
            names.setdefault(str(name), None)
    return list(names)


def summarize(
    records: Sequence[TrialRecord],
    space: SearchSpace,
    sweep_name: str,
    metric: str,
    mode: str,
    runs: Mapping[str, Any] | None = None,
    inputs: str = "absolute",
) -> Any:
    """One row per trial, best first: trial (its run name), trial_id, mlflow_run_id, one column
    per param, ``best_<metric>`` and its ``best_epoch``, ``last_<metric>``, ``val_loss`` (last
    epoch), ``epochs`` and ``status``: complete, stopped (by the scheduler), error, or
    incomplete (an interrupted sweep). A space over ``augment.pipeline`` adds ``note``: what
    each trial leaves out (``ablation_note``; ``inputs`` is the encoder input frame of trials
    that do not vary ``model.inputs``)."""
    import pandas as pd

    full = _full_pipeline(records) if PIPELINE in space.keys else []

    rows = []
    for record in records:
        run_name = trial_run_name(sweep_name, record.trial_id)
        run = (runs or {}).get(run_name)
        values = [h.get(metric, math.nan) for h in record.history]
        finite = [(v, int(h["epoch"])) for v, h in zip(values, record.history, strict=True)]
        finite = [(v, e) for v, e in finite if math.isfinite(v)]
        best = (max if mode == "max" else min)(finite, default=(math.nan, -1))
        status = {"TERMINATED": "complete", "ERROR": "error"}.get(record.status, "incomplete")
        if status == "complete" and run is not None and run.data.tags.get(COMPLETE_TAG) != "true":
            status = "stopped"
        row: dict[str, Any] = {
            "trial": run_name,
            "trial_id": record.trial_id,
            "mlflow_run_id": None if run is None else run.info.run_id,
        }
        row.update({key: _param_column(v) for key, v in record.params.items()})
        row.update(
            {
                f"best_{metric}": best[0],
                "best_epoch": best[1] if best[1] >= 0 else None,
                f"last_{metric}": values[-1] if values else math.nan,
                "val_loss": record.history[-1].get("val_loss", math.nan)
                if record.history
                else math.nan,
                "epochs": len(record.history),
                "status": status,
                "error": record.error.strip().splitlines()[-1][:300] if record.error else "",
            }
        )
        if full:
            row["note"] = ablation_note(record.params, full, inputs)
        rows.append(row)
    columns = [
        "trial",
        "trial_id",
        "mlflow_run_id",
        *space.keys,
        f"best_{metric}",
        "best_epoch",
        f"last_{metric}",
        "val_loss",
        "epochs",
        "status",
        "error",
        *(["note"] if full else []),
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.sort_values(
        f"best_{metric}", ascending=mode == "min", na_position="last", kind="stable"
    )
    return frame.reset_index(drop=True)


def metric_vs_param_figure(
    summary: Any, key: str, metric: str, space: SearchSpace, label: str | None = None
) -> Figure:
    """The best ``metric`` of each trial against param ``key`` (log x).

    Trials are coloured by another discrete param when the space has one (e.g. one colour per
    latent size in a temperature plot); trials not run to the end (stopped, failed or
    interrupted) are drawn hollow.
    """
    import numpy as np
    from matplotlib.figure import Figure

    column = f"best_{metric}"
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    ax = figure.add_subplot()
    data = summary[summary[column].notna() & summary[key].notna()]
    others = [p for p in space.params if p.key != key]
    groups = [p for p in others if p.discrete and len(p.values) <= 10]
    group = groups[0].key if groups else None
    # Lines join the values of a grid or choice scan when nothing else varies within a colour.
    connect = space.param(key).discrete and (not others or (len(others) == 1 and group is not None))
    parts = (
        [(f"{group} = {value}", part) for value, part in data.groupby(group, sort=True)]
        if group is not None
        else [("trials", data)]
    )
    for index, (name, part) in enumerate(parts):
        part = part.sort_values(key)
        done = part["status"] == "complete"
        color = f"C{index % 10}"
        ax.scatter(part[key][done], part[column][done], color=color, label=name)
        ax.scatter(part[key][~done], part[column][~done], facecolors="none", edgecolors=color)
        if connect:
            ax.plot(part[key], part[column], alpha=0.5, color=color)
    values = np.unique(np.asarray(data[key], dtype=np.float64))
    if len(values) and np.all(values > 0):
        ax.set_xscale("log", base=2 if key == "model.latent_dim" else 10)
    if 0 < len(values) <= 10:  # a grid: label its values
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
    ax.set_xlabel(f"{label or key} ({key})")
    ax.set_ylabel(f"{metric} (best epoch)")
    ax.set_title(f"{len(data)} trials; hollow: not run to the end")
    if group is not None or len(parts) > 1:
        ax.legend(frameon=False, fontsize="small")
    return figure


def write_results(
    summary: Any, space: SearchSpace, metric: str, directory: Path
) -> tuple[Path, list[Path]]:
    """``summary.csv`` and the plots of ``metric`` against the params of ``PLOTTED_PARAMS``
    the space varies, written atomically into ``directory``; returns (csv, plots)."""
    from distributed_clr.plotting import save_figure
    from distributed_clr.storage.files import atomic_write_text

    directory.mkdir(parents=True, exist_ok=True)
    csv = directory / "summary.csv"
    atomic_write_text(csv, summary.to_csv(index=False))
    plots = []
    for key, (label, stem) in PLOTTED_PARAMS.items():
        if key in space.keys:
            figure = metric_vs_param_figure(summary, key, metric, space, label)
            plots.append(save_figure(figure, directory / f"{metric}_vs_{stem}.png"))
    return csv, plots
