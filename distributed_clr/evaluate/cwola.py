"""Weak supervision: the idealised CWoLa scan and the CWoLa bump hunt in m_jj.

Classification Without Labels (Metodiev, Nachman, Thaler 2017): a classifier trained to tell two
mixed samples apart, one richer in signal than the other, approximates the optimal signal vs
background classifier. Its ability to find a small signal fraction f measures how well a
representation exposes the signal (Dillon, Mastandrea, Nachman 2023, Fig. 9).

**Idealised scan.** Sample 1 is background only; sample 2 is background plus signal, signal
making up a fraction f of it. Both come from the training pools, never sharing a background
event; the classifier learns sample 2 (label 1) vs sample 1 (label 0), then scores the labelled
test set, and the metrics are computed against the true test labels. Every f uses the same
sample size (``max_sample_size``: the largest the pools allow for every requested f), so the
points of a scan differ only in f. For a given seed the samples are nested across f (the same
random permutation of each pool is cut at different places), which makes the scan smooth.

**Bump hunt** (Collins, Howe, Nachman 2018). Events in the signal region (SR, m_jj in [low,
high)) are labelled 1 and those in the sidebands (SB, [low - w, low) and [high, high + w))
0; k-fold cross-training scores every event with a classifier that never saw it. Cuts keeping
the top fraction ``eff`` of the SR+SB events (the threshold is a quantile of all SR+SB scores)
enrich a localised signal; after each cut the sideband m_jj bins are fitted with the dijet
function f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x), x = m_jj / sqrt(s) (binned Poisson likelihood;
the 3- and 2-parameter forms, p3 = 0 and then p1 = 0, with few sideband bins), the fit is
integrated over the SR to give the expected background B, and the local significance of the
observed N is the asymptotic Poisson Z = sqrt(2 (N ln(N / B) - (N - B))), negative for deficits;
a second Z also accounts for the fit's uncertainty on B (``local_significance``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from scipy.optimize import minimize
from scipy.special import logsumexp

from distributed_clr.config.schema import ClassifierName, EvaluateConfig
from distributed_clr.evaluate import classifiers
from distributed_clr.evaluate.metrics import aggregate, binary_metrics, check_binary, json_safe

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

SQRT_S = 13_000.0
"""Centre-of-mass energy [GeV] that scales m_jj in the dijet function, x = m_jj / sqrt(s)."""

SCAN_METRICS = ("auc", "max_sic", "fpr_at_tpr_0.5")
"""The metrics of the CWoLa scan figure."""


def derived_seed(seed: int, stream: int) -> int:
    """An independent 32-bit seed for one random stream of a measurement seeded ``seed``."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint32)[0])


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
        raise ValueError(f"signal fraction must lie in [0, 1], got {fraction}")


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
        ValueError: an f outside [0, 1], or a pool too small (the message says how many events
            are needed and how many there are).
    """
    _check_fraction(fraction)
    if n_per_sample < 1:
        raise ValueError(f"n_per_sample must be >= 1, got {n_per_sample}")
    n_sig = signal_count(fraction, n_per_sample)
    n_bkg2 = n_per_sample - n_sig
    needed = n_per_sample + n_bkg2
    if needed > n_background:
        raise ValueError(
            f"CWoLa samples of {n_per_sample} events at f = {fraction:g} need {needed} "
            f"background events ({n_per_sample} for sample 1, {n_bkg2} for sample 2); "
            f"the pool has {n_background}"
        )
    if n_sig > n_signal:
        raise ValueError(
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
        raise ValueError("no signal fractions given")
    for f in fractions:
        _check_fraction(f)
    bounds = [n_background / (2.0 - f) for f in fractions]
    bounds += [(n_signal + 0.5) / f for f in fractions if f > 0]
    n = int(min(bounds)) + 1
    while n > 0 and not _feasible(n, n_background, n_signal, fractions):
        n -= 1
    if n < 1:
        raise ValueError(
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
        raise ValueError(
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
    sampling seeded by ``derived_seed(seed, 0)``), train ``classifier`` on sample 2 (1) vs
    sample 1 (0) (seeded by ``derived_seed(seed, 1)``), score the test set and compute
    ``binary_metrics`` against ``y_test``.

    Args:
        x_train, y_train: (N, F) and (N,) labelled training pool (0 background, 1 signal).
        x_test, y_test: (M, F) and (M,) labelled test set, never used for training or choices.
        fractions: signal fractions f of sample 2.
        classifier: 'lct' or 'fcn'.
        config: classifier settings; ``config.min_background`` is the SIC rule's default.
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
    points: list[ScanPoint] = []
    rows: list[FloatArray] = []
    for fraction in fractions:
        for seed in seeds:
            rng = np.random.default_rng(derived_seed(seed, 0))
            s1, s2_bkg, s2_sig = idealised_samples(
                len(background_pool), len(signal_pool), fraction, size, rng
            )
            if fraction > 0 and len(s2_sig) == 0:
                log.warning("f = %g rounds to 0 signal events in %d; it is f = 0", fraction, size)
            index = np.concatenate(
                [background_pool[s1], background_pool[s2_bkg], signal_pool[s2_sig]]
            )
            target = np.r_[np.zeros(len(s1)), np.ones(len(s2_bkg) + len(s2_sig))]
            scores = classifiers.fit_predict(
                classifier, train[index], target, test, config, derived_seed(seed, 1)
            )
            metrics = binary_metrics(labels_test, scores, min_background=min_bkg)
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


# ------------------------------------------------------------------------------------------------
# the dijet function fit

_FORM_COLUMNS = {4: (0, 1, 2, 3), 3: (0, 1, 2), 2: (0, 2)}
"""Parameters of the 4-, 3- and 2-parameter dijet functions (0: ln p0, 1: p1, 2: p2, 3: p3)."""
_PARAM_NAMES = ("log_p0", "p1", "p2", "p3")
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)


def _basis(mjj: FloatArray) -> FloatArray:
    """(..., 4) terms of ln f: [1, ln(1 - x), -ln x, -(ln x)^2], x = m_jj / sqrt(s)."""
    x = mjj / SQRT_S
    log_x = np.log(x)
    return np.stack([np.ones_like(x), np.log1p(-x), -log_x, -(log_x**2)], axis=-1)


def _nodes(edges: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes (bins, q) in each bin and log of their weights times half-width."""
    half = 0.5 * np.diff(edges)
    centre = 0.5 * (edges[1:] + edges[:-1])
    nodes = centre[:, None] + half[:, None] * _NODES[None, :]
    return nodes, np.log(half)[:, None] + np.log(_WEIGHTS)[None, :]


