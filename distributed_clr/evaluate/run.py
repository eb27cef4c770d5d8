"""The evaluation commands as plain functions: ``classify`` and ``cwola`` (idealised, bump hunt).

Both read an ``embedding`` dataset (``dclr embed``) and, for the 'event' and 'highlevel' feature
sets and the Trans+BC baseline, the prepared dijets it was made from (``inputs.load_inputs``),
and write into ``out``:

* ``summary.json``: what was evaluated (embeddings, data, checkpoint, encoder run, splits and
  their event counts, seeds) and the metrics: per combination the ``aggregate`` (mean, sample
  std, n) over the repeated seeds, and every seed's own numbers.
* ``scores.parquet``: one row per scored event and classifier: event_id, dataset, label, split,
  fold, score, classifier, feature_set, seed, plus left_out_fold (classify: the train fold a
  repeat left out, null unless ``classify_resampling='folds'``), signal_fraction (idealised
  CWoLa), or mjj and in_signal_region (bump hunt).
* ``plots/*.png``: rejection and SIC curves (classify), AUC / max SIC / FPR at TPR 0.5 against
  the signal fraction with one line per feature set (idealised CWoLa, Fig. 9 of Dillon,
  Mastandrea, Nachman 2023), the m_jj spectra after each cut (bump hunt, one figure per
  feature set), and a 2-D PCA projection of the latent space coloured by label (all three).

Every file is written atomically. One ``out`` directory holds one evaluation: a second one
written there replaces ``summary.json`` and ``scores.parquet``.

**Which events.** ``classify`` and the idealised scan train on the labelled events of the
train split (the FCN and Trans+BC carve their early-stopping events out of it) and are measured
on the labelled events of the test split, which no choice ever looks at; events with label -1
are left out of both, with a logged explanation. The val split is not used. The bump hunt uses
every event of every split present in the embeddings, labelled or not: k-fold cross-training
(the ``fold`` column) scores each event with a classifier that never saw it, and labels are only
used to report how many true signal events each cut keeps.

**Curves.** The rejection and SIC curves show the first seed's classifier of each combination
(``config.seed``): pooling the scores of several classifiers would mix their calibrations.

**MLflow.** Results are logged to a child run (tag ``dclr.kind=evaluate``) of the encoder's
run: ``mlflow_run_id`` if given, else the run id stored in the checkpoint the embeddings were
made with. The child run is called ``<encoder run name>-<evaluation>-<digest>``, the digest
hashing the evaluation settings, the embeddings' identity and the splits: rerunning the same
evaluation logs into the same run, a different one (another mode, classifier, setting or
dataset) gets its own. Its params are the encoder's run config with the ``evaluate`` section of
this evaluation; metrics are named ``<metric>/<feature set>/<classifier>`` (means; ``..._std``
the spread) with a ``/f_<f>`` or ``/eff_<eff>`` suffix for CWoLa; artifacts are the files above.
Without tracking, or without an encoder run to attach to, only the files are written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distributed_clr.config.schema import (
    ClassifierName,
    EvaluateConfig,
    ModelConfig,
    RunConfig,
    TrackingConfig,
)
from distributed_clr.storage.manifest import Manifest, require_complete
from distributed_clr.storage.files import atomic_write_bytes, sha256_file, write_parquet_atomic
from distributed_clr.evaluate import classifiers
from distributed_clr.evaluate.cwola import bump_hunt, idealised_scan, repeat_seeds
from distributed_clr.evaluate.inputs import (
    CONSTITUENTS,
    EvaluationInputs,
    labelled,
    load_inputs,
)
from distributed_clr.evaluate.metrics import (
    aggregate,
    binary_metrics,
    json_safe,
    roc_curve,
    sic_curve,
)
from distributed_clr.evaluate.plots import (
    plot_cwola_scan,
    plot_latent_projection,
    plot_mjj_spectra,
    plot_rejection,
    plot_sic,
)
from distributed_clr.evaluate.supervised import describe, fit_predict_trans_bc

log = logging.getLogger(__name__)

CwolaMode = Literal["idealised", "bumphunt"]
TRANS_BC = "trans_bc"
"""Classifier name of the Trans+BC baseline (feature set ``constituents``)."""
SUMMARY = "summary.json"
SCORES = "scores.parquet"
PLOTS = "plots"
MAX_METRICS_PER_BATCH = 1000
DISPLAY_NAMES = {"lct": "LCT", "fcn": "FCN", TRANS_BC: "Trans+BC"}

__all__ = ["TRANS_BC", "classify", "cwola"]


# ------------------------------------------------------------------------------------------------
# where the embeddings came from, and the MLflow run to log to


@dataclass
class EncoderSource:
    """The embedding dataset and, where still readable, the checkpoint that made it."""

    embeddings: Path
    manifest: Manifest
    checkpoint: Path | None
    """The checkpoint directory, if it exists and is the one the embeddings were made with."""
    run_config: RunConfig | None
    """The checkpoint's run configuration."""
    mlflow_run_id: str | None
    """The pretraining run the checkpoint belongs to."""


