"""What an evaluation leaves behind: ``summary.json``, ``scores.parquet``, and its MLflow run.

* ``summary.json``: what was evaluated (``source_summary``: embeddings, data, checkpoint,
  encoder run; the splits and their event counts, ``split_counts``) and the results, written
  as strict JSON (NaN/inf become null).
* ``scores.parquet``: one row per scored event and classifier (``scores_table``): event_id,
  dataset, label, split, fold, score, classifier, feature_set, seed, plus the columns of the
  evaluation (left_out_fold, signal_fraction, or mjj and in_signal_region).
* MLflow metrics are named ``<metric>/<suffix>`` (means) and ``<metric>_std/<suffix>`` (the
  spread), ``mean_std_metrics``; the drivers choose the suffix.

``finish`` writes both files atomically, logs metrics and files (plots under ``plots/``) to the
evaluation's run, and ends the run FINISHED, or FAILED if anything went wrong on the way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distributed_clr.config.schema import EvaluateConfig, NPLMConfig
from distributed_clr.evaluate.inputs import EvaluationInputs
from distributed_clr.evaluate.plots import plot_latent_projection
from distributed_clr.evaluate.provenance import EncoderSource
from distributed_clr.stats import json_safe
from distributed_clr.storage.files import atomic_write_bytes, write_parquet_atomic
from distributed_clr.storage.formats import EVENT_KINDS
from distributed_clr.storage.location import StoragePath
from distributed_clr.storage.manifest import check_output_dir, require_complete, reuse_or_run
from distributed_clr.storage.verify import VerifyLevel, verify_shards
from distributed_clr.tracking import RunHandle

log = logging.getLogger(__name__)

__all__ = [
    "EVALUATION",
    "PLOTS",
    "SCORES",
    "SUMMARY",
    "check_inputs",
    "describe_run",
    "evaluation_identity",
    "finish",
    "latent_plot",
    "mean_std_metrics",
    "recorded",
    "scores_table",
    "source_summary",
    "split_counts",
]

EVALUATION = "evaluation"
"""The stage-record kind of an evaluation's output directory (``storage.manifest``)."""
SUMMARY = "summary.json"
SCORES = "scores.parquet"
PLOTS = "plots"
COUNTS = ("n_signal", "n_background")
"""Metrics that are event counts, not measurements: not logged to MLflow."""


def scores_table(
    keys: pa.Table, scores: npt.ArrayLike, classifier: str, feature_set: str, seed: int
) -> pa.Table:
    """``keys`` (``EvaluationInputs.keys_table``) with score, classifier, feature_set, seed."""
    n = keys.num_rows
    return (
        keys.append_column("score", pa.array(np.asarray(scores, dtype=np.float64)))
        .append_column("classifier", pa.array([classifier] * n, pa.string()))
        .append_column("feature_set", pa.array([feature_set] * n, pa.string()))
        .append_column("seed", pa.array(np.full(n, seed, dtype=np.int64)))
    )


def split_counts(events: EvaluationInputs) -> dict[str, int]:
    """Events, background, signal and unlabelled left out, of one split."""
    return {
        "events": len(events),
        "background": int((events.label == 0).sum()),
        "signal": int((events.label == 1).sum()),
        "unlabelled_excluded": events.excluded_unlabelled,
    }


def mean_std_metrics(
    stats: Mapping[str, Mapping[str, float]], suffix: str, skip: Sequence[str] = ()
) -> dict[str, float]:
    """MLflow metrics of an ``aggregate``: ``<metric>/<suffix>`` the mean, ``<metric>_std/
    <suffix>`` the spread; event counts and ``skip`` are left out."""
    metrics: dict[str, float] = {}
    for name, values in stats.items():
        if name in (*COUNTS, *skip):
            continue
        metrics[f"{name}/{suffix}"] = values["mean"]
        metrics[f"{name}_std/{suffix}"] = values["std"]
    return metrics


def source_summary(
    evaluation: str, source: EncoderSource, data: StoragePath | None, parent: RunHandle | None
) -> dict[str, Any]:
    """The head of ``summary.json``: what was evaluated, and the encoder's run."""
    return {
        "evaluation": evaluation,
        "embeddings": str(source.embeddings),
        "data": None if data is None else str(data),
        "checkpoint": source.manifest.config.get("checkpoint"),
        "encoder_run_id": None if parent is None else parent.run_id,
    }


