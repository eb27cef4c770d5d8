"""Config sections of the evaluation: the classifiers (FCN, Trans+BC), CWoLa and the bump hunt."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from distributed_clr.config.base import (
    CLASSIFIERS,
    FEATURE_SETS,
    ClassifierName,
    FeatureSet,
    Fraction,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    Section,
    Seed,
)

# ------------------------------------------------------------------------------------------------
# evaluate


def _default_fractions() -> list[float]:
    return [0.0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.2, 0.5, 1.0]


class FCNConfig(Section):
    """The fully connected network (FCN) of the classifier tests and CWoLa."""

    hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
    """Hidden layer sizes."""
    dropout: Fraction = 0.1
    """Dropout (off at test time)."""
    lr: PositiveFloat = 1e-3
    """Adam learning rate."""
    epochs: PositiveInt = 200
    """Maximum epochs."""
    patience: PositiveInt = 10
    """Early stopping patience on the loss of the validation part carved from the train split."""
    batch_size: PositiveInt = 256
    """Events per optimiser step."""


class TransBCConfig(Section):
    """Trans+BC, the supervised reference: the encoder architecture trained end to end on the
    labelled constituents with binary cross-entropy."""

    enabled: bool = True
    """Train Trans+BC in ``evaluate classify`` (needs the prepared data)."""
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 50
    """Maximum epochs."""
    patience: Annotated[int, Field(ge=1, le=1_000)] = 5
    """Early stopping patience: epochs without a better loss on the validation part carved from
    the train split."""
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3
    """Adam learning rate."""
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    """Events per optimiser step."""
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    """Training device: 'cuda' needs a GPU, 'auto' takes one if present."""


class CWoLaConfig(Section):
    """The idealised CWoLa scan."""

    fractions: list[Fraction] = Field(default_factory=_default_fractions)
    """Signal fractions f of sample 2."""

    @model_validator(mode="after")
    def _no_nan(self) -> Self:
        if any(math.isnan(f) for f in self.fractions):
            raise ValueError("fractions contains NaN")
        return self


class BumpHuntConfig(Section):
    """The CWoLa bump hunt in m_jj."""

    signal_region: tuple[PositiveFloat, PositiveFloat] = (3_300.0, 3_700.0)
    """Signal region in m_jj [GeV]."""
    sideband_width: PositiveFloat = 400.0
    """Width of each sideband next to the signal region [GeV]."""
    efficiencies: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [1.0, 0.1, 0.01]
    )
    """Cuts: each keeps this fraction of the signal-region and sideband events with the highest
    classifier scores (1.0: no cut)."""
    bin_width: Annotated[float, Field(gt=0, le=5_000)] = 50.0
    """Largest m_jj bin width of the spectra and the sideband fit [GeV] (with 400 GeV
    sidebands: 16 sideband bins, a 4-parameter fit with 12 degrees of freedom)."""
    sqrt_s: PositiveFloat = 13_000.0
    """Centre-of-mass energy [GeV] that scales m_jj in the dijet function, x = m_jj / sqrt(s)."""
    min_sideband_events: PositiveInt = 10
    """Below this many sideband events after a cut no fit is tried (B and Z are NaN)."""
    max_sideband_auc: Annotated[float, Field(ge=0.5, le=1)] = 0.6
    """The leakage check: a feature set whose classifier tells the lower from the upper
    sideband better than this is refused (it would sculpt m_jj)."""
    max_mjj_r2: Annotated[float, Field(ge=0, le=1)] = 0.1
    """The leakage check: a feature set from which m_jj is predicted (linearly, in the
    sidebands) with a larger R^2 is refused."""
    allow_leaky: bool = False
    """Run the bump hunt on feature sets the leakage check refuses, with a warning kept in
    the outputs (their Z can be a sculpted fake)."""

    @model_validator(mode="after")
    def _region_ordered(self) -> Self:
        low, high = self.signal_region
        if not low < high:
            raise ValueError(f"signal_region must be (low, high) with low < high, got {low, high}")
        if high + self.sideband_width >= self.sqrt_s:
            raise ValueError(
                f"the upper sideband ends at {high + self.sideband_width:g} GeV, not below "
                f"sqrt_s = {self.sqrt_s:g} GeV"
            )
        return self


class EvaluateConfig(Section):
    """Classifier tests, CWoLa scans and the bump hunt on a representation."""

    feature_sets: list[FeatureSet] = Field(default_factory=lambda: list(FEATURE_SETS))
    """Feature sets compared."""
    classifiers: list[ClassifierName] = Field(default_factory=lambda: list(CLASSIFIERS))
    """Classifiers: linear (LCT) and the fully connected network (FCN)."""
    repeats: PositiveInt = 5
    """Independent seeds (or folds) per measurement; results give mean and spread."""
    min_background: PositiveInt = 20
    """SIC is only reported where the background efficiency rests on this many test events."""
    seed: Seed = 0
    """Seed of sampling and classifier initialisation."""
    bootstrap: NonNegInt = 200
    """Bootstrap replicates of the test events behind each AUC and max SIC interval (68%,
    ``auc_low``/``auc_high``, ``max_sic_low``/``max_sic_high``): the uncertainty of the
    measurement on a finite test set, next to the spread over repeats. 0 turns it off;
    otherwise at least 10."""
    classify_resampling: Literal["seeds", "folds"] = "seeds"
    """How ``evaluate classify`` repeats each measurement ``repeats`` times: 'seeds' trains on
    the whole train split with seeds seed, seed + 1, ...; 'folds' also leaves out the train
    events of one prepared fold per repeat (a jackknife), so the spread includes the training
    sample's. The LCT is deterministic: with 'seeds' its spread is 0."""
    tprs: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [0.2, 0.3, 0.5, 0.7]
    )
    """Signal efficiencies at which the FPR and the rejection 1 / FPR are reported (0.5 is
    always added: FPR at TPR 0.5 is a headline metric)."""
    fcn: FCNConfig = Field(default_factory=FCNConfig)
    """The FCN classifier."""
    trans_bc: TransBCConfig = Field(default_factory=TransBCConfig)
    """The Trans+BC baseline."""
    cwola: CWoLaConfig = Field(default_factory=CWoLaConfig)
    """The idealised CWoLa scan."""
    bumphunt: BumpHuntConfig = Field(default_factory=BumpHuntConfig)
    """The CWoLa bump hunt."""

    @model_validator(mode="after")
    def _bootstrap_size(self) -> Self:
        if 0 < self.bootstrap < 10:
            raise ValueError(
                f"bootstrap must be 0 (off) or at least 10 replicates, got {self.bootstrap}"
            )
        return self