def encoder_source(embeddings: Path) -> EncoderSource:
    """Read the embeddings' manifest and, if it still exists unchanged, their checkpoint."""
    from distributed_clr.checkpoint import STATE_FILE, load_checkpoint

    manifest = require_complete(embeddings, "embedding")
    named = manifest.config.get("checkpoint")
    if not named:
        log.warning("the manifest of %s names no checkpoint", embeddings)
        return EncoderSource(embeddings, manifest, None, None, None)
    checkpoint = Path(named)
    if not (checkpoint / STATE_FILE).is_file():
        log.warning(
            "the checkpoint %s the embeddings were made with is gone; its run id and "
            "architecture are unknown",
            checkpoint,
        )
        return EncoderSource(embeddings, manifest, None, None, None)
    if sha256_file(checkpoint / STATE_FILE) != manifest.config.get("checkpoint_sha256"):
        log.warning(
            "the checkpoint %s changed since the embeddings in %s were made; not using it",
            checkpoint,
            embeddings,
        )
        return EncoderSource(embeddings, manifest, None, None, None)
    payload = load_checkpoint(checkpoint)
    run_id = payload["train_state"].mlflow_run_id
    return EncoderSource(embeddings, manifest, checkpoint, payload["config"], run_id)


@dataclass
class ParentRun:
    """The encoder's MLflow run that an evaluation's child run hangs under."""

    uri: str
    run_id: str
    name: str
    experiment: str


def parent_run(
    tracking_config: TrackingConfig | None, explicit: str | None, source: EncoderSource
) -> ParentRun | None:
    """The encoder's run: ``explicit`` (an error if it does not exist), else the checkpoint's
    (a warning if it does not exist here), else None with a message."""
    from distributed_clr import tracking

    if tracking_config is None or not tracking_config.enabled:
        log.info("MLflow tracking is off; the results go to files only")
        return None
    run_id = explicit or source.mlflow_run_id
    if run_id is None:
        log.warning(
            "no MLflow run of the encoder is known (the checkpoint of %s names none, or is "
            "gone): the results go to files only; pass --run RUN_ID to log them to a child of "
            "the pretraining run",
            source.embeddings,
        )
        return None
    uri = tracking.tracking_uri(tracking_config)
    mlflow_client = tracking.client(uri)
    try:
        run = mlflow_client.get_run(run_id)
    except Exception as err:
        if explicit:
            raise ValueError(f"no MLflow run {run_id} at {uri}: {err}") from err
        log.warning(
            "the checkpoint's MLflow run %s is not at %s; the results go to files only",
            run_id,
            uri,
        )
        return None
    name = run.data.tags.get(tracking.RUN_NAME_TAG) or run.info.run_name or run_id
    experiment = mlflow_client.get_experiment(run.info.experiment_id).name
    return ParentRun(uri, run_id, str(name), str(experiment))


class ChildRun:
    """An open evaluation run: log metrics and files, then ``finish``."""

    def __init__(self, uri: str, run_id: str, name: str) -> None:
        from distributed_clr import tracking

        self.client = tracking.client(uri)
        self.uri, self.run_id, self.name = uri, run_id, name

    def describe(self) -> dict[str, str]:
        return {"uri": self.uri, "run_id": self.run_id, "run_name": self.name}

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(key, float(value), now, 0)
            for key, value in sorted(metrics.items())
            if math.isfinite(float(value))
        ]
        for start in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + MAX_METRICS_PER_BATCH])

    def log_files(self, files: Iterable[Path], plots: Iterable[Path]) -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path))
        for path in plots:
            self.client.log_artifact(self.run_id, str(path), PLOTS)

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


