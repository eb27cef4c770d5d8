"""The CWoLa bump hunt in m_jj (Collins, Howe, Nachman 2018).

Events in the signal region (SR, m_jj in [low, high)) are labelled 1 and those in the sidebands
(SB, [low - w, low) and [high, high + w)) 0; k-fold cross-training (``classifiers
.fit_predict_folds`` on the ``fold`` column) scores every event with a classifier that never saw
it. Each fold's classifier has its own calibration: its training folds' SR fraction differs a
little from the others', which shifts all its scores together. With uninformative features
that shift is all there is, and a global threshold would keep whole folds, picking the folds
whose own SR fraction is low: a deficit in the SR made by the method (measured: Z = -2.5 at
10% efficiency on QCD only). Scores are therefore ranked within their fold (``fold_ranks``)
before cutting, so that every cut keeps the same fraction of every fold. Cuts keeping the top
fraction ``eff`` of the SR+SB events enrich a localised signal; after each cut the sideband
m_jj bins are fitted with the dijet function (``stats.fit_dijet_function`` at
``BumpHuntConfig.sqrt_s``; the 3- and 2-parameter forms with few sideband bins), the fit is
integrated over the SR to give the expected background B, and the local significance of the
observed N is the asymptotic Poisson Z (``stats.local_significance``), negative for deficits; a
second Z also accounts for the fit's uncertainty on B.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.stats

from distributed_clr import classifiers
from distributed_clr.config.schema import ClassifierName, EvaluateConfig
from distributed_clr.evaluate.errors import EvaluationError
from distributed_clr.stats import (
    SidebandFit,
    binary_metrics,
    fit_dijet_function,
    json_safe,
    local_significance,
)

log = logging.getLogger(__name__)

__all__ = [
    "BumpHuntResult",
    "CutResult",
    "Leakage",
    "bump_hunt",
    "fit_sidebands",
    "fold_ranks",
    "form_for",
    "leakage",
    "mjj_bins",
]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]


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
    fit_chi2_ndf: float
    """The sideband fit's Poisson deviance per degree of freedom (~1 for a good fit); NaN
    without a fit or without a degree of freedom."""
    fit_p_value: float
    """The probability of a deviance at least as large under the fit (chi2 with ndf)."""
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
                "fit_chi2_ndf": self.fit_chi2_ndf,
                "fit_p_value": self.fit_p_value,
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
    """(E,) their cross-trained classifier scores, as ranks within their fold in (0, 1]
    (``fold_ranks``): what the cuts apply to."""
    cuts: list[CutResult] = field(default_factory=list)

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


def form_for(n_bins: int) -> int:
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
    efficiencies: Sequence[float] | None = None,
    *,
    bin_width: float | None = None,
    min_sideband_events: int | None = None,
    sqrt_s: float | None = None,
) -> BumpHuntResult:
    """CWoLa hunting in one signal region.

    Args:
        mjj: (N,) dijet invariant mass [GeV]; events outside [low - w, high + w) are ignored.
        x: (N, F) features the classifier sees (they should not determine m_jj).
        folds: (N,) integer fold of each event, for k-fold cross-training.
        signal_region: (low, high) [GeV].
        sideband_width: w [GeV], the width of each sideband.
        classifier: 'lct' or 'fcn', trained SR (1) vs SB (0) with ``fit_predict_folds``.
        config, seed: the FCN's settings (``config.fcn``), the defaults of the arguments below
            (``config.bumphunt``), and the seed.
        efficiencies: cuts keeping the top ``eff`` fraction of the SR+SB scores (1.0: no cut).
            The threshold is the score of the ceil(eff * E)-th best event; ties are kept.
            Default ``config.bumphunt.efficiencies``.
        bin_width: the largest m_jj bin width [GeV] of the spectrum and the fit; default
            ``config.bumphunt.bin_width``.
        min_sideband_events: below this many sideband events after a cut, no fit is tried;
            default ``config.bumphunt.min_sideband_events``.
        sqrt_s: the centre-of-mass energy [GeV] of the dijet function; default
            ``config.bumphunt.sqrt_s``.

    The sideband bins after each cut are fitted with the 4-parameter dijet function where there
    are at least 8 of them, the 3-parameter one (p3 = 0) from 4 bins, 2 parameters from 3, no
    fit with fewer. Each cut reports Z with B taken as known (the formula of the brief) and Z
    with the fit's uncertainty on B profiled; narrow sidebands extrapolate poorly into the SR,
    and only the second stays calibrated there. A missing or failed fit gives NaN for B and
    both Z and a logged warning, never an error.
    """
    settings = config.bumphunt
    efficiencies = settings.efficiencies if efficiencies is None else efficiencies
    bin_width = settings.bin_width if bin_width is None else bin_width
    min_events = (
        settings.min_sideband_events if min_sideband_events is None else min_sideband_events
    )
    sqrt_s = settings.sqrt_s if sqrt_s is None else sqrt_s
    low, high = (float(v) for v in signal_region)
    if not (sideband_width > 0 and low - sideband_width > 0 and low < high):
        raise EvaluationError(
            f"need 0 < low - w and low < high, got signal region {signal_region}, "
            f"w = {sideband_width}"
        )
    if high + sideband_width >= sqrt_s:
        raise EvaluationError(f"the sidebands must end below sqrt(s) = {sqrt_s:g} GeV")
    if bin_width <= 0:
        raise EvaluationError(f"bin_width must be > 0, got {bin_width}")
    for eff in efficiencies:
        if not 0.0 < eff <= 1.0:
            raise EvaluationError(f"efficiencies must lie in (0, 1], got {eff}")
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
        raise EvaluationError("mjj contains NaN/inf values")

    selected = np.flatnonzero((masses >= low - sideband_width) & (masses < high + sideband_width))
    m_sel = masses[selected]
    in_sr = (m_sel >= low) & (m_sel < high)
    if in_sr.sum() == 0 or in_sr.all():
        raise EvaluationError(
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
    raw = classifiers.fit_predict_folds(
        classifier,
        features[selected],
        in_sr.astype(np.int64),
        fold[selected],
        config.fcn if classifier == "fcn" else None,
        seed,
    )
    scores = fold_ranks(raw, fold[selected])

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
        fit = fit_sidebands(edges, counts, sr_bins, min_events, eff, sqrt_s=sqrt_s)
        if fit is not None:
            expected_counts = fit.expected(edges)
            expected, sigma = fit.expected_total(edges, sr_bins)
        else:
            expected_counts, expected, sigma = np.full(len(counts), np.nan), math.nan, math.nan
        chi2_ndf = p_value = math.nan
        if fit is not None and fit.ndf > 0:
            chi2_ndf = fit.deviance / fit.ndf
            p_value = float(scipy.stats.chi2.sf(fit.deviance, fit.ndf))
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
            fit_chi2_ndf=chi2_ndf,
            fit_p_value=p_value,
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


def fold_ranks(scores: npt.ArrayLike, folds: npt.ArrayLike) -> FloatArray:
    """Each score's rank within its fold, divided by the fold's size: in (0, 1], ties averaged.

    A cut on these keeps the same fraction of every fold, whatever each fold's classifier's
    calibration (module docstring)."""
    values = np.asarray(scores, dtype=np.float64)
    fold = np.asarray(folds)
    out = np.empty(len(values))
    for k in np.unique(fold).tolist():
        members = fold == k
        out[members] = scipy.stats.rankdata(values[members]) / int(members.sum())
    return out


def fit_sidebands(
    edges: FloatArray,
    counts: npt.NDArray[np.int64],
    sr_bins: npt.NDArray[np.bool_],
    min_events: int,
    efficiency: float,
    *,
    sqrt_s: float,
) -> SidebandFit | None:
    """The sideband fit after one cut (the form ``form_for`` the number of sideband bins), or
    None (with a warning) where there is none to trust: fewer than 3 sideband bins or
    ``min_events`` sideband events, a failed fit, or one that did not converge."""
    sideband = ~sr_bins
    n_sideband = int(counts[sideband].sum())
    reason = None
    if sideband.sum() < 3:
        reason = f"only {int(sideband.sum())} sideband bins (3 needed)"
    elif n_sideband < min_events:
        reason = f"only {n_sideband} sideband events ({min_events} needed)"
    else:
        try:
            fit = fit_dijet_function(
                edges, counts, sideband, form_for(int(sideband.sum())), sqrt_s=sqrt_s
            )
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:
            reason = f"the fit failed ({err})"
        else:
            b = fit.expected(edges)[sr_bins].sum()
            if fit.converged and np.isfinite(b) and b > 0:
                return fit
            reason = "the fit did not converge"
    log.warning("bump hunt at efficiency %g: %s; B and Z are NaN", efficiency, reason)
    return None


@dataclass
class Leakage:
    """How much a feature set knows about m_jj, measured where no signal is expected.

    ``sideband_auc``: a classifier (cross-trained over the folds) between the lower and the
    upper sideband; 0.5 when the features carry no m_jj information, larger when they do.
    ``mjj_r2``: the held-out R^2 of m_jj regressed linearly on the features in the sidebands
    (0 when they carry none). Either above its threshold (``BumpHuntConfig``) makes the
    feature set unfit for a bump hunt: a cut on the classifier would sculpt the spectrum.
    """

    sideband_auc: float
    mjj_r2: float
    lower_events: int
    upper_events: int
    refused: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json_safe(
            {
                "sideband_auc": self.sideband_auc,
                "mjj_r2": self.mjj_r2,
                "lower_events": self.lower_events,
                "upper_events": self.upper_events,
                "refused": self.refused,
                "reason": self.reason,
            }
        )
        return out


def _held_out_r2(x: FloatArray, y: FloatArray, folds: IndexArray) -> float:
    """R^2 of a linear least-squares fit of y on x, each fold predicted by the others."""
    predicted = np.empty_like(y)
    for k in np.unique(folds).tolist():
        held = folds == k
        fit_x, fit_y = x[~held], y[~held]
        mean, std = fit_x.mean(axis=0), fit_x.std(axis=0)
        std[std == 0] = 1.0
        design = np.c_[np.ones(len(fit_x)), (fit_x - mean) / std]
        coefficients, *_ = np.linalg.lstsq(design, fit_y, rcond=None)
        predicted[held] = np.c_[np.ones(int(held.sum())), (x[held] - mean) / std] @ coefficients
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - predicted) ** 2).sum()) / total if total > 0 else math.nan


def leakage(
    mjj: npt.ArrayLike,
    x: npt.ArrayLike,
    folds: npt.ArrayLike,
    classifier: ClassifierName,
    config: EvaluateConfig,
    seed: int,
) -> Leakage:
    """The leakage check of one feature set in the sidebands of ``config.bumphunt`` (no labels
    are used: only m_jj and the features)."""
    settings = config.bumphunt
    low, high = settings.signal_region
    width = settings.sideband_width
    masses = np.asarray(mjj, dtype=np.float64)
    features = np.asarray(x, dtype=np.float64)
    fold = np.asarray(folds)
    lower = (masses >= low - width) & (masses < low)
    upper = (masses >= high) & (masses < high + width)
    rows = lower | upper
    if lower.sum() < 2 * len(np.unique(fold)) or upper.sum() < 2 * len(np.unique(fold)):
        return Leakage(
            math.nan, math.nan, int(lower.sum()), int(upper.sum()), False,
            "too few sideband events to measure",
        )  # fmt: skip
    scores = classifiers.fit_predict_folds(
        classifier,
        features[rows],
        upper[rows].astype(np.int64),
        fold[rows],
        config.fcn if classifier == "fcn" else None,
        seed,
    )
    auc = float(binary_metrics(upper[rows].astype(np.int64), scores, min_background=1)["auc"])
    r2 = _held_out_r2(features[rows], masses[rows], fold[rows])
    problems = []
    if auc > settings.max_sideband_auc:
        problems.append(
            f"a {classifier} tells the lower from the upper sideband with AUC {auc:.3f} "
            f"(above evaluate.bumphunt.max_sideband_auc = {settings.max_sideband_auc:g})"
        )
    if r2 > settings.max_mjj_r2:
        problems.append(
            f"m_jj is predicted from the features with R^2 = {r2:.3f} in the sidebands (above "
            f"evaluate.bumphunt.max_mjj_r2 = {settings.max_mjj_r2:g})"
        )
    return Leakage(auc, r2, int(lower.sum()), int(upper.sum()), bool(problems), "; ".join(problems))