def latent_plot(events: EvaluationInputs, path: Path, seed: int) -> Path:
    """The 2-D PCA projection of the events' latent vectors, coloured by label."""
    return plot_latent_projection(events.features["latent"], events.label, path, seed)


def describe_run(run: RunHandle) -> dict[str, str]:
    """The run as ``summary.json`` names it."""
    return {"uri": run.uri, "run_id": run.run_id, "run_name": run.name}


def _write_summary(out: Path, summary: Mapping[str, Any]) -> Path:
    path = out / SUMMARY
    text = json.dumps(json_safe(summary), indent=1, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())
    return path


def _write_scores(out: Path, tables: Sequence[pa.Table], name: str) -> Path:
    path = out / name
    write_parquet_atomic(pa.concat_tables(tables), path)
    return path


def finish(
    out: Path,
    summary: dict[str, Any],
    tables: Sequence[pa.Table],
    plots: Sequence[Path],
    metrics: Mapping[str, float],
    run: RunHandle | None,
    table_file: str = SCORES,
) -> dict[str, Any]:
    """Write summary.json and the tables (as ``table_file``, scores.parquet by default), then
    log everything to ``run`` and finish it.

    Returns:
        The summary as written (strict JSON values).
    """
    summary["mlflow"] = None if run is None else describe_run(run)
    summary["plots"] = [str(p.relative_to(out)) for p in plots]
    if run is None:
        _write_summary(out, summary)
        _write_scores(out, tables, table_file)
    else:
        with run.failing_on_error():
            files = [_write_summary(out, summary), _write_scores(out, tables, table_file)]
            run.log_metrics(metrics)
            for path in files:
                run.log_artifact(path)
            for path in plots:
                run.log_artifact(path, PLOTS)
        run.finish("FINISHED")
    log.info("wrote %s, %s and %d plots to %s", SUMMARY, table_file, len(plots), out)
    result: dict[str, Any] = json_safe(summary)
    return result


def check_inputs(
    out: Path, embeddings: StoragePath, data: StoragePath | None, verify: VerifyLevel
) -> None:
    """What can be checked before anything is computed: the output directory can be written,
    the embeddings and, when given, ``--data`` (whatever the feature sets) are complete
    datasets of their kinds whose shards match their manifests."""
    check_output_dir(out)
    for directory, kind in ((embeddings, "embedding"), (data, EVENT_KINDS)):
        if directory is not None:
            verify_shards(directory, require_complete(directory, kind), verify)


def evaluation_identity(
    label: str,
    config: EvaluateConfig | NPLMConfig,
    source: EncoderSource,
    data: StoragePath | None,
    splits: Sequence[str],
    parent: RunHandle | None,
    **extra: Any,
) -> dict[str, Any]:
    """What makes two evaluations the same: the evaluation and its settings, the embeddings and
    data (by their shards' checksums), the splits, and the MLflow run the results go to."""
    data_shards = None
    if data is not None:
        manifest = require_complete(data, EVENT_KINDS)
        data_shards = [s.sha256 for s in sorted(manifest.shards, key=lambda s: s.file)]
    embedding_shards = sorted(s.sha256 for s in source.manifest.shards)
    return {
        "evaluation": label,
        "evaluate": config.model_dump(mode="json"),
        "embeddings": {"config": source.manifest.config, "shards": embedding_shards},
        "data": data_shards,
        "splits": list(splits),
        "mlflow": None if parent is None else {"uri": parent.uri, "run_id": parent.run_id},
        **extra,
    }


def recorded(
    out: Path,
    identity: dict[str, Any],
    compute: Callable[[], dict[str, Any]],
    table_file: str = SCORES,
) -> dict[str, Any]:
    """``compute()``'s summary, or the one recorded in ``out`` by an identical evaluation whose
    files are unchanged (the stage record, ``storage.manifest.reuse_or_run``): a killed
    evaluation is recognised by its incomplete record and redone."""

    def outputs(summary: dict[str, Any]) -> list[str]:
        return [SUMMARY, table_file, *summary.get("plots", [])]

    return reuse_or_run(out, EVALUATION, identity, compute, outputs)