def open_child_run(
    parent: ParentRun,
    source: EncoderSource,
    config: EvaluateConfig,
    tracking_config: TrackingConfig,
    label: str,
    identity: Mapping[str, Any],
) -> ChildRun:
    """Open (or reopen) the child run of ``parent`` for this evaluation (module docstring)."""
    from distributed_clr import tracking

    digest = hashlib.sha256(
        json.dumps(
            {"evaluate": config.model_dump(mode="json"), **identity}, sort_keys=True, default=str
        ).encode()
    ).hexdigest()[:8]
    name = f"{parent.name}-{label}-{digest}"
    base = source.run_config or RunConfig()
    run_tracking = tracking_config.model_copy(
        update={"uri": parent.uri, "experiment": parent.experiment}
    )
    run_config = base.model_copy(update={"evaluate": config, "tracking": run_tracking})
    try:
        uri, run_id, resumed = tracking.open_run(
            run_config,
            name,
            "evaluate",
            parent_run_id=parent.run_id,
            tags={"dclr.evaluation": label, "dclr.embeddings": str(source.embeddings)},
        )
    except ValueError as err:
        raise ValueError(
            f"cannot reuse the MLflow evaluation run '{name}': {err}. The encoder's checkpoint "
            "has probably changed or gone since the first evaluation; delete that run to redo it"
        ) from err
    log.info(
        "%s MLflow run '%s' (%s), a child of %s",
        "logging to the existing" if resumed else "created",
        name,
        run_id,
        parent.run_id,
    )
    return ChildRun(uri, run_id, name)


# ------------------------------------------------------------------------------------------------
# writing


def _write_summary(out: Path, summary: Mapping[str, Any]) -> Path:
    path = out / SUMMARY
    text = json.dumps(json_safe(summary), indent=1, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())
    return path


def _write_scores(out: Path, tables: Sequence[pa.Table]) -> Path:
    path = out / SCORES
    write_parquet_atomic(pa.concat_tables(tables), path)
    return path


def _scores_table(
    keys: pa.Table, scores: npt.ArrayLike, classifier: str, feature_set: str, seed: int
) -> pa.Table:
    n = keys.num_rows
    return (
        keys.append_column("score", pa.array(np.asarray(scores, dtype=np.float64)))
        .append_column("classifier", pa.array([classifier] * n, pa.string()))
        .append_column("feature_set", pa.array([feature_set] * n, pa.string()))
        .append_column("seed", pa.array(np.full(n, seed, dtype=np.int64)))
    )


def _latent_plot(events: EvaluationInputs, path: Path, seed: int) -> Path:
    return plot_latent_projection(events.features["latent"], events.label, path, seed)


def _finish(
    out: Path,
    summary: dict[str, Any],
    tables: Sequence[pa.Table],
    plots: Sequence[Path],
    metrics: Mapping[str, float],
    child: ChildRun | None,
) -> dict[str, Any]:
    """Write summary.json and scores.parquet, then log everything to the child run."""
    summary["mlflow"] = None if child is None else child.describe()
    summary["plots"] = [str(p.relative_to(out)) for p in plots]
    try:
        files = [_write_summary(out, summary), _write_scores(out, tables)]
        if child is not None:
            child.log_metrics(metrics)
            child.log_files(files, plots)
    except BaseException:
        if child is not None:
            child.finish("FAILED")
        raise
    if child is not None:
        child.finish("FINISHED")
    log.info("wrote %s, %s and %d plots to %s", SUMMARY, SCORES, len(plots), out)
    result: dict[str, Any] = json_safe(summary)
    return result


def _split_counts(events: EvaluationInputs) -> dict[str, int]:
    return {
        "events": len(events),
        "background": int((events.label == 0).sum()),
        "signal": int((events.label == 1).sum()),
        "unlabelled_excluded": events.excluded_unlabelled,
    }


def _mean_std_metrics(
    stats: Mapping[str, Mapping[str, float]], suffix: str, skip: Sequence[str] = ()
) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, values in stats.items():
        if name in ("n_signal", "n_background", *skip):
            continue
        metrics[f"{name}/{suffix}"] = values["mean"]
        metrics[f"{name}_std/{suffix}"] = values["std"]
    return metrics


