"""Plots: each function writes a complete PNG atomically and leaves nothing else behind."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from distributed_clr.config.schema import BumpHuntConfig
from distributed_clr.evaluate.bumphunt import BumpHuntResult, CutResult, mjj_bins
from distributed_clr.evaluate.plots import (
    plot_cwola_scan,
    plot_latent_projection,
    plot_mjj_spectra,
    plot_rejection,
    plot_sic,
)
from distributed_clr.stats import (
    dijet_expected_counts,
    fit_dijet_function,
    roc_curve,
    sic_curve,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SQRT_S = BumpHuntConfig().sqrt_s


def assert_only_png(path: Path, written: Path) -> None:
    assert written == path
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1000
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left


def _labelled_scores(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 2000)
    return labels, rng.normal(size=2000) + labels


def test_plot_rejection_and_sic(tmp_path: Path) -> None:
    curves_roc, curves_sic = {}, {}
    for name, seed in (("latent", 0), ("highlevel", 1)):
        labels, scores = _labelled_scores(seed)
        fpr, tpr, _ = roc_curve(labels, scores)  # starts at FPR = 0: infinite rejection
        curves_roc[name] = (tpr, fpr)
        curves_sic[name] = sic_curve(labels, scores, min_background=20)
    rejection = tmp_path / "rejection" / "rejection.png"
    assert_only_png(rejection, plot_rejection(curves_roc, rejection))
    sic = tmp_path / "sic" / "sic.png"
    assert_only_png(sic, plot_sic(curves_sic, sic))


def test_plot_overwrites_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "sic.png"
    path.write_bytes(b"old")
    labels, scores = _labelled_scores(2)
    assert_only_png(path, plot_sic({"x": sic_curve(labels, scores)}, path))


def test_plot_cwola_scan(tmp_path: Path) -> None:
    fractions = [0.0, 1e-3, 1e-2, 0.1, 1.0]
    results = {
        name: {
            f: {
                "auc": (0.5 + 0.4 * f**0.3 * gain, 0.02),
                "max_sic": (1.0 + 5 * f**0.3 * gain if f else math.nan, 0.3),
                "fpr_at_tpr_0.5": (0.5 / (1 + 100 * f * gain), 0.01),
            }
            for f in fractions
        }
        for name, gain in (("latent", 1.0), ("event", 0.5))
    }
    path = tmp_path / "scan.png"
    assert_only_png(path, plot_cwola_scan(results, path))


def test_plot_mjj_spectra(tmp_path: Path) -> None:
    edges = mjj_bins((3300.0, 3700.0), 500.0, 100.0)
    sr = (edges[:-1] >= 3300) & (edges[1:] <= 3700)
    truth = dijet_expected_counts(edges, {"log_p0": 12.0, "p1": 10.0, "p2": 5.0}, sqrt_s=SQRT_S)
    counts = np.random.default_rng(0).poisson(truth)
    fit = fit_dijet_function(edges, counts, ~sr, 3, sqrt_s=SQRT_S)
    cut = CutResult(
        efficiency=1.0,
        threshold=0.0,
        n_selected=int(counts.sum()),
        counts=counts,
        expected_counts=fit.expected(edges),
        observed=int(counts[sr].sum()),
        expected=float(fit.expected(edges)[sr].sum()),
        expected_uncertainty=1.0,
        significance=0.1,
        fit_chi2_ndf=1.0,
        fit_p_value=0.5,
        significance_with_uncertainty=0.1,
        fit=fit,
    )
    no_fit = CutResult(
        efficiency=0.001,
        threshold=0.9,
        n_selected=0,
        counts=np.zeros_like(counts),
        expected_counts=np.full(len(counts), np.nan),
        observed=0,
        expected=math.nan,
        expected_uncertainty=math.nan,
        significance=math.nan,
        fit_chi2_ndf=math.nan,
        fit_p_value=math.nan,
        significance_with_uncertainty=math.nan,
        fit=None,
    )
    empty = np.zeros(0)
    result = BumpHuntResult(
        (3300.0, 3700.0), 500.0, edges, sr, empty.astype(np.int64), empty, empty, [cut, no_fit]
    )
    path = tmp_path / "mjj.png"
    assert_only_png(path, plot_mjj_spectra(result, path))


def test_plot_latent_projection(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(7000, 8))
    labels = rng.integers(0, 2, 7000)
    embedding[labels == 1, 0] += 3.0
    path = tmp_path / "latent.png"
    assert_only_png(path, plot_latent_projection(embedding, labels, path, seed=0))
    with pytest.raises(ValueError, match="D >= 2"):
        plot_latent_projection(embedding[:, :1], labels, tmp_path / "bad.png", seed=0)
    with pytest.raises(ValueError, match="NaN"):
        plot_latent_projection(np.full((10, 3), np.nan), np.zeros(10), tmp_path / "bad.png", 0)
    assert not (tmp_path / "bad.png").exists()
