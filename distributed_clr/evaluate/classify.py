"""``evaluate classify``: classifier tests of a representation against the event space, the
high-level features and the supervised Trans+BC.

For each feature set of ``config.feature_sets`` and classifier of ``config.classifiers`` (and
Trans+BC on the constituents, if ``config.trans_bc.enabled``), and each repeat: train on the
labelled events of the train split (the FCN and Trans+BC carve their early-stopping events out
of it), score the labelled events of the test split, which no choice ever looks at, and compute
``stats.binary_metrics`` (AUC, max SIC under the ``min_background`` rule, FPR and rejection at
``config.tprs`` and 0.5) with the 68% bootstrap intervals of AUC and max SIC over the test
events (``config.bootstrap``; ``auc_low``, ``auc_high``, ``max_sic_low``, ``max_sic_high``).
Events with label -1 are left out of both, with a logged explanation; the val split is not
used. All classifiers run through one code path
(``classifiers.make_classifier``).

**Repeats** (``config.classify_resampling``): 'seeds' trains on the whole train split with
seeds seed, seed + 1, ...; 'folds' also leaves out the train events of one prepared fold per
repeat (``resampling_plan``).

**Outputs** in ``out``: ``summary.json`` (per combination the ``aggregate`` over the repeats and
every repeat's own metrics, Trans+BC's training per repeat; an interval's bounds in the
aggregate are the means over the repeats), ``scores.parquet`` (with
``left_out_fold``: the train fold a repeat left out, null with 'seeds'), ``plots/rejection.png``
and ``plots/sic.png`` (the first seed's classifier of each combination: pooling several would mix
their calibrations) and ``plots/latent_projection.png``. MLflow metrics are
``<metric>/<feature set>/<classifier>`` in a child run of the encoder's run (``provenance``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distributed_clr.classifiers import TRANS_BC, Classifier, make_classifier
from distributed_clr.config.schema import (
    EvaluateConfig,
    ModelConfig,
    SampleConfig,
    TrackingConfig,
)
from distributed_clr.evaluate.errors import EvaluationError
from distributed_clr.evaluate.idealised import repeat_seeds
from distributed_clr.evaluate.inputs import (
    CONSTITUENTS,
    EvaluationInputs,
    draw,
    labelled,
    load_inputs,
)
from distributed_clr.evaluate.plots import plot_rejection, plot_sic
from distributed_clr.evaluate.process_probe import process_probe
from distributed_clr.evaluate.provenance import (
    EncoderSource,
    encoder_run,
    encoder_source,
    open_evaluation_run,
)
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
from distributed_clr.stats import (
    aggregate,
    binary_metrics,
    roc_curve,
    sic_curve,
    with_intervals,
)
from distributed_clr.storage.location import StoragePath, as_storage_path
from distributed_clr.storage.verify import VerifyLevel
from distributed_clr.tracking import RunHandle

log = logging.getLogger(__name__)

__all__ = ["classify", "resampling_plan"]

Curve = tuple[npt.NDArray[Any], npt.NDArray[Any]]


def classify(
    config: EvaluateConfig,
    embeddings: str | StoragePath,
    data: str | StoragePath | None,
    out: str | Path,
    *,
    model: ModelConfig | None = None,
    mlflow_run_id: str | None = None,
    tracking: TrackingConfig | None = None,
    train_split: str = "train",
    test_split: str = "test",
    verify: VerifyLevel = "sha256",
    sample: SampleConfig | None = None,
) -> dict[str, Any]:
    """Classifier tests of the representation (module docstring).

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
        verify: how the datasets' shards are checked against their manifests.
        sample: which train and test events the classifiers use (``sample.classify_train``,
            ``sample.classify_test``); every labelled one by default.

    Returns:
        The summary (as written to ``summary.json``); a rerun with the same inputs and settings
        returns the recorded one (``report.recorded``).
    """
    embeddings, out = as_storage_path(embeddings), Path(out)
    data = None if data is None else as_storage_path(data)
    check_inputs(out, embeddings, data, verify)
    source = encoder_source(embeddings)
    parent = encoder_run(tracking, mlflow_run_id, source)
    model_config = _trans_bc_model(config, data, model, source)
    trans_bc = None if model_config is None else model_config.model_dump(mode="json")
    sample = sample or SampleConfig()
    identity = evaluation_identity(
        "classify", config, source, data, [train_split, test_split], parent,
        trans_bc_model=trans_bc, sample=sample.model_dump(mode="json"),
    )  # fmt: skip
    return recorded(
        out,
        identity,
        lambda: _classify(
            config,
            source,
            parent,
            model_config,
            data,
            out,
            tracking,
            train_split,
            test_split,
            verify,
            sample,
        ),
    )


def _classify(
    config: EvaluateConfig,
    source: EncoderSource,
    parent: RunHandle | None,
    model_config: ModelConfig | None,
    data: StoragePath | None,
    out: Path,
    tracking: TrackingConfig | None,
    train_split: str,
    test_split: str,
    verify: VerifyLevel,
    sample: SampleConfig,
) -> dict[str, Any]:
    embeddings = source.embeddings
    sets: list[str] = list(dict.fromkeys(config.feature_sets))
    combinations: list[tuple[str, Classifier]] = [
        (fs, make_classifier(c, config)) for fs in sets for c in dict.fromkeys(config.classifiers)
    ]
    if model_config is not None:
        combinations.append((CONSTITUENTS, make_classifier(TRANS_BC, config, model_config)))
    if not combinations:
        raise EvaluationError(
            "nothing to evaluate: evaluate.feature_sets or evaluate.classifiers is empty and "
            "evaluate.trans_bc is off"
        )
    wanted = ["latent", *sets, *([CONSTITUENTS] if model_config is not None else [])]
    inputs = load_inputs(embeddings, data, wanted, [train_split, test_split], verify=verify)
    probes = _process_probes(inputs, ["latent", *sets], train_split, test_split, config)
    binary = bool(combinations) and not (
        probes and not _has_both_classes(inputs, (train_split, test_split))
    )
    if not binary:
        log.warning(
            "no labelled signal and background in both the %s and %s splits: only the SM "
            "process probe is evaluated",
            train_split,
            test_split,
        )
        return _probe_only(
            config, source, parent, data, out, tracking, inputs, probes, train_split, test_split
        )
    purpose = "the classifier test"
    train, train_drawn = draw(
        labelled(inputs, train_split, purpose), sample.classify_train, sample.seed,
        "classify_train", train_split, purpose,
    )  # fmt: skip
    test, test_drawn = draw(
        labelled(inputs, test_split, purpose), sample.classify_test, sample.seed,
        "classify_test", test_split, purpose,
    )  # fmt: skip
    seeds = repeat_seeds(config)
    plan = resampling_plan(config, train, seeds)
    tprs = sorted({*config.tprs, 0.5})
    keys = test.keys_table()

    results: dict[str, Any] = {}
    tables: list[pa.Table] = []
    rejection: dict[str, Curve] = {}
    sic: dict[str, Curve] = {}
    metrics: dict[str, float] = {}
    for feature_set, classifier in combinations:
        name = classifier.name
        per_seed: list[dict[str, Any]] = []
        for seed, left_out in plan:
            fit_on = train if left_out is None else train.take(train.fold != left_out)
            scores, record = classifier.fit_predict(
                fit_on.features[feature_set], fit_on.label, test.features[feature_set], seed
            )
            extra = {} if record is None else {"training": record.to_dict()}
            seed_metrics = with_intervals(
                binary_metrics(test.label, scores, config.min_background, tprs),
                test.label, scores, replicates=config.bootstrap,
                min_background=config.min_background, seed=seed,
            )  # fmt: skip
            per_seed.append(
                {"seed": seed, "left_out_fold": left_out, "metrics": seed_metrics, **extra}
            )
            table = scores_table(keys, scores, name, feature_set, seed)
            tables.append(
                table.append_column(
                    "left_out_fold", pa.array([left_out] * table.num_rows, pa.int8())
                )
            )
            if seed == seeds[0]:
                label = f"{feature_set} / {classifier.display_name}"
                rejection[label], sic[label] = _curves(test.label, scores, config.min_background)
        stats = aggregate(entry["metrics"] for entry in per_seed)
        results[f"{feature_set}/{name}"] = {
            "feature_set": feature_set,
            "classifier": name,
            "aggregate": stats,
            "per_seed": per_seed,
        }
        metrics.update(mean_std_metrics(stats, f"{feature_set}/{name}"))
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
        latent_plot(inputs.in_split(test_split), out / PLOTS / "latent_projection.png", seeds[0]),
    ]
    summary = {
        **source_summary("classify", source, data, parent),
        "splits": {train_split: split_counts(train), test_split: split_counts(test)},
        "composition": {
            "classify_train": train_drawn.to_dict(),
            "classify_test": test_drawn.to_dict(),
        },
        "seeds": seeds,
        "resampling": config.classify_resampling,
        "left_out_folds": [fold for _, fold in plan if fold is not None],
        "min_background": config.min_background,
        "tprs": tprs,
        "trans_bc_model": None if model_config is None else model_config.model_dump(mode="json"),
        "curves": f"the plotted curves are those of the first seed ({seeds[0]})",
        "results": results,
        "process_probe": probes,
    }
    metrics.update(_probe_metrics(probes))
    run = None
    if parent is not None and tracking is not None:
        identity = {
            "embeddings": source.manifest.config,
            "splits": [train_split, test_split],
            "trans_bc_model": summary["trans_bc_model"],
            # Evaluations that draw other events are other runs, not one run overwritten.
            "sample": sample.model_dump(mode="json"),
        }
        run = open_evaluation_run(parent, source, config, tracking, "classify", identity)
    return finish(out, summary, tables, plots, metrics, run)


def _has_both_classes(inputs: EvaluationInputs, splits: Sequence[str]) -> bool:
    """Whether every one of ``splits`` holds background (0) and signal (1) events."""
    for split in splits:
        label = inputs.label[inputs.split == split]
        if not ((label == 0).any() and (label == 1).any()):
            return False
    return True


def _process_probes(
    inputs: EvaluationInputs,
    sets: Sequence[str],
    train_split: str,
    test_split: str,
    config: EvaluateConfig,
) -> dict[str, Any]:
    """The SM process probe of each feature set (``process_probe``), for object-level events."""
    if not (inputs.process_id >= 0).any():
        return {}
    train, test = inputs.in_split(train_split), inputs.in_split(test_split)
    out = {}
    for feature_set in dict.fromkeys(sets):
        result = process_probe(train, test, feature_set, config.seed, config.bootstrap)
        if result is not None:
            out[feature_set] = result
    return out


def _probe_metrics(probes: dict[str, Any]) -> dict[str, float]:
    return {f"process_probe_accuracy/{fs}": float(r["accuracy"]) for fs, r in probes.items()}


def _probe_only(
    config: EvaluateConfig,
    source: EncoderSource,
    parent: RunHandle | None,
    data: StoragePath | None,
    out: Path,
    tracking: TrackingConfig | None,
    inputs: EvaluationInputs,
    probes: dict[str, Any],
    train_split: str,
    test_split: str,
) -> dict[str, Any]:
    """``classify`` of events without both classes: the SM process probe alone."""
    summary = {
        **source_summary("classify", source, data, parent),
        "splits": {
            train_split: split_counts(inputs.in_split(train_split)),
            test_split: split_counts(inputs.in_split(test_split)),
        },
        "results": {},
        "process_probe": probes,
    }
    run = None
    if parent is not None and tracking is not None:
        identity = {"embeddings": source.manifest.config, "splits": [train_split, test_split]}
        run = open_evaluation_run(parent, source, config, tracking, "classify", identity)
    table = pa.table(
        {
            "feature_set": list(probes),
            "accuracy": [r["accuracy"] for r in probes.values()],
            "low": [r["interval"][0] for r in probes.values()],
            "high": [r["interval"][1] for r in probes.values()],
            "chance": [r["chance"] for r in probes.values()],
        }
    )
    return finish(out, summary, [table], [], _probe_metrics(probes), run)


def _curves(
    labels: npt.NDArray[Any], scores: npt.NDArray[np.float64], min_background: int
) -> tuple[Curve, Curve]:
    """((tpr, fpr) where at least ``min_background`` background events pass, (tpr, sic))."""
    fpr, tpr, _ = roc_curve(labels, scores)
    resolved = fpr * float((labels == 0).sum()) >= min_background - 1e-9
    return (tpr[resolved], fpr[resolved]), sic_curve(labels, scores, min_background)


def resampling_plan(
    config: EvaluateConfig, train: EvaluationInputs, seeds: Sequence[int]
) -> list[tuple[int, int | None]]:
    """(seed, train fold left out or None) of each repeat (``config.classify_resampling``)."""
    if config.classify_resampling == "seeds":
        return [(seed, None) for seed in seeds]
    folds = np.unique(train.fold).tolist()
    if len(seeds) > len(folds):
        raise EvaluationError(
            f"evaluate.classify_resampling = 'folds' leaves out one fold per repeat, but "
            f"evaluate.repeats = {len(seeds)} exceeds the {len(folds)} folds of the train split"
        )
    return [(seed, int(fold)) for seed, fold in zip(seeds, folds, strict=False)]


def _trans_bc_model(
    config: EvaluateConfig,
    data: StoragePath | None,
    model: ModelConfig | None,
    source: EncoderSource,
) -> ModelConfig | None:
    """The Trans+BC architecture, or None when the baseline is off."""
    if not config.trans_bc.enabled:
        return None
    if data is None:
        raise EvaluationError(
            "Trans+BC trains on the constituents of the prepared data: pass the dijet dataset "
            "(--data), or turn the baseline off (--set evaluate.trans_bc.enabled=false)"
        )
    if model is not None:
        return model
    if source.run_config is None:
        raise EvaluationError(
            "Trans+BC uses the encoder's architecture, but the checkpoint the embeddings were "
            f"made with ({source.manifest.config.get('checkpoint')}) cannot be read; turn the "
            "baseline off (--set evaluate.trans_bc.enabled=false)"
        )
    return source.run_config.model