def _source_summary(
    evaluation: str, source: EncoderSource, data: Path | None, parent: ParentRun | None
) -> dict[str, Any]:
    return {
        "evaluation": evaluation,
        "embeddings": str(source.embeddings),
        "data": None if data is None else str(data),
        "checkpoint": source.manifest.config.get("checkpoint"),
        "encoder_run_id": None if parent is None else parent.run_id,
    }


# ------------------------------------------------------------------------------------------------
# classify


def _curves(
    labels: npt.NDArray[Any], scores: npt.NDArray[np.float64], min_background: int
) -> tuple[tuple[npt.NDArray[Any], npt.NDArray[Any]], tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
    """((tpr, fpr) where at least ``min_background`` background events pass, (tpr, sic))."""
    fpr, tpr, _ = roc_curve(labels, scores)
    resolved = fpr * float((labels == 0).sum()) >= min_background - 1e-9
    return (tpr[resolved], fpr[resolved]), sic_curve(labels, scores, min_background)


def classify(
    config: EvaluateConfig,
    embeddings: str | Path,
    data: str | Path | None,
    out: str | Path,
    *,
    model: ModelConfig | None = None,
    mlflow_run_id: str | None = None,
    tracking: TrackingConfig | None = None,
    train_split: str = "train",
    test_split: str = "test",
) -> dict[str, Any]:
    """Classifier tests of the representation against the event space and high-level features.

    For each feature set of ``config.feature_sets`` and classifier of ``config.classifiers``
    (and Trans+BC, on the constituents, if ``config.trans_bc``), and each of the
    ``config.repeats`` seeds: train on the labelled train split (less one fold per repeat with
    ``classify_resampling='folds'``), score the labelled test split, and compute
    ``binary_metrics`` (AUC, max SIC under the ``min_background`` rule, FPR and rejection at
    ``config.tprs`` and 0.5). See the module docstring for the outputs.

    Args:
        config: the evaluation settings.
        embeddings: the embedding dataset directory.
        data: the prepared dijets the embeddings were made from; needed for 'event',
            'highlevel' and Trans+BC (None otherwise).
        out: output directory (created).
        model: the Trans+BC architecture; None takes the encoder's, from the checkpoint the
            embeddings were made with.
        mlflow_run_id: the encoder's MLflow run; None takes the checkpoint's.
        tracking: the MLflow settings; None (or ``enabled`` false) writes files only.
        train_split, test_split: the split names.

    Returns:
        The summary (as written to ``summary.json``).
    """
    embeddings, out = Path(embeddings), Path(out)
    data = None if data is None else Path(data)
    source = encoder_source(embeddings)
    parent = parent_run(tracking, mlflow_run_id, source)
    model_config = _trans_bc_model(config, data, model, source)
    sets: list[str] = list(dict.fromkeys(config.feature_sets))
    combinations: list[tuple[str, str]] = [
        (fs, c) for fs in sets for c in dict.fromkeys(config.classifiers)
    ]
    if model_config is not None:
        combinations.append((CONSTITUENTS, TRANS_BC))
    if not combinations:
        raise ValueError(
            "nothing to evaluate: evaluate.feature_sets or evaluate.classifiers is empty and "
            "evaluate.trans_bc is off"
        )
    wanted = ["latent", *sets, *([CONSTITUENTS] if model_config is not None else [])]
    inputs = load_inputs(embeddings, data, wanted, [train_split, test_split])
    purpose = "the classifier test"
    train = labelled(inputs, train_split, purpose)
    test = labelled(inputs, test_split, purpose)
    seeds = repeat_seeds(config)
    plan = _resampling_plan(config, train, seeds)
    tprs = sorted({*config.tprs, 0.5})
    keys = test.keys_table()

    results: dict[str, Any] = {}
    tables: list[pa.Table] = []
    rejection: dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]] = {}
    sic: dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]] = {}
    metrics: dict[str, float] = {}
    for feature_set, name in combinations:
        per_seed: list[dict[str, Any]] = []
        for seed, left_out in plan:
            fit_on = train if left_out is None else train.take(train.fold != left_out)
            extra: dict[str, Any] = {}
            if name == TRANS_BC:
                assert model_config is not None
                fit = fit_predict_trans_bc(
                    fit_on.features[CONSTITUENTS],
                    fit_on.label,
                    test.features[CONSTITUENTS],
                    model_config,
                    config,
                    seed,
                )
                scores, extra = fit.scores, {"training": describe(fit)}
            else:
                scores = classifiers.fit_predict(
                    typing.cast("ClassifierName", name),
                    fit_on.features[feature_set],
                    fit_on.label,
                    test.features[feature_set],
                    config,
                    seed,
                )
            seed_metrics = binary_metrics(test.label, scores, config.min_background, tprs)
            per_seed.append(
                {"seed": seed, "left_out_fold": left_out, "metrics": seed_metrics, **extra}
            )
            table = _scores_table(keys, scores, name, feature_set, seed)
            tables.append(
                table.append_column(
                    "left_out_fold", pa.array([left_out] * table.num_rows, pa.int8())
                )
            )
            if seed == seeds[0]:
                label = f"{feature_set} / {DISPLAY_NAMES.get(name, name)}"
                rejection[label], sic[label] = _curves(test.label, scores, config.min_background)
        stats = aggregate(entry["metrics"] for entry in per_seed)
        results[f"{feature_set}/{name}"] = {
            "feature_set": feature_set,
            "classifier": name,
            "aggregate": stats,
            "per_seed": per_seed,
        }
        metrics.update(_mean_std_metrics(stats, f"{feature_set}/{name}"))
        log.info(
            "%s / %s: AUC %.3f +- %.3f, max SIC %.2f, FPR at TPR 0.5 %.3g (%d seeds)",
            feature_set,
            name,
            stats["auc"]["mean"],
            stats["auc"]["std"],
            stats["max_sic"]["mean"],
            stats["fpr_at_tpr_0.5"]["mean"],
            len(seeds),
        )

    plots = [
        plot_rejection(rejection, out / PLOTS / "rejection.png"),
        plot_sic(sic, out / PLOTS / "sic.png"),
        _latent_plot(inputs.in_split(test_split), out / PLOTS / "latent_projection.png", seeds[0]),
    ]
    summary = {
        **_source_summary("classify", source, data, parent),
        "splits": {train_split: _split_counts(train), test_split: _split_counts(test)},
        "seeds": seeds,
        "resampling": config.classify_resampling,
        "left_out_folds": [fold for _, fold in plan if fold is not None],
        "min_background": config.min_background,
        "tprs": tprs,
        "trans_bc_model": None if model_config is None else model_config.model_dump(mode="json"),
        "curves": f"the plotted curves are those of the first seed ({seeds[0]})",
        "results": results,
    }
    child = _child_for(
        parent,
        source,
        config,
        tracking,
        "classify",
        {
            "embeddings": source.manifest.config,
            "splits": [train_split, test_split],
            "trans_bc_model": summary["trans_bc_model"],
        },
    )
    return _finish(out, summary, tables, plots, metrics, child)


