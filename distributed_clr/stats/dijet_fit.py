"""The dijet function and its binned Poisson fit to m_jj sidebands.

The QCD dijet spectrum is described by the dijet function (CMS, ATLAS resonance searches)

    f(m) = p0 (1 - x)^p1 / x^(p2 + p3 ln x),  x = m / sqrt(s),

a density in events per GeV, with sqrt(s) the centre-of-mass energy (a parameter everywhere:
the caller passes it, e.g. ``BumpHuntConfig.sqrt_s``). ``fit_dijet_function`` fits it to the
counts of chosen bins (the sidebands of a bump hunt) by maximising the binned Poisson likelihood,
in the standard 4-parameter form or the 3- and 2-parameter ones (p3 = 0, then also p1 = 0) for
few bins; ``SidebandFit.expected`` integrates the fit over any bins (the signal region) and
``SidebandFit.expected_total`` also gives the statistical uncertainty of that integral. Bin
integrals use 8-point Gauss-Legendre quadrature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import logsumexp

from distributed_clr.stats.metrics import json_safe

__all__ = ["FORMS", "SidebandFit", "dijet_expected_counts", "fit_dijet_function"]

FloatArray = npt.NDArray[np.float64]

_FORM_COLUMNS = {4: (0, 1, 2, 3), 3: (0, 1, 2), 2: (0, 2)}
"""Parameters of the 4-, 3- and 2-parameter dijet functions (0: ln p0, 1: p1, 2: p2, 3: p3)."""
FORMS = tuple(sorted(_FORM_COLUMNS))
"""The numbers of parameters a fit may have: 2, 3 or 4."""
_PARAM_NAMES = ("log_p0", "p1", "p2", "p3")
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)


def _basis(mjj: FloatArray, sqrt_s: float) -> FloatArray:
    """(..., 4) terms of ln f: [1, ln(1 - x), -ln x, -(ln x)^2], x = m_jj / sqrt(s)."""
    x = mjj / sqrt_s
    log_x = np.log(x)
    return np.stack([np.ones_like(x), np.log1p(-x), -log_x, -(log_x**2)], axis=-1)


def _nodes(edges: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes (bins, q) in each bin and log of their weights times half-width."""
    half = 0.5 * np.diff(edges)
    centre = 0.5 * (edges[1:] + edges[:-1])
    nodes = centre[:, None] + half[:, None] * _NODES[None, :]
    return nodes, np.log(half)[:, None] + np.log(_WEIGHTS)[None, :]


def _check_sqrt_s(sqrt_s: float) -> float:
    value = float(sqrt_s)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"sqrt_s must be a positive energy [GeV], got {sqrt_s}")
    return value


def dijet_expected_counts(
    edges: npt.ArrayLike, params: dict[str, float], *, sqrt_s: float
) -> FloatArray:
    """Expected events per bin: the integral over each bin of the dijet density [1/GeV]

    f(m) = p0 (1 - x)^p1 / x^(p2 + p3 ln x),  x = m / sqrt(s),

    with ``params`` = {log_p0, p1, p2, p3} (missing ones are 0), by 8-point Gauss-Legendre.

    Args:
        edges: (K + 1,) bin edges [GeV], within (0, sqrt_s).
        params: the dijet function's parameters.
        sqrt_s: the centre-of-mass energy [GeV] that scales m_jj.
    """
    bins = np.asarray(edges, dtype=np.float64)
    theta = np.array([params.get(name, 0.0) for name in _PARAM_NAMES])
    nodes, log_w = _nodes(bins)
    log_mu = logsumexp(_basis(nodes, _check_sqrt_s(sqrt_s)) @ theta + log_w, axis=1)
    return np.asarray(np.exp(np.minimum(log_mu, 600.0)))


def _standardised_basis(
    nodes: FloatArray, mean: FloatArray, std: FloatArray, sqrt_s: float
) -> FloatArray:
    """(..., 4) terms of ln f with the three shape terms centred and scaled by (mean, std)."""
    basis = _basis(nodes, sqrt_s)
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
    sqrt_s: float = field(repr=False, kw_only=True)
    """The centre-of-mass energy [GeV] the fit was made with."""

    def _bin_terms(self, edges: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Per bin: expected count mu (K,) and its gradient d mu / d theta (K, n_params)."""
        columns = list(_FORM_COLUMNS[self.n_params])
        nodes, log_w = _nodes(np.asarray(edges, dtype=np.float64))
        z = _standardised_basis(nodes, self.basis_mean, self.basis_std, self.sqrt_s)[..., columns]
        with np.errstate(over="ignore"):
            weight = np.exp(np.minimum(z @ self.theta[columns], 600.0) + log_w)
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
    edges: npt.ArrayLike,
    counts: npt.ArrayLike,
    fit_bins: npt.ArrayLike,
    n_params: int,
    sqrt_s: float,
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
    if not (np.all(np.diff(bins) > 0) and bins[0] > 0 and bins[-1] < sqrt_s):
        raise ValueError(f"bin edges must increase within (0, {sqrt_s:g}) GeV")
    if not (np.isfinite(n).all() and (n >= 0).all()):
        raise ValueError("counts must be finite and non-negative")
    if mask.sum() < n_params + 1:
        raise ValueError(
            f"a {n_params}-parameter fit needs >= {n_params + 1} bins, got {mask.sum()}"
        )
    return bins, n, mask


def _fit_forms(
    edges: npt.ArrayLike,
    counts: npt.ArrayLike,
    fit_bins: npt.ArrayLike,
    max_params: int,
    sqrt_s: float,
) -> list[SidebandFit]:
    """The 2-, 3-, ... ``max_params``-parameter fits, each started from the previous optimum.

    The fits run in a standardised basis: each term of ln f is centred and scaled over the
    fitted range, which makes the nearly collinear terms well conditioned.
    """
    bins, n, mask = _check_fit_input(edges, counts, fit_bins, max_params, sqrt_s)
    left = np.flatnonzero(mask)
    nodes, log_w = _nodes(bins)
    nodes, log_w, n_fit = nodes[left], log_w[left], n[left]
    shape_terms = _basis(nodes, sqrt_s)[..., 1:].reshape(-1, 3)
    mean, std = shape_terms.mean(axis=0), shape_terms.std(axis=0)
    z_full = _standardised_basis(nodes, mean, std, sqrt_s)

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
            sqrt_s=sqrt_s,
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
    edges: npt.ArrayLike,
    counts: npt.ArrayLike,
    fit_bins: npt.ArrayLike,
    n_params: int = 4,
    *,
    sqrt_s: float,
) -> SidebandFit:
    """Fit the dijet function to the bins selected by ``fit_bins`` (binned Poisson likelihood).

    Args:
        edges: (K + 1,) bin edges [GeV], within (0, sqrt_s).
        counts: (K,) events per bin.
        fit_bins: (K,) bool, the bins to fit (the sidebands).
        n_params: 2 (p1 = p3 = 0, a power law), 3 (p3 = 0) or 4.
        sqrt_s: the centre-of-mass energy [GeV] that scales m_jj, x = m_jj / sqrt_s.

    Raises:
        ValueError: an unknown form, bad edges or counts, a non-positive sqrt_s, or fewer
            fitted bins than n_params + 1.
    """
    return _fit_forms(edges, counts, fit_bins, n_params, _check_sqrt_s(sqrt_s))[-1]
