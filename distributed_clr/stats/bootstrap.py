"""Bootstrap intervals of AUC and maximum SIC over the test events.

The spread over repeats (seeds, folds) measures how much the *classifier* varies; it says
nothing about how well a fixed test set measures a fixed classifier. ``bootstrap_intervals``
resamples the test events with replacement, signal and background separately (a stratified
bootstrap, so every replicate has the test set's class counts and a defined ROC curve), and
quotes the central ``level`` interval of each metric over the replicates.

All replicates are computed at once from multinomial event weights on the events sorted once
by score (no per-event or per-replicate Python loop), in blocks of bounded memory.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from distributed_clr.stats.metrics import check_binary

__all__ = ["BOOTSTRAP_LEVEL", "bootstrap_intervals", "with_intervals"]

BOOTSTRAP_LEVEL = 0.68
"""The central probability of a quoted interval (about +-1 sigma)."""
_BLOCK_ELEMENTS = 4_000_000  # replicates x events per block: ~32 MB of float64 weights


def bootstrap_intervals(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    min_background: int = 20,
    replicates: int = 200,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """The ``level`` bootstrap intervals of ``auc`` and ``max_sic`` over the test events.

    ``max_sic`` follows ``binary_metrics``: in each replicate, the largest SIC over cuts that at
    least ``min_background`` (resampled) background events pass; replicates without such a cut
    are left out, and the interval is (NaN, NaN) when none has one.

    Args:
        labels: (B,) 0 background, 1 signal.
        scores: (B,) larger means more signal-like.
        min_background: as in ``binary_metrics``.
        replicates: bootstrap replicates (>= 10).
        level: central probability of the interval, in (0, 1).
        seed: fixes the resampling.

    Returns:
        {"auc": (low, high), "max_sic": (low, high)}.
    """
    if replicates < 10:
        raise ValueError(f"replicates must be >= 10, got {replicates}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    y, s = check_binary(labels, scores)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    signal = np.flatnonzero(y_sorted == 1)
    background = np.flatnonzero(y_sorted == 0)
    n_signal, n_background = len(signal), len(background)
    rng = np.random.default_rng(seed)
    block = max(1, min(replicates, _BLOCK_ELEMENTS // len(y)))
    aucs: list[npt.NDArray[np.float64]] = []
    sics: list[npt.NDArray[np.float64]] = []
    for start in range(0, replicates, block):
        k = min(block, replicates - start)
        signal_weight = np.zeros((k, len(y)))
        background_weight = np.zeros((k, len(y)))
        signal_weight[:, signal] = rng.multinomial(n_signal, np.full(n_signal, 1 / n_signal), k)
        background_weight[:, background] = rng.multinomial(
            n_background, np.full(n_background, 1 / n_background), k
        )
        signal_pass = np.cumsum(signal_weight, axis=1)[:, last]
        background_pass = np.cumsum(background_weight, axis=1)[:, last]
        tpr = np.concatenate([np.zeros((k, 1)), signal_pass / n_signal], axis=1)
        fpr = np.concatenate([np.zeros((k, 1)), background_pass / n_background], axis=1)
        # Trapezoids between distinct thresholds: ties count one half, as in the AUC itself.
        aucs.append(0.5 * (np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1])).sum(axis=1))
        resolved = background_pass >= min_background
        with np.errstate(divide="ignore", invalid="ignore"):
            sic = np.where(resolved, tpr[:, 1:] / np.sqrt(fpr[:, 1:]), -np.inf)
        best = sic.max(axis=1)
        sics.append(np.where(np.isfinite(best), best, np.nan))
    tail = 100 * (1 - level) / 2
    out: dict[str, tuple[float, float]] = {}
    for name, values in (("auc", np.concatenate(aucs)), ("max_sic", np.concatenate(sics))):
        finite = values[np.isfinite(values)]
        if len(finite) == 0:
            out[name] = (math.nan, math.nan)
        else:
            low, high = np.percentile(finite, [tail, 100 - tail])
            out[name] = (float(low), float(high))
    return out


def with_intervals(
    metrics: dict[str, float],
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    replicates: int,
    min_background: int,
    seed: int,
) -> dict[str, float]:
    """``metrics`` (of ``binary_metrics``) with ``auc_low``, ``auc_high``, ``max_sic_low`` and
    ``max_sic_high``: the ``BOOTSTRAP_LEVEL`` intervals over the test events; unchanged when
    ``replicates`` is 0."""
    if replicates == 0:
        return metrics
    intervals = bootstrap_intervals(
        labels, scores, min_background=min_background, replicates=replicates, seed=seed
    )
    out = dict(metrics)
    for name, (low, high) in intervals.items():
        out[f"{name}_low"], out[f"{name}_high"] = low, high
    return out