def _resampling_plan(
    config: EvaluateConfig, train: EvaluationInputs, seeds: Sequence[int]
) -> list[tuple[int, int | None]]:
    """(seed, train fold left out or None) of each repeat (``config.classify_resampling``)."""
    if config.classify_resampling == "seeds":
        return [(seed, None) for seed in seeds]
    folds = np.unique(train.fold).tolist()
    if len(seeds) > len(folds):
        raise ValueError(
            f"evaluate.classify_resampling = 'folds' leaves out one fold per repeat, but "
            f"evaluate.repeats = {len(seeds)} exceeds the {len(folds)} folds of the train split"
        )
    return [(seed, int(fold)) for seed, fold in zip(seeds, folds, strict=False)]


def _trans_bc_model(
    config: EvaluateConfig, data: Path | None, model: ModelConfig | None, source: EncoderSource
) -> ModelConfig | None:
    """The Trans+BC architecture, or None when the baseline is off."""
    if not config.trans_bc:
        return None
    if data is None:
        raise ValueError(
            "Trans+BC trains on the constituents of the prepared data: pass the dijet dataset "
            "(--data), or turn the baseline off (--set evaluate.trans_bc=false)"
        )
    if model is not None:
        return model
    if source.run_config is None:
        raise ValueError(
            "Trans+BC uses the encoder's architecture, but the checkpoint the embeddings were "
            f"made with ({source.manifest.config.get('checkpoint')}) cannot be read; turn the "
            "baseline off (--set evaluate.trans_bc=false)"
        )
    return source.run_config.model


