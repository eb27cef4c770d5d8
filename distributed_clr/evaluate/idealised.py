"""The idealised CWoLa scan: how well a representation finds a small signal fraction.

Classification Without Labels (Metodiev, Nachman, Thaler 2017): a classifier trained to tell two
mixed samples apart, one richer in signal than the other, approximates the optimal signal vs
background classifier. Its ability to find a small signal fraction f measures how well a
representation exposes the signal (Dillon, Mastandrea, Nachman 2023, Fig. 9).

Sample 1 is background only; sample 2 is background plus signal, signal making up a fraction f
of it. Both come from the training pools, never sharing a background event; the classifier
learns sample 2 (label 1) vs sample 1 (label 0), then scores the labelled test set, and the
metrics are computed against the true test labels. Every f uses the same sample size
(``max_sample_size``: the largest the pools allow for every requested f), so the points of a
scan differ only in f. For a given seed the samples are nested across f (the same random
permutation of each pool is cut at different places), which makes the scan smooth. The samples
of seed s are drawn with ``derive_seed(s, 0)``, its classifier seeded ``derive_seed(s, 1)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distributed_clr import classifiers
from distributed_clr.config.schema import ClassifierName, EvaluateConfig
from distributed_clr.evaluate.errors import EvaluationError
from distributed_clr.seeds import derive_seed
from distributed_clr.stats import (
    aggregate,
    binary_metrics,
    check_binary,
    json_safe,
    with_intervals,
)

log = logging.getLogger(__name__)

__all__ = [
    "SCAN_METRICS",
    "ScanPoint",
    "ScanResult",
    "idealised_samples",
    "idealised_scan",
    "max_sample_size",
    "repeat_seeds",
    "signal_count",
]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

SCAN_METRICS = ("auc", "max_sic", "fpr_at_tpr_0.5")
"""The metrics of the CWoLa scan figure."""


def repeat_seeds(config: EvaluateConfig) -> list[int]:
    """The ``config.repeats`` seeds of repeated measurements: seed, seed + 1, ..."""
    return [config.seed + i for i in range(config.repeats)]


# ------------------------------------------------------------------------------------------------
# idealised CWoLa samples


def signal_count(fraction: float, n_per_sample: int) -> int:
    """Signal events in a sample 2 of ``n_per_sample`` events at signal fraction ``fraction``
    (rounded half up; a tiny f can round to 0 events)."""
    return math.floor(fraction * n_per_sample + 0.5)


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise EvaluationError(f"signal fraction must lie in [0, 1], got {fraction}")


def idealised_samples(
    n_background: int,
    n_signal: int,
    fraction: float,
    n_per_sample: int,
    rng: np.random.Generator,
) -> tuple[IndexArray, IndexArray, IndexArray]:
    """Draw the two CWoLa samples from a background pool and a signal pool.

    Sample 1 is ``n_per_sample`` background events; sample 2 is ``n_per_sample`` events of
    which ``signal_count(fraction, n_per_sample)`` are signal, the rest background. The two
    samples never share a background event. f = 1 makes sample 2 pure signal; f = 0 makes both
    samples pure background.

    Args:
        n_background: size of the background pool (label 0 training events).
        n_signal: size of the signal pool (label 1 training events).
        fraction: signal fraction f of sample 2, in [0, 1].
        n_per_sample: events per sample (>= 1).
        rng: the source of randomness (the pools are permuted once each).

    Returns:
        (sample1, sample2_background, sample2_signal): sorted int64 indices into the background
        pool, the background pool, and the signal pool.

    Raises:
        EvaluationError: an f outside [0, 1], or a pool too small (the message says how many events
            are needed and how many there are).
    """
    _check_fraction(fraction)
    if n_per_sample < 1:
        raise ValueError(f"n_per_sample must be >= 1, got {n_per_sample}")
    n_sig = signal_count(fraction, n_per_sample)
    n_bkg2 = n_per_sample - n_sig
    needed = n_per_sample + n_bkg2
    if needed > n_background:
        raise EvaluationError(
            f"CWoLa samples of {n_per_sample} events at f = {fraction:g} need {needed} "
            f"background events ({n_per_sample} for sample 1, {n_bkg2} for sample 2); "
            f"the pool has {n_background}"
        )
    if n_sig > n_signal:
        raise EvaluationError(
            f"CWoLa samples of {n_per_sample} events at f = {fraction:g} need {n_sig} signal "
            f"events; the pool has {n_signal}"
        )
    background = rng.permutation(n_background)
    signal = rng.permutation(n_signal)
    return (
        np.sort(background[:n_per_sample]).astype(np.int64),
        np.sort(background[n_per_sample:needed]).astype(np.int64),
        np.sort(signal[:n_sig]).astype(np.int64),
    )


def _feasible(n: int, n_background: int, n_signal: int, fractions: Sequence[float]) -> bool:
    return all(
        2 * n - signal_count(f, n) <= n_background and signal_count(f, n) <= n_signal
        for f in fractions
    )


def max_sample_size(n_background: int, n_signal: int, fractions: Sequence[float]) -> int:
    """The largest ``n_per_sample`` for which ``idealised_samples`` works at every fraction.

    Sample 1 and the background of sample 2 take n (2 - f) background events, and sample 2
    takes n f signal events; the smallest f bounds the first, the largest f the second.
    """
    if not fractions:
        raise EvaluationError("no signal fractions given")
    for f in fractions:
        _check_fraction(f)
    bounds = [n_background / (2.0 - f) for f in fractions]
    bounds += [(n_signal + 0.5) / f for f in fractions if f > 0]
    n = int(min(bounds)) + 1
    while n > 0 and not _feasible(n, n_background, n_signal, fractions):
        n -= 1
    if n < 1:
        raise EvaluationError(
            f"the pools ({n_background} background, {n_signal} signal events) are too small "
            f"for CWoLa samples at fractions {list(fractions)}"
        )
    return n


# ------------------------------------------------------------------------------------------------
# the idealised scan


@dataclass
class ScanPoint:
    """One trained classifier of the scan: its fraction, seed, samples and test metrics."""

    fraction: float
    seed: int
    n_signal: int
    """Signal events in sample 2."""
    realised_fraction: float
    """n_signal / n_per_sample, what f really was after rounding."""
    metrics: dict[str, float]
    """``binary_metrics`` of the test scores against the true test labels."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "seed": self.seed,
            "n_signal": self.n_signal,
            "realised_fraction": self.realised_fraction,
            "metrics": json_safe(self.metrics),
        }


