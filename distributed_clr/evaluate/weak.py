"""``evaluate cwola``: weak supervision on each feature set, the idealised scan or the bump hunt.

``mode='idealised'`` (``idealised.idealised_scan``): over ``config.cwola.fractions`` and the
``repeat_seeds(config)`` seeds, the samples drawn from the labelled train split and the metrics
measured on the labelled test split (label -1 events left out of both, with a message). Writes
``plots/cwola_scan.png`` (AUC, max SIC, FPR at TPR 0.5 against the signal fraction, one line
per feature set: Fig. 9 of Dillon, Mastandrea, Nachman 2023); ``scores.parquet`` has a
``signal_fraction`` column; MLflow metrics are ``cwola/<metric>/<feature set>/<classifier>/
f_<f>``.

``mode='bumphunt'`` (``bumphunt.bump_hunt``): in ``config.bumphunt.signal_region`` with
sidebands of ``sideband_width``, k-fold cross-training on the ``fold`` column, cuts at
``efficiencies``, seeded ``config.seed``, on every event of every split in the embeddings,
labelled or not (labels only count how many true signal events each cut keeps). Writes
``plots/mjj_spectra_<feature set>.png``; ``scores.parquet`` has ``mjj`` and
``in_signal_region``; MLflow metrics are ``bumphunt/<quantity>/<feature set>/<classifier>/
eff_<eff>``.

Both also write ``summary.json`` and ``plots/latent_projection.png`` and log to a child run of
the encoder's run (``provenance``, ``report``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from distributed_clr.classifiers import CLASSIFIER_NAMES
from distributed_clr.config.schema import (
    ClassifierName,
    EvaluateConfig,
    SampleConfig,
    TrackingConfig,
)
from distributed_clr.evaluate.errors import EvaluationError
from distributed_clr.evaluate.hunt import hunt_study
from distributed_clr.evaluate.idealised import idealised_scan, repeat_seeds
from distributed_clr.evaluate.inputs import draw, labelled, load_inputs
from distributed_clr.evaluate.plots import plot_cwola_scan
from distributed_clr.evaluate.provenance import encoder_run, encoder_source, open_evaluation_run
from distributed_clr.evaluate.report import (
    PLOTS,
    check_inputs,
    evaluation_identity,
    finish,
    latent_plot,
    mean_std_metrics,
    recorded,
    scores_table,
    source_summary,
    split_counts,
)
from distributed_clr.storage.location import StoragePath, as_storage_path
from distributed_clr.storage.verify import VerifyLevel

log = logging.getLogger(__name__)

__all__ = ["CwolaMode", "cwola"]

CwolaMode = Literal["idealised", "bumphunt"]
_Parts = tuple[dict[str, Any], list[pa.Table], list[Path], dict[str, float]]


def cwola(
    config: EvaluateConfig,
    embeddings: str | StoragePath,
    data: str | StoragePath | None,
    out: str | Path,
    *,
    mode: CwolaMode = "idealised",
    classifier: ClassifierName = "fcn",
    mlflow_run_id: str | None = None,
    tracking: TrackingConfig | None = None,
    train_split: str = "train",
    test_split: str = "test",
    verify: VerifyLevel = "sha256",
    sample: SampleConfig | None = None,
) -> dict[str, Any]:
    """Weakly supervised CWoLa on each feature set of ``config.feature_sets`` (module
    docstring). Arguments as for ``classify``; ``classifier`` is 'lct' or 'fcn'; the bump hunt
    ignores the split names. A rerun with the same inputs and settings returns the recorded
    summary.

    Returns:
        The summary (as written to ``summary.json``).
    """
    if mode not in ("idealised", "bumphunt"):
        raise EvaluationError(f"unknown CWoLa mode {mode!r}; expected 'idealised' or 'bumphunt'")
    if classifier not in CLASSIFIER_NAMES:
        raise EvaluationError(
            f"unknown classifier {classifier!r}; expected one of {CLASSIFIER_NAMES}"
        )
    embeddings, out = as_storage_path(embeddings), Path(out)
    data = None if data is None else as_storage_path(data)
    check_inputs(out, embeddings, data, verify)
    source = encoder_source(embeddings)
    parent = encoder_run(tracking, mlflow_run_id, source)
    sets = list(dict.fromkeys(config.feature_sets))
    if not sets:
        raise EvaluationError("nothing to evaluate: evaluate.feature_sets is empty")
    label = f"cwola-{mode}-{classifier}"
    splits = [train_split, test_split] if mode == "idealised" else ["all"]
    sample = sample or SampleConfig()
    identity = evaluation_identity(
        label, config, source, data, splits, parent, sample=sample.model_dump(mode="json")
    )

    def compute() -> dict[str, Any]:
        if mode == "idealised":
            summary, tables, plots, metrics = _idealised(
                config, embeddings, data, out, sets, classifier, train_split, test_split, verify,
                sample,
            )  # fmt: skip
            used: list[str] = [train_split, test_split]
        else:
            inputs = load_inputs(embeddings, data, ["latent", *sets], verify=verify)
            parts = hunt_study(config, inputs, sets, classifier, sample, out)
            summary, tables, plots, metrics = parts
            used = sorted(summary["splits"])
        summary = {**source_summary(label, source, data, parent), **summary}
        run = None
        if parent is not None and tracking is not None:
            run_identity = {
                "embeddings": source.manifest.config,
                "splits": used,
                "sample": sample.model_dump(mode="json"),
            }
            run = open_evaluation_run(parent, source, config, tracking, label, run_identity)
        return finish(out, summary, tables, plots, metrics, run)

    return recorded(out, identity, compute)


def _idealised(
    config: EvaluateConfig,
    embeddings: StoragePath,
    data: StoragePath | None,
    out: Path,
    sets: Sequence[str],
    classifier: ClassifierName,
    train_split: str,
    test_split: str,
    verify: VerifyLevel,
    sample: SampleConfig,
) -> _Parts:
    splits = [train_split, test_split]
    inputs = load_inputs(embeddings, data, ["latent", *sets], splits, verify=verify)
    purpose = "the idealised CWoLa scan"
    train, train_drawn = draw(
        labelled(inputs, train_split, purpose), sample.cwola, sample.seed, "cwola",
        train_split, purpose,
    )  # fmt: skip
    test, test_drawn = draw(
        labelled(inputs, test_split, purpose), sample.classify_test, sample.seed,
        "classify_test", test_split, purpose,
    )  # fmt: skip
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
            config.cwola.fractions,
            classifier,
            config,
            seeds,
        )
        results[feature_set] = scan.to_dict()
        curves[feature_set] = scan.mean_std()
        long = scan.scores_table()
        table = scores_table(
            keys.take(long.column("event_index")),
            long.column("score").to_numpy().astype(np.float64),
            classifier,
            feature_set,
            0,
        )
        table = table.set_column(table.schema.get_field_index("seed"), "seed", long["seed"])
        tables.append(table.append_column("signal_fraction", long.column("fraction")))
        for fraction, stats in scan.aggregated().items():
            metrics.update(mean_std_metrics(stats, f"{feature_set}/{classifier}/f_{fraction:g}"))
    plots = [
        plot_cwola_scan(curves, out / PLOTS / "cwola_scan.png"),
        latent_plot(inputs.in_split(test_split), out / PLOTS / "latent_projection.png", seeds[0]),
    ]
    summary = {
        "mode": "idealised",
        "classifier": classifier,
        "splits": {train_split: split_counts(train), test_split: split_counts(test)},
        "composition": {"cwola": train_drawn.to_dict(), "classify_test": test_drawn.to_dict()},
        "seeds": seeds,
        "fractions": list(config.cwola.fractions),
        "min_background": config.min_background,
        "results": results,
    }
    return summary, tables, plots, {f"cwola/{k}": v for k, v in metrics.items()}