def _child_for(
    parent: ParentRun | None,
    source: EncoderSource,
    config: EvaluateConfig,
    tracking_config: TrackingConfig | None,
    label: str,
    identity: Mapping[str, Any],
) -> ChildRun | None:
    if parent is None or tracking_config is None:
        return None
    return open_child_run(parent, source, config, tracking_config, label, identity)


# ------------------------------------------------------------------------------------------------
# CWoLa


def cwola(
    config: EvaluateConfig,
    embeddings: str | Path,
    data: str | Path | None,
    out: str | Path,
    *,
    mode: CwolaMode = "idealised",
    classifier: ClassifierName = "fcn",
    mlflow_run_id: str | None = None,
    tracking: TrackingConfig | None = None,
    train_split: str = "train",
    test_split: str = "test",
) -> dict[str, Any]:
    """Weakly supervised CWoLa on each feature set of ``config.feature_sets``.

    ``mode='idealised'``: ``cwola.idealised_scan`` over ``config.cwola_fractions`` and the
    ``repeat_seeds(config)`` seeds, the samples drawn from the labelled train split and the
    metrics measured on the labelled test split. ``mode='bumphunt'``: ``cwola.bump_hunt`` in
    ``config.signal_region`` with sidebands of ``config.sideband_width``, k-fold cross-training
    on the ``fold`` column, cuts at ``config.bumphunt_efficiencies``, seeded ``config.seed``, on
    every event of every split in the embeddings. Arguments as for ``classify``; ``classifier``
    is 'lct' or 'fcn'.

    Returns:
        The summary (as written to ``summary.json``).
    """
    if mode not in ("idealised", "bumphunt"):
        raise ValueError(f"unknown CWoLa mode {mode!r}; expected 'idealised' or 'bumphunt'")
    if classifier not in classifiers.CLASSIFIER_NAMES:
        raise ValueError(
            f"unknown classifier {classifier!r}; expected one of {classifiers.CLASSIFIER_NAMES}"
        )
    embeddings, out = Path(embeddings), Path(out)
    data = None if data is None else Path(data)
    source = encoder_source(embeddings)
    parent = parent_run(tracking, mlflow_run_id, source)
    sets = list(dict.fromkeys(config.feature_sets))
    if not sets:
        raise ValueError("nothing to evaluate: evaluate.feature_sets is empty")
    label = f"cwola-{mode}-{classifier}"
    if mode == "idealised":
        summary, tables, plots, metrics = _idealised(
            config, embeddings, data, out, sets, classifier, train_split, test_split
        )
        splits: list[str] = [train_split, test_split]
    else:
        summary, tables, plots, metrics = _bumphunt(config, embeddings, data, out, sets, classifier)
        splits = sorted(summary["splits"])
    summary = {**_source_summary(label, source, data, parent), **summary}
    identity = {"embeddings": source.manifest.config, "splits": splits}
    child = _child_for(parent, source, config, tracking, label, identity)
    return _finish(out, summary, tables, plots, metrics, child)


_Parts = tuple[dict[str, Any], list[pa.Table], list[Path], dict[str, float]]