def dijet_expected_counts(edges: npt.ArrayLike, params: dict[str, float]) -> FloatArray:
    """Expected events per bin: the integral over each bin of the dijet density [1/GeV]

    f(m) = p0 (1 - x)^p1 / x^(p2 + p3 ln x),  x = m / sqrt(s),  sqrt(s) = 13 TeV,

    with ``params`` = {log_p0, p1, p2, p3} (missing ones are 0), by 8-point Gauss-Legendre.
    """
    bins = np.asarray(edges, dtype=np.float64)
    theta = np.array([params.get(name, 0.0) for name in _PARAM_NAMES])
    nodes, log_w = _nodes(bins)
    log_mu = logsumexp(_basis(nodes) @ theta + log_w, axis=1)
    return np.asarray(np.exp(np.minimum(log_mu, 600.0)))


def _standardised_basis(nodes: FloatArray, mean: FloatArray, std: FloatArray) -> FloatArray:
    """(..., 4) terms of ln f with the three shape terms centred and scaled by (mean, std)."""
    basis = _basis(nodes)
    return np.concatenate([basis[..., :1], (basis[..., 1:] - mean) / std], axis=-1)


@dataclass
class SidebandFit:
    """A binned Poisson maximum-likelihood fit of the dijet function to the sideband bins.

    Internally ln f = theta . z with z the terms of ln f standardised over the fitted range;
    ``params`` gives the same function in the physical parametrisation.
    """

    n_params: int
    params: dict[str, float]
    """log_p0, p1, p2, p3 of ``dijet_expected_counts`` (unfitted ones are 0)."""
    nll: float
    """Poisson negative log-likelihood at the minimum (up to a constant)."""
    deviance: float
    """Poisson deviance 2 sum(mu - n + n ln(n / mu)) of the fitted bins (~ chi2 with ndf)."""
    ndf: int
    converged: bool
    theta: FloatArray = field(repr=False)
    """(4,) coefficients of the standardised terms (0 for those outside the form)."""
    covariance: FloatArray = field(repr=False)
    """(n_params, n_params) inverse Fisher information of the form's coefficients."""
    basis_mean: FloatArray = field(repr=False)
    basis_std: FloatArray = field(repr=False)

    def _bin_terms(self, edges: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Per bin: expected count mu (K,) and its gradient d mu / d theta (K, n_params)."""
        nodes, log_w = _nodes(np.asarray(edges, dtype=np.float64))
        z = _standardised_basis(nodes, self.basis_mean, self.basis_std)
        z = z[..., list(_FORM_COLUMNS[self.n_params])]
        with np.errstate(over="ignore"):
            weight = np.exp(
                np.minimum(z @ self.theta[list(_FORM_COLUMNS[self.n_params])], 600.0) + log_w
            )
        return weight.sum(axis=1), (weight[..., None] * z).sum(axis=1)

    def expected(self, edges: npt.ArrayLike) -> FloatArray:
        """Expected counts in the bins ``edges`` (anywhere, e.g. the signal region)."""
        return self._bin_terms(edges)[0]

    def expected_total(
        self, edges: npt.ArrayLike, bins: npt.ArrayLike | None = None
    ) -> tuple[float, float]:
        """The expected count summed over ``bins`` (a (K,) mask; all by default) and its
        standard deviation from the fit's statistical uncertainty (linear propagation)."""
        mu, gradient = self._bin_terms(edges)
        chosen = np.ones(len(mu), dtype=bool) if bins is None else np.asarray(bins, dtype=bool)
        total_gradient = gradient[chosen].sum(axis=0)
        variance = float(total_gradient @ self.covariance @ total_gradient)
        return float(mu[chosen].sum()), math.sqrt(max(variance, 0.0))

    def to_dict(self) -> dict[str, Any]:
        summary: dict[str, Any] = json_safe(
            {
                "n_params": self.n_params,
                "params": self.params,
                "nll": self.nll,
                "deviance": self.deviance,
                "ndf": self.ndf,
                "converged": self.converged,
            }
        )
        return summary


def _minimise(
    counts: FloatArray, z: FloatArray, log_w: FloatArray, start: FloatArray
) -> tuple[FloatArray, float, bool]:
    """Minimise sum(mu - n ln mu) over theta, mu_i = sum_q exp(z_iq . theta + log_w_iq)."""

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        eta = z @ theta + log_w  # (bins, q)
        log_mu = logsumexp(eta, axis=1)
        mu = np.exp(np.minimum(log_mu, 600.0))
        share = np.exp(eta - log_mu[:, None])  # each node's part of its bin
        grad = ((mu - counts)[:, None, None] * share[..., None] * z).sum(axis=(0, 1))
        return float(np.sum(mu - counts * log_mu)), grad

    # Trial steps of the line search may overflow; they are rejected, so stay quiet about them.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        result = minimize(objective, start, jac=True, method="BFGS", options={"gtol": 1e-6})
    theta = np.asarray(result.x, dtype=np.float64)
    # BFGS often stops with "precision loss" at a perfectly good minimum; judge the gradient.
    scale = max(1.0, float(np.sqrt(counts.sum())))
    converged = bool(result.success) or float(np.max(np.abs(result.jac))) < 1e-3 * scale
    return theta, float(result.fun), converged


def _check_fit_input(
    edges: npt.ArrayLike, counts: npt.ArrayLike, fit_bins: npt.ArrayLike, n_params: int
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    if n_params not in _FORM_COLUMNS:
        raise ValueError(f"n_params must be 2, 3 or 4, got {n_params}")
    bins = np.asarray(edges, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    mask = np.asarray(fit_bins, dtype=bool)
    if not (bins.ndim == 1 and n.shape == mask.shape == (len(bins) - 1,)):
        raise ValueError(
            f"{len(bins)} edges need {len(bins) - 1} counts and fit flags, "
            f"got {n.shape} and {mask.shape}"
        )
    if not (np.all(np.diff(bins) > 0) and bins[0] > 0 and bins[-1] < SQRT_S):
        raise ValueError(f"bin edges must increase within (0, {SQRT_S:g}) GeV")
    if not (np.isfinite(n).all() and (n >= 0).all()):
        raise ValueError("counts must be finite and non-negative")
    if mask.sum() < n_params + 1:
        raise ValueError(
            f"a {n_params}-parameter fit needs >= {n_params + 1} bins, got {mask.sum()}"
        )
    return bins, n, mask


def _fit_forms(
    edges: npt.ArrayLike, counts: npt.ArrayLike, fit_bins: npt.ArrayLike, max_params: int
) -> list[SidebandFit]:
    """The 2-, 3-, ... ``max_params``-parameter fits, each started from the previous optimum.

    The fits run in a standardised basis: each term of ln f is centred and scaled over the
    fitted range, which makes the nearly collinear terms well conditioned.
    """
    bins, n, mask = _check_fit_input(edges, counts, fit_bins, max_params)
    left = np.flatnonzero(mask)
    nodes, log_w = _nodes(bins)
    nodes, log_w, n_fit = nodes[left], log_w[left], n[left]
    shape_terms = _basis(nodes)[..., 1:].reshape(-1, 3)
    mean, std = shape_terms.mean(axis=0), shape_terms.std(axis=0)
    z_full = _standardised_basis(nodes, mean, std)

    theta = np.zeros(4)
    theta[0] = math.log(max(n_fit.sum(), 0.5) / float(np.exp(logsumexp(log_w))))
    fits = []
    for k in range(2, max_params + 1):
        columns = list(_FORM_COLUMNS[k])
        fitted, nll, converged = _minimise(n_fit, z_full[..., columns], log_w, theta[columns])
        theta[columns] = fitted
        # Back to the physical parameters: theta_j z_j = (theta_j / s_j) b_j - theta_j m_j / s_j.
        slopes = theta[1:] / std
        params = {
            "log_p0": float(theta[0] - np.sum(slopes * mean)),
            "p1": float(slopes[0]),
            "p2": float(slopes[1]),
            "p3": float(slopes[2]),
        }
        fit = SidebandFit(
            k,
            params,
            nll,
            math.nan,
            len(left) - k,
            converged,
            theta.copy(),
            np.zeros((k, k)),
            mean,
            std,
        )
        mu_all, gradient_all = fit._bin_terms(bins)
        mu, gradient = mu_all[left], gradient_all[left]
        # Fisher information of Poisson bins: sum_i grad mu_i grad mu_i^T / mu_i.
        fisher = (gradient / np.maximum(mu, 1e-300)[:, None]).T @ gradient
        fit.covariance = np.asarray(np.linalg.pinv(fisher), dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.where(n_fit > 0, np.log(n_fit / mu), 0.0)
        fit.deviance = float(2.0 * np.sum(mu - n_fit + n_fit * log_ratio))
        fits.append(fit)
    return fits


def fit_dijet_function(
    edges: npt.ArrayLike, counts: npt.ArrayLike, fit_bins: npt.ArrayLike, n_params: int = 4
) -> SidebandFit:
    """Fit the dijet function to the bins selected by ``fit_bins`` (binned Poisson likelihood).

    Args:
        edges: (K + 1,) bin edges [GeV], within (0, sqrt(s)).
        counts: (K,) events per bin.
        fit_bins: (K,) bool, the bins to fit (the sidebands).
        n_params: 2 (p1 = p3 = 0, a power law), 3 (p3 = 0) or 4.

    Raises:
        ValueError: an unknown form, bad edges or counts, or fewer fitted bins than
            n_params + 1.
    """
    return _fit_forms(edges, counts, fit_bins, n_params)[-1]


def local_significance(observed: float, expected: float, uncertainty: float = 0.0) -> float:
    """Signed asymptotic significance of ``observed`` events N over ``expected`` B.

    With a known background (``uncertainty`` 0) the Poisson likelihood ratio gives

        Z = sign(N - B) sqrt(2 (N ln(N / B) - (N - B))),  -sqrt(2 B) for N = 0.

    With an uncertainty sigma on B (e.g. from the sideband fit), B is profiled as well
    (G. Cowan, "Discovery sensitivity for a counting experiment with background uncertainty"):

        Z^2 = 2 (N ln(N (B + s2) / (B^2 + N s2)) - (B^2 / s2) ln(1 + s2 (N - B) / (B (B + s2))))

    with s2 = sigma^2, which tends to the first form as sigma -> 0. NaN when B is not a positive
    finite number or sigma is negative or not finite.
    """
    n, b, sigma = float(observed), float(expected), float(uncertainty)
    if not (math.isfinite(b) and b > 0 and math.isfinite(n) and n >= 0):
        return math.nan
    if not (math.isfinite(sigma) and sigma >= 0):
        return math.nan
    s2 = sigma * sigma
    if s2 <= 1e-12 * b:
        q = 2.0 * ((n * math.log(n / b) if n > 0 else 0.0) - (n - b))
    else:
        first = n * math.log(n * (b + s2) / (b * b + n * s2)) if n > 0 else 0.0
        second = (b * b / s2) * math.log1p(s2 * (n - b) / (b * (b + s2)))
        q = 2.0 * (first - second)
    return math.copysign(math.sqrt(max(q, 0.0)), n - b)


# ------------------------------------------------------------------------------------------------
# the bump hunt


@dataclass
class CutResult:
    """The m_jj spectrum and the signal-region excess after one cut on the classifier."""

    efficiency: float
    """Fraction of the SR+SB events the cut keeps (at least; ties at the threshold stay)."""
    threshold: float
    n_selected: int
    counts: npt.NDArray[np.int64]
    """(K,) events per m_jj bin after the cut."""
    expected_counts: FloatArray
    """(K,) the sideband fit in every bin (its extrapolation in the SR); NaN without a fit."""
    observed: int
    """N: events in the SR after the cut."""
    expected: float
    """B: the fit integrated over the SR; NaN without a fit."""
    expected_uncertainty: float
    """The statistical uncertainty of B from the sideband fit; NaN without a fit."""
    significance: float
    """Local Z of N over B taken as known (``local_significance``); NaN without a fit."""
    significance_with_uncertainty: float
    """Local Z of N over B with its fit uncertainty profiled; NaN without a fit. With narrow
    sidebands the extrapolation into the SR is uncertain and ``significance`` overstates."""
    fit: SidebandFit | None

    def to_dict(self) -> dict[str, Any]:
        summary: dict[str, Any] = json_safe(
            {
                "efficiency": self.efficiency,
                "threshold": self.threshold,
                "n_selected": self.n_selected,
                "counts": self.counts.tolist(),
                "expected_counts": self.expected_counts.tolist(),
                "observed": self.observed,
                "expected": self.expected,
                "expected_uncertainty": self.expected_uncertainty,
                "significance": self.significance,
                "significance_with_uncertainty": self.significance_with_uncertainty,
                "fit": None if self.fit is None else self.fit.to_dict(),
            }
        )
        return summary


@dataclass
class BumpHuntResult:
    """A CWoLa bump hunt: the per-event scores and one ``CutResult`` per efficiency."""

    signal_region: tuple[float, float]
    sideband_width: float
    bin_edges: FloatArray
    """(K + 1,) m_jj bin edges [GeV] over [low - w, high + w]; SR edges are bin edges."""
    in_signal_region_bins: npt.NDArray[np.bool_]
    """(K,) True for the bins of the SR."""
    event_index: IndexArray
    """(E,) positions, in the input arrays, of the SR+SB events (the only ones scored)."""
    mjj: FloatArray
    """(E,) their m_jj [GeV]."""
    scores: FloatArray
    """(E,) their cross-trained classifier scores."""
    cuts: list[CutResult] = field(default_factory=list)

    def scores_table(self) -> pa.Table:
        """Per-event table: event_index, mjj, in_signal_region, score."""
        low, high = self.signal_region
        return pa.table(
            {
                "event_index": pa.array(self.event_index),
                "mjj": pa.array(self.mjj),
                "in_signal_region": pa.array((self.mjj >= low) & (self.mjj < high)),
                "score": pa.array(self.scores),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no per-event arrays; NaN/inf become null)."""
        summary: dict[str, Any] = json_safe(
            {
                "signal_region": list(self.signal_region),
                "sideband_width": self.sideband_width,
                "bin_edges": self.bin_edges.tolist(),
                "n_events": len(self.event_index),
                "cuts": [cut.to_dict() for cut in self.cuts],
            }
        )
        return summary


def mjj_bins(
    signal_region: tuple[float, float], sideband_width: float, bin_width: float
) -> FloatArray:
    """Bin edges over [low - w, high + w] with the SR edges among them; each of the three
    regions is split into equal bins no wider than ``bin_width``."""
    low, high = signal_region
    parts = [(low - sideband_width, low), (low, high), (high, high + sideband_width)]
    edges = [np.linspace(a, b, max(1, math.ceil((b - a) / bin_width - 1e-9)) + 1) for a, b in parts]
    return np.concatenate([edges[0], edges[1][1:], edges[2][1:]])


def _form_for(n_bins: int) -> int:
    """The dijet form fitted to ``n_bins`` sideband bins: the standard 4-parameter function from
    8 bins (4 degrees of freedom), the 3-parameter one (p3 = 0) from 4 bins, 2 parameters
    (p1 = p3 = 0) from 3 bins."""
    return 4 if n_bins >= 8 else min(3, n_bins - 1)


def bump_hunt(
    mjj: npt.ArrayLike,
    x: npt.ArrayLike,
    folds: npt.ArrayLike,
    signal_region: tuple[float, float],
    sideband_width: float,
    classifier: ClassifierName,
    config: EvaluateConfig,
    seed: int,
    efficiencies: Sequence[float] = (1.0, 0.1, 0.01),
    *,
    bin_width: float = 100.0,
    min_sideband_events: int = 10,
) -> BumpHuntResult:
    """CWoLa hunting in one signal region.

    Args:
        mjj: (N,) dijet invariant mass [GeV]; events outside [low - w, high + w) are ignored.
        x: (N, F) features the classifier sees (they should not determine m_jj).
        folds: (N,) integer fold of each event, for k-fold cross-training.
        signal_region: (low, high) [GeV].
        sideband_width: w [GeV], the width of each sideband.
        classifier: 'lct' or 'fcn', trained SR (1) vs SB (0) with ``fit_predict_folds``.
        config, seed: classifier settings and seed.
        efficiencies: cuts keeping the top ``eff`` fraction of the SR+SB scores (1.0: no cut).
            The threshold is the score of the ceil(eff * E)-th best event; ties are kept.
        bin_width: the largest m_jj bin width [GeV] of the spectrum and the fit.
        min_sideband_events: below this many sideband events after a cut, no fit is tried.

    The sideband bins after each cut are fitted with the 4-parameter dijet function where there
    are at least 8 of them, the 3-parameter one (p3 = 0) from 4 bins, 2 parameters from 3, no
    fit with fewer. Each cut reports Z with B taken as known (the formula of the brief) and Z
    with the fit's uncertainty on B profiled; narrow sidebands extrapolate poorly into the SR,
    and only the second stays calibrated there. A missing or failed fit gives NaN for B and
    both Z and a logged warning, never an error.
    """
    low, high = (float(v) for v in signal_region)
    if not (sideband_width > 0 and low - sideband_width > 0 and low < high):
        raise ValueError(
            f"need 0 < low - w and low < high, got signal region {signal_region}, "
            f"w = {sideband_width}"
        )
    if high + sideband_width >= SQRT_S:
        raise ValueError(f"the sidebands must end below sqrt(s) = {SQRT_S:g} GeV")
    if bin_width <= 0:
        raise ValueError(f"bin_width must be > 0, got {bin_width}")
    for eff in efficiencies:
        if not 0.0 < eff <= 1.0:
            raise ValueError(f"efficiencies must lie in (0, 1], got {eff}")
    masses = np.asarray(mjj, dtype=np.float64)
    features = np.asarray(x)
    fold = np.asarray(folds)
    if (
        masses.ndim != 1
        or features.ndim != 2
        or fold.ndim != 1
        or not len(masses) == len(features) == len(fold)
    ):
        raise ValueError(
            f"mjj (N,), x (N, F) and folds (N,) must agree, got shapes {masses.shape}, "
            f"{features.shape}, {fold.shape}"
        )
    if not np.isfinite(masses).all():
        raise ValueError("mjj contains NaN/inf values")

    selected = np.flatnonzero((masses >= low - sideband_width) & (masses < high + sideband_width))
    m_sel = masses[selected]
    in_sr = (m_sel >= low) & (m_sel < high)
    if in_sr.sum() == 0 or in_sr.all():
        raise ValueError(
            f"the bump hunt needs events in both the signal region ({int(in_sr.sum())}) and "
            f"the sidebands ({int((~in_sr).sum())})"
        )
    log.info(
        "bump hunt in [%g, %g) GeV: %d SR and %d SB events, %s classifier",
        low,
        high,
        int(in_sr.sum()),
        int((~in_sr).sum()),
        classifier,
    )
    scores = classifiers.fit_predict_folds(
        classifier, features[selected], in_sr.astype(np.int64), fold[selected], config, seed
    )

    edges = mjj_bins((low, high), sideband_width, bin_width)
    centres = 0.5 * (edges[1:] + edges[:-1])
    sr_bins = (centres >= low) & (centres < high)
    descending = np.sort(scores)[::-1]
    result = BumpHuntResult(
        (low, high), float(sideband_width), edges, sr_bins, selected, m_sel, scores
    )
    for eff in efficiencies:
        threshold = float(descending[max(1, math.ceil(eff * len(scores) - 1e-9)) - 1])
        keep = scores >= threshold
        counts = np.histogram(m_sel[keep], bins=edges)[0].astype(np.int64)
        observed = int(counts[sr_bins].sum())
        fit = _fit_sidebands(edges, counts, sr_bins, min_sideband_events, eff)
        if fit is not None:
            expected_counts = fit.expected(edges)
            expected, sigma = fit.expected_total(edges, sr_bins)
        else:
            expected_counts, expected, sigma = np.full(len(counts), np.nan), math.nan, math.nan
        cut = CutResult(
            efficiency=float(eff),
            threshold=threshold,
            n_selected=int(keep.sum()),
            counts=counts,
            expected_counts=expected_counts,
            observed=observed,
            expected=expected,
            expected_uncertainty=sigma,
            significance=local_significance(observed, expected),
            significance_with_uncertainty=local_significance(observed, expected, sigma),
            fit=fit,
        )
        log.info(
            "efficiency %g: %d events, SR N = %d, B = %.1f +- %.1f, Z = %.2f (%.2f with the "
            "fit uncertainty)",
            eff,
            cut.n_selected,
            observed,
            expected,
            sigma,
            cut.significance,
            cut.significance_with_uncertainty,
        )
        result.cuts.append(cut)
    return result


def _fit_sidebands(
    edges: FloatArray,
    counts: npt.NDArray[np.int64],
    sr_bins: npt.NDArray[np.bool_],
    min_events: int,
    efficiency: float,
) -> SidebandFit | None:
    """The sideband fit after one cut, or None (with a warning) where there is none to trust."""
    sideband = ~sr_bins
    n_sideband = int(counts[sideband].sum())
    reason = None
    if sideband.sum() < 3:
        reason = f"only {int(sideband.sum())} sideband bins (3 needed)"
    elif n_sideband < min_events:
        reason = f"only {n_sideband} sideband events ({min_events} needed)"
    else:
        try:
            fit = fit_dijet_function(edges, counts, sideband, _form_for(int(sideband.sum())))
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:
            reason = f"the fit failed ({err})"
        else:
            b = fit.expected(edges)[sr_bins].sum()
            if fit.converged and np.isfinite(b) and b > 0:
                return fit
            reason = "the fit did not converge"
    log.warning("bump hunt at efficiency %g: %s; B and Z are NaN", efficiency, reason)
    return None
