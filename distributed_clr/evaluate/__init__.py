"""Evaluating representations: feature sets, LCT/FCN classifiers, metrics, CWoLa, plots.

``features`` turns prepared dijets or embedding shards into matrices; ``classifiers`` is the one
fit loop of the linear classifier test (LCT) and the fully connected network (FCN);
``metrics`` gives AUC, SIC (with its minimum-background rule) and rejections; ``cwola`` runs the
idealised CWoLa scan and the CWoLa bump hunt in m_jj; ``plots`` draws the figures.
"""

from __future__ import annotations

from distributed_clr.evaluate.classifiers import fit_predict, fit_predict_folds
from distributed_clr.evaluate.cwola import (
    BumpHuntResult,
    CutResult,
    ScanPoint,
    ScanResult,
    SidebandFit,
    bump_hunt,
    dijet_expected_counts,
    fit_dijet_function,
    idealised_samples,
    idealised_scan,
    local_significance,
    max_sample_size,
    mjj_bins,
    repeat_seeds,
)
from distributed_clr.evaluate.features import (
    FEATURE_COLUMNS,
    event_space,
    feature_matrix,
    highlevel,
    latent,
)
from distributed_clr.evaluate.metrics import (
    aggregate,
    binary_metrics,
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

__all__ = [
    "FEATURE_COLUMNS",
    "BumpHuntResult",
    "CutResult",
    "ScanPoint",
    "ScanResult",
    "SidebandFit",
    "aggregate",
    "binary_metrics",
    "bump_hunt",
    "dijet_expected_counts",
    "event_space",
    "feature_matrix",
    "fit_dijet_function",
    "fit_predict",
    "fit_predict_folds",
    "highlevel",
    "idealised_samples",
    "idealised_scan",
    "latent",
    "local_significance",
    "max_sample_size",
    "mjj_bins",
    "plot_cwola_scan",
    "plot_latent_projection",
    "plot_mjj_spectra",
    "plot_rejection",
    "plot_sic",
    "repeat_seeds",
    "roc_curve",
    "sic_curve",
]