@dataclass
class ScanResult:
    """An idealised CWoLa scan: one ``ScanPoint`` per (fraction, seed), and the test scores."""

    classifier: str
    n_per_sample: int
    min_background: int
    points: list[ScanPoint]
    scores: npt.NDArray[np.float32]
    """(len(points), n_test): row r holds the test scores of the classifier of points[r]."""

    @property
    def fractions(self) -> list[float]:
        """The distinct fractions, ascending."""
        return sorted({p.fraction for p in self.points})

    def aggregated(self) -> dict[float, dict[str, dict[str, float]]]:
        """Per fraction, ``aggregate`` over the seeds: {f: {metric: {mean, std, n}}}."""
        return {
            f: aggregate(p.metrics for p in self.points if p.fraction == f) for f in self.fractions
        }

    def mean_std(
        self, metrics: Sequence[str] = SCAN_METRICS
    ) -> dict[float, dict[str, tuple[float, float]]]:
        """{f: {metric: (mean, std)}}, the input ``plots.plot_cwola_scan`` takes per curve."""
        return {
            f: {m: (stats[m]["mean"], stats[m]["std"]) for m in metrics if m in stats}
            for f, stats in self.aggregated().items()
        }

    def scores_table(self) -> pa.Table:
        """Long table of the per-event test scores (for ``scores.parquet``).

        Columns: event_index (position in the test arrays), score, seed, fraction.
        """
        n_runs, n_test = self.scores.shape
        return pa.table(
            {
                "event_index": pa.array(np.tile(np.arange(n_test, dtype=np.int64), n_runs)),
                "score": pa.array(self.scores.reshape(-1)),
                "seed": pa.array(np.repeat([p.seed for p in self.points], n_test).astype(np.int64)),
                "fraction": pa.array(
                    np.repeat([p.fraction for p in self.points], n_test).astype(np.float64)
                ),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no per-event scores; NaN/inf become null)."""
        return {
            "classifier": self.classifier,
            "n_per_sample": self.n_per_sample,
            "min_background": self.min_background,
            "points": [p.to_dict() for p in self.points],
            "aggregated": json_safe({f"{f:g}": v for f, v in self.aggregated().items()}),
        }


def _pools(y_train: npt.ArrayLike, rows: int) -> tuple[IndexArray, IndexArray]:
    labels = np.asarray(y_train)
    if labels.shape != (rows,):
        raise ValueError(f"y_train must be 1-D with {rows} entries, got shape {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise EvaluationError(
            "the idealised CWoLa scan needs true labels 0/1 in the training pool; found "
            f"{np.unique(labels[~np.isin(labels, (0, 1))])[:5].tolist()}"
        )
    return np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)


def idealised_scan(
    x_train: npt.ArrayLike,
    y_train: npt.ArrayLike,
    x_test: npt.ArrayLike,
    y_test: npt.ArrayLike,
    fractions: Sequence[float],
    classifier: ClassifierName,
    config: EvaluateConfig,
    seeds: Sequence[int],
    *,
    n_per_sample: int | None = None,
    min_background: int | None = None,
) -> ScanResult:
    """The idealised CWoLa scan over signal fractions and seeds.

    For each f and seed: draw the two samples from the training pools (``idealised_samples``,
    sampling seeded by ``derive_seed(seed, 0)``), train ``classifier`` on sample 2 (1) vs
    sample 1 (0) (seeded by ``derive_seed(seed, 1)``), score the test set and compute
    ``binary_metrics`` against ``y_test``.

    Args:
        x_train, y_train: (N, F) and (N,) labelled training pool (0 background, 1 signal).
        x_test, y_test: (M, F) and (M,) labelled test set, never used for training or choices.
        fractions: signal fractions f of sample 2.
        classifier: 'lct' or 'fcn' (``classifiers.make_classifier``).
        config: the FCN's settings (``config.fcn``); ``config.min_background`` is the SIC
            rule's default.
        seeds: one measurement per seed and fraction.
        n_per_sample: events per sample; default ``max_sample_size`` of the pools (every f
            uses the same size).
        min_background: overrides ``config.min_background``.
    """
    if not seeds:
        raise ValueError("no seeds given")
    train = np.asarray(x_train)
    test = np.asarray(x_test)
    if train.ndim != 2:
        raise ValueError(f"x_train must be 2-D (events, features), got shape {train.shape}")
    background_pool, signal_pool = _pools(y_train, len(train))
    labels_test = np.asarray(y_test)
    if test.ndim != 2 or labels_test.shape != (len(test),):
        raise ValueError(
            f"x_test (M, F) and y_test (M,) must agree, got {test.shape} and {labels_test.shape}"
        )
    check_binary(labels_test, np.zeros(len(labels_test)))  # true 0/1 labels, both classes
    min_bkg = config.min_background if min_background is None else min_background
    if n_per_sample is None:
        size = max_sample_size(len(background_pool), len(signal_pool), fractions)
    else:
        size = n_per_sample
    log.info(
        "idealised CWoLa scan (%s): %d fractions x %d seeds, %d events per sample, pools of "
        "%d background and %d signal events",
        classifier,
        len(fractions),
        len(seeds),
        size,
        len(background_pool),
        len(signal_pool),
    )
    model = classifiers.make_classifier(classifier, config)
    points: list[ScanPoint] = []
    rows: list[FloatArray] = []
    for fraction in fractions:
        for seed in seeds:
            rng = np.random.default_rng(derive_seed(seed, 0))
            s1, s2_bkg, s2_sig = idealised_samples(
                len(background_pool), len(signal_pool), fraction, size, rng
            )
            if fraction > 0 and len(s2_sig) == 0:
                log.warning("f = %g rounds to 0 signal events in %d; it is f = 0", fraction, size)
            index = np.concatenate(
                [background_pool[s1], background_pool[s2_bkg], signal_pool[s2_sig]]
            )
            target = np.r_[np.zeros(len(s1)), np.ones(len(s2_bkg) + len(s2_sig))]
            scores, _ = model.fit_predict(train[index], target, test, derive_seed(seed, 1))
            metrics = with_intervals(
                binary_metrics(labels_test, scores, min_background=min_bkg),
                labels_test, scores, replicates=config.bootstrap, min_background=min_bkg,
                seed=int(seed),
            )  # fmt: skip
            points.append(ScanPoint(fraction, int(seed), len(s2_sig), len(s2_sig) / size, metrics))
            rows.append(scores)
            log.info(
                "f = %g, seed %d: AUC %.3f, max SIC %.2f",
                fraction,
                seed,
                metrics["auc"],
                metrics["max_sic"],
            )
    return ScanResult(classifier, size, min_bkg, points, np.stack(rows).astype(np.float32))