# ------------------------------------------------------------------------------------------------
# nplm


NPLMMethod = Literal["kernel", "nn"]


class NPLMConfig(Section):
    """The NPLM goodness-of-fit test: a reference (background) sample against toy data sets,
    each background only (the null toys) or with signal injected, on a feature set.

    Pools: the background events (label 0) of ``splits`` are ordered by a seeded hash of their
    key; the first ``reference_events`` are the reference sample (the same for every toy) and
    the rest the data pool, from which each toy draws Poisson(``data_events``) events without
    replacement. Signal events (label 1; per process) are drawn for each toy from their own
    pool, Poisson(n) of them for an injection of n. The reference and the toys never share an
    event; toys share events with each other, and a warning says so when a toy takes more than
    10% of the data pool."""

    method: NPLMMethod = "kernel"
    """'kernel': Nystrom Gaussian-kernel logistic regression (Letizia et al. 2022); 'nn': the
    original network of D'Agnolo and Wulzer 2019."""
    feature_sets: list[FeatureSet] = Field(default_factory=lambda: list(FEATURE_SETS[:1]))
    """The representations tested, each with its own calibration and power tables."""
    toys: Annotated[int, Field(ge=2, le=1_000_000)] = 100
    """Null toys, and toys per signal process and injected amount."""
    reference_events: Annotated[int, Field(ge=2)] = 10_000
    """N_R: background events in the reference sample (the 2025 paper: 1e6)."""
    data_events: PositiveInt = 2_000
    """N_bkg: the expected number of background events of a toy (the 2025 paper: 1e5)."""
    signal_events: list[PositiveInt] = Field(default_factory=lambda: [20, 50, 100])
    """Expected signal events injected into a toy (e.g. 1% of data_events and above); empty:
    calibration only."""
    signal_processes: list[str] | None = None
    """Signal processes, each with its own power table (None: every process with label 1)."""
    splits: list[Literal["train", "val", "test"]] | None = None
    """Splits whose events fill the pools (None: every split of the embeddings)."""
    centers: Annotated[int, Field(ge=1, le=200_000)] = 1_000
    """M, the Nystrom centres of the kernel model (the 2025 paper: 1,000)."""
    sigma: PositiveFloat | None = None
    """Gaussian kernel width in standardised units; None: the ``sigma_quantile`` of the
    pairwise distances of up to 2,000 reference events."""
    sigma_quantile: Annotated[float, Field(gt=0, lt=1)] = 0.9
    """The quantile of the pairwise distances that sets the default width."""
    lam: Annotated[float, Field(gt=0, le=1e3)] = 1e-6
    """The penalty lam alpha^T K_MM alpha (the 2025 paper: 1e-6)."""
    newton_steps: PositiveInt | Literal["converge"] = 1
    """Newton steps of the kernel fit from alpha = 0 (the 2025 paper: 1), or 'converge'."""
    cg_tol: Annotated[float, Field(gt=0, lt=1)] = 1e-6
    """Relative residual at which each Newton step's conjugate gradient stops."""
    cg_max_iter: Annotated[int, Field(ge=1, le=100_000)] = 1_000
    """The most conjugate-gradient iterations per Newton step."""
    block: Annotated[int, Field(ge=1, le=10_000_000)] = 8_192
    """Events per kernel block (memory ~ block x centers numbers per toy)."""
    cache_mb: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    """Kernel blocks kept between the passes of one toy, per toy in flight [MiB]; the whole
    kernel of N events takes 8 N centers bytes, and each pass recomputes what is not kept
    (0: recompute everything). None: on a CPU, half the node's available memory shared by one
    toy per core; on a GPU, a quarter of the device's free memory times gpus_per_task; at most
    8 GiB."""
    dtype: Literal["float64", "float32"] = "float64"
    """Precision of the kernel products and the Newton steps (the eigendecomposition of the
    centres' kernel is always float64)."""
    nn_hidden: list[PositiveInt] = Field(default_factory=lambda: [8])
    """Hidden layer sizes of the 'nn' method (sigmoid units)."""
    nn_epochs: Annotated[int, Field(ge=1, le=10_000_000)] = 2_000
    """Full-batch Adam steps of the 'nn' method."""
    nn_lr: Annotated[float, Field(gt=0, le=10)] = 0.01
    """Adam learning rate of the 'nn' method."""
    nn_clip: PositiveFloat = 9.0
    """Weight clipping of the 'nn' method: every weight is kept in [-clip, clip]."""
    z_alphas: list[PositiveFloat] = Field(default_factory=lambda: [1.0, 2.0, 3.0])
    """Significance thresholds of the discovery power P(Z > Z_alpha)."""
    toys_per_task: Annotated[int, Field(ge=1, le=10_000)] = 4
    """Toys per Ray task (each finished task's toys are kept on disk)."""
    device: Literal["cpu", "cuda", "auto"] = "auto"
    """Where toys run: 'auto' uses GPUs when the cluster has them."""
    gpus_per_task: Annotated[float, Field(gt=0, le=1)] = 0.25
    """The GPU fraction a toy task takes when toys run on GPUs."""
    seed: Seed = 0
    """Seed of the pools, the toys and the centres."""

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if len(set(self.signal_events)) != len(self.signal_events):
            raise ValueError(f"signal_events has repeated values: {self.signal_events}")
        if not self.feature_sets:
            raise ValueError("feature_sets is empty: nothing to test")
        return self