def _idealised(
    config: EvaluateConfig,
    embeddings: Path,
    data: Path | None,
    out: Path,
    sets: Sequence[str],
    classifier: ClassifierName,
    train_split: str,
    test_split: str,
) -> _Parts:
    inputs = load_inputs(embeddings, data, ["latent", *sets], [train_split, test_split])
    purpose = "the idealised CWoLa scan"
    train = labelled(inputs, train_split, purpose)
    test = labelled(inputs, test_split, purpose)
    seeds = repeat_seeds(config)
    keys = test.keys_table()
    results: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    tables: list[pa.Table] = []
    metrics: dict[str, float] = {}
    for feature_set in sets:
        scan = idealised_scan(
            train.features[feature_set],
            train.label,
            test.features[feature_set],
            test.label,
            config.cwola_fractions,
            classifier,
            config,
            seeds,
        )
        results[feature_set] = scan.to_dict()
        curves[feature_set] = scan.mean_std()
        long = scan.scores_table()
        table = _scores_table(
            keys.take(long.column("event_index")),
            long.column("score").to_numpy().astype(np.float64),
            classifier,
            feature_set,
            0,
        )
        table = table.set_column(table.schema.get_field_index("seed"), "seed", long["seed"])
        tables.append(table.append_column("signal_fraction", long.column("fraction")))
        for fraction, stats in scan.aggregated().items():
            metrics.update(_mean_std_metrics(stats, f"{feature_set}/{classifier}/f_{fraction:g}"))
    plots = [
        plot_cwola_scan(curves, out / PLOTS / "cwola_scan.png"),
        _latent_plot(inputs.in_split(test_split), out / PLOTS / "latent_projection.png", seeds[0]),
    ]
    summary = {
        "mode": "idealised",
        "classifier": classifier,
        "splits": {train_split: _split_counts(train), test_split: _split_counts(test)},
        "seeds": seeds,
        "fractions": list(config.cwola_fractions),
        "min_background": config.min_background,
        "results": results,
    }
    return summary, tables, plots, {f"cwola/{k}": v for k, v in metrics.items()}


def _bumphunt(
    config: EvaluateConfig,
    embeddings: Path,
    data: Path | None,
    out: Path,
    sets: Sequence[str],
    classifier: ClassifierName,
) -> _Parts:
    inputs = load_inputs(embeddings, data, ["latent", *sets])
    results: dict[str, Any] = {}
    tables: list[pa.Table] = []
    plots: list[Path] = []
    metrics: dict[str, float] = {}
    keys = inputs.keys_table()
    low, high = config.signal_region
    for feature_set in sets:
        hunt = bump_hunt(
            inputs.mjj,
            inputs.features[feature_set],
            inputs.fold,
            config.signal_region,
            config.sideband_width,
            classifier,
            config,
            config.seed,
            efficiencies=config.bumphunt_efficiencies,
            bin_width=config.bumphunt_bin_width,
        )
        labels = inputs.label[hunt.event_index]
        in_sr = (hunt.mjj >= low) & (hunt.mjj < high)
        hunt_summary = hunt.to_dict()
        for cut, cut_summary in zip(hunt.cuts, hunt_summary["cuts"], strict=True):
            kept = in_sr & (hunt.scores >= cut.threshold)
            # Truth, where known: what the cut kept in the signal region.
            cut_summary["signal_region_truth"] = {
                "signal": int((labels[kept] == 1).sum()),
                "background": int((labels[kept] == 0).sum()),
                "unknown": int((labels[kept] == -1).sum()),
            }
            suffix = f"{feature_set}/{classifier}/eff_{cut.efficiency:g}"
            metrics[f"bumphunt/significance/{suffix}"] = cut.significance
            metrics[f"bumphunt/significance_with_uncertainty/{suffix}"] = (
                cut.significance_with_uncertainty
            )
            metrics[f"bumphunt/observed/{suffix}"] = float(cut.observed)
            metrics[f"bumphunt/expected/{suffix}"] = cut.expected
        results[feature_set] = hunt_summary
        table = _scores_table(
            keys.take(pa.array(hunt.event_index)), hunt.scores, classifier, feature_set, config.seed
        )
        table = table.append_column("mjj", pa.array(hunt.mjj)).append_column(
            "in_signal_region", pa.array(in_sr)
        )
        tables.append(table)
        plots.append(plot_mjj_spectra(hunt, out / PLOTS / f"mjj_spectra_{feature_set}.png"))
    plots.append(_latent_plot(inputs, out / PLOTS / "latent_projection.png", config.seed))
    splits = {
        str(split): _split_counts(inputs.in_split(str(split))) for split in np.unique(inputs.split)
    }
    summary = {
        "mode": "bumphunt",
        "classifier": classifier,
        "splits": splits,
        "events": "every event of every split in the embeddings, labelled or not",
        "seed": config.seed,
        "signal_region": list(config.signal_region),
        "sideband_width": config.sideband_width,
        "efficiencies": list(config.bumphunt_efficiencies),
        "results": results,
    }
    return summary, tables, plots, metrics
