"""The typed configuration tree: one sub-config per component.

Every field has a type, a default, bounds where physics or arithmetic needs them, and a docstring
(pydantic reads attribute docstrings into the field description). A component receives only its own
sub-config: the model is built from ``ModelConfig``, never from the whole ``RunConfig``.

Units: energies and momenta in GeV, angles in radians.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]


def _pythia_value(value: object) -> object:
    """YAML reads ``on`` as True and ``3000`` as an int; Pythia wants its own spelling."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return repr(value)
    return value


PythiaValue = Annotated[str, BeforeValidator(_pythia_value)]

AugmentationName = Literal[
    "rotate",
    "distort",
    "collinear_split",
    "eta_shift",
    "phi_shift",
    "translate",
    "drop",
    "pt_smear",
    "mask_objects",
]
FeatureSet = Literal["latent", "event", "highlevel"]
ClassifierName = Literal["lct", "fcn"]

JET_AUGMENTATIONS: tuple[AugmentationName, ...] = (
    "rotate",
    "distort",
    "collinear_split",
    "eta_shift",
    "phi_shift",
)
"""The seed paper's five dijet augmentations (its ablation, Table I, leaves each out in turn)."""
FEATURE_SETS: tuple[FeatureSet, ...] = ("latent", "event", "highlevel")
CLASSIFIERS: tuple[ClassifierName, ...] = ("lct", "fcn")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )


# ------------------------------------------------------------------------------------------------
# data


class DataConfig(Section):
    """Where prepared datasets live and how the loaders read them."""

    path: str | None = None
    """Prepared dataset directory (local path or a pyarrow-filesystem URI); set by ``--data``."""
    train_split: str = "train"
    """Split used for training."""
    val_split: str = "val"
    """Split used for validation (early stopping, checkpoint selection)."""
    test_split: str = "test"
    """Split held out for final evaluation; never used for any choice."""
    max_events: PositiveInt | None = None
    """Read at most this many events per split (quick runs); None reads everything."""
    shuffle_buffer: NonNegInt = 10_000
    """Events in the per-worker local shuffle buffer (0 disables shuffling)."""
    prefetch_batches: NonNegInt = 2
    """Batches fetched ahead of the training step."""
    cache: bool = True
    """Keep the selected columns of the train and val splits in Ray's object store after the
    first read, so later epochs do not re-read and re-decode Parquet (Ray spills to disk when
    the store is full, so memory stays bounded)."""


# ------------------------------------------------------------------------------------------------
# generate


class DetectorConfig(Section):
    """Parametric detector response applied to generated final-state particles."""

    enabled: bool = True
    """Apply the detector response; off gives truth-level particles."""
    eta_max: PositiveFloat = 2.5
    """Particles with |eta| above this are outside the acceptance and dropped."""
    pt_min: NonNegFloat = 0.5
    """Particles below this transverse momentum after smearing are dropped [GeV]."""
    stochastic: NonNegFloat = 0.5
    """Stochastic term a of the energy resolution sigma_E/E = a/sqrt(E) (+) b/E (+) c."""
    noise: NonNegFloat = 0.5
    """Noise term b of the energy resolution [GeV]."""
    constant: NonNegFloat = 0.03
    """Constant term c of the energy resolution."""
    cell_eta: PositiveFloat = 0.0174
    """Calorimeter cell size in eta; positions are smeared by cell / sqrt(12)."""
    cell_phi: PositiveFloat = 0.0174
    """Calorimeter cell size in phi [rad]; positions are smeared by cell / sqrt(12)."""


class GenerateConfig(Section):
    """Event generation with Pythia 8 at the LHC."""

    process: Literal["qcd_dijet", "wprime_xy"] = "qcd_dijet"
    """Physics process: QCD dijets or W' -> X(qq) Y(qq)."""
    events: PositiveInt = 10_000
    """Events to write (after the trigger, when it is applied)."""
    shards: PositiveInt = 4
    """Output shards; one Ray task each."""
    seed: Seed = 1
    """Master seed; every shard derives its own independent seed from it (and the process)."""
    sqrt_s: PositiveFloat = 13_000.0
    """Proton-proton centre-of-mass energy [GeV]."""
    pthat_min: PositiveFloat = 800.0
    """Minimum hard-process pT for QCD dijets [GeV]. At 800 GeV, 3.0 +- 0.5% of events passing
    the 1.2 TeV trigger are lost to this cut (15% at 1 TeV); see
    benchmarks/pthat_trigger_study.py."""
    trigger: bool = True
    """Apply the LHC Olympics trigger (leading anti-kT jet pT above trigger_pt)."""
    trigger_pt: PositiveFloat = 1_200.0
    """Trigger threshold on the leading jet pT [GeV]."""
    trigger_radius: PositiveFloat = 1.0
    """Anti-kT radius of the trigger jets."""
    wprime_mass: PositiveFloat = 3_500.0
    """W' pole mass [GeV]."""
    wprime_window: PositiveFloat = 1_000.0
    """Half-width of the generated W' mass window [GeV]."""
    x_mass: PositiveFloat = 500.0
    """Mass of X (the heavier daughter) [GeV]."""
    y_mass: PositiveFloat = 100.0
    """Mass of Y (the lighter daughter) [GeV]."""
    x_width: PositiveFloat = 0.01
    """Width of X [GeV]; narrow, as in the LHC Olympics R&D signal."""
    y_width: PositiveFloat = 0.01
    """Width of Y [GeV]."""
    chunk_events: Annotated[int, Field(ge=16, le=5_000)] = 500
    """Most events Pythia generates per batch (a batch holds ~0.2 MB per event in memory)."""
    mpi: bool = True
    """Multi-parton interactions."""
    isr: bool = True
    """Initial-state radiation."""
    fsr: bool = True
    """Final-state radiation."""
    pythia_settings: dict[str, PythiaValue] = Field(default_factory=dict)
    """Raw Pythia settings, e.g. {'PhaseSpace:pTHatMax': '3000'}; applied last, so they win."""
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    """Detector response."""

    @model_validator(mode="after")
    def _masses_fit(self) -> Self:
        if self.x_mass + self.y_mass >= self.wprime_mass:
            raise ValueError(
                f"x_mass + y_mass ({self.x_mass} + {self.y_mass} GeV) must be below "
                f"wprime_mass ({self.wprime_mass} GeV) for the decay to be allowed"
            )
        if self.wprime_window >= self.wprime_mass:
            raise ValueError("wprime_window must be smaller than wprime_mass")
        return self


# ------------------------------------------------------------------------------------------------
# prepare


class PrepareConfig(Section):
    """Clustering, dijet selection, observables and split assignment."""

    jet_radius: PositiveFloat = 0.8
    """Anti-kT jet radius."""
    select_by: Literal["mass", "pt"] = "mass"
    """Which two jets: the two heaviest, heavier first (the seed paper's choice), or the two
    hardest, harder first."""
    candidate_pt_min: NonNegFloat = 20.0
    """Jets below this pT are not candidates for selection [GeV]."""
    num_constituents: PositiveInt = 50
    """Constituents kept per jet (hardest first, zero-padded)."""
    jet_pt_min: NonNegFloat = 800.0
    """Both selected jets need pT above this [GeV]."""
    jet_pt_max: PositiveFloat = 3_000.0
    """Both selected jets need pT below this [GeV]."""
    jet_eta_max: PositiveFloat = 3.0
    """Both selected jets need |eta| below this."""
    train_fraction: Fraction = 0.6
    """Fraction of events assigned to the train split."""
    val_fraction: Fraction = 0.2
    """Fraction assigned to the validation split; the rest is test."""
    num_folds: Annotated[int, Field(ge=2, le=100)] = 5
    """Number of cross-validation folds assigned alongside the split."""
    split_salt: str = "dclr-v1"
    """Salt of the split hash; changing it reshuffles every split."""
    batch_events: PositiveInt = 2_048
    """Events per Ray Data batch in clustering."""

    @model_validator(mode="after")
    def _fractions(self) -> Self:
        if self.train_fraction + self.val_fraction > 1.0 + 1e-12:
            raise ValueError(
                f"train_fraction + val_fraction = {self.train_fraction + self.val_fraction} "
                "exceeds 1"
            )
        if self.jet_pt_max <= self.jet_pt_min:
            raise ValueError("jet_pt_max must be above jet_pt_min")
        return self


# ------------------------------------------------------------------------------------------------
# augment


class AugmentConfig(Section):
    """Physics-symmetry augmentations that make the two views of an event."""

    pipeline: list[AugmentationName] = Field(default_factory=lambda: list(JET_AUGMENTATIONS))
    """Augmentations applied in this order; leave one out for an ablation."""
    views: Literal["both", "anchor"] = "both"
    """'both': both views augmented; 'anchor': view 1 is the unaugmented event."""
    distort_strength: NonNegFloat = 0.1
    """s in sigma = s / max(pT, pt_min): the eta/phi smearing width of a constituent."""
    distort_pt_min: PositiveFloat = 1.0
    """pT floor in the distortion width [GeV]."""
    split_max: NonNegInt = 10
    """At most this many constituents per jet are split collinearly."""
    eta_shift_max: NonNegFloat = 1.0
    """Event-wide eta shift drawn from U(-eta_shift_max, eta_shift_max)."""
    translate_width: NonNegFloat = 0.1
    """Per-jet translation in (eta, phi) drawn from N(0, translate_width)."""
    drop_probability: Fraction = 0.1
    """Probability to drop each constituent."""
    pt_smear: NonNegFloat = 0.1
    """Relative pT smearing width (log-normal)."""
    mask_probability: Fraction = 0.1
    """Probability to mask each physics object (object-level events)."""


# ------------------------------------------------------------------------------------------------
# model


class ModelConfig(Section):
    """The encoder and its projection head."""

    name: Literal["transformer", "mlp"] = "transformer"
    """Encoder architecture."""
    latent_dim: Annotated[int, Field(ge=4, le=512)] = 128
    """Size of the representation space."""
    width: PositiveInt | None = None
    """Transformer model width; None uses latent_dim (the seed paper's choice)."""
    depth: PositiveInt = 2
    """Transformer layers."""
    heads: PositiveInt = 4
    """Attention heads; must divide the width."""
    ff_dim: PositiveInt | None = None
    """Feed-forward size; None uses 2 x width."""
    dropout: Fraction = 0.1
    """Dropout in the encoder (off at evaluation)."""
    pooling: Literal["pt_weighted", "mean", "cls"] = "pt_weighted"
    """Pooling of constituents: pT-weighted sum (IR-safe), mean, or a class token."""
    mlp_hidden: list[PositiveInt] = Field(default_factory=lambda: [256, 256])
    """Hidden sizes of the MLP encoder."""
    head_dim: PositiveInt | None = None
    """Hidden size of the two-layer projection head; None uses latent_dim."""
    representation: Literal["encoder", "head1", "head"] = "head1"
    """Representation used downstream: encoder output, after head layer 1, or head output."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Self:
        width = self.width or self.latent_dim
        if self.name == "transformer" and width % self.heads:
            raise ValueError(
                f"heads ({self.heads}) must divide the transformer width ({width}); "
                f"choose heads among {[h for h in range(1, width + 1) if width % h == 0][:8]}"
            )
        return self


# ------------------------------------------------------------------------------------------------
# loss


class LossConfig(Section):
    """The contrastive (or non-contrastive) objective."""

    name: Literal["ntxent", "supcon", "vicreg"] = "ntxent"
    """NT-Xent (SimCLR), supervised contrastive (process labels) or VICReg."""
    temperature: Annotated[float, Field(gt=0, le=10)] = 0.1
    """Softmax temperature of NT-Xent and SupCon."""
    positive_in_denominator: bool = True
    """Keep the positive pair in the denominator (SimCLR); False gives the seed paper's Eq. 1."""
    gather_distributed: bool = True
    """Under DDP, take negatives from all ranks."""
    vicreg_invariance: NonNegFloat = 25.0
    """VICReg invariance (similarity) weight."""
    vicreg_variance: NonNegFloat = 25.0
    """VICReg variance weight."""
    vicreg_covariance: NonNegFloat = 1.0
    """VICReg covariance weight."""


# ------------------------------------------------------------------------------------------------
# train


class TrainConfig(Section):
    """The training loop: optimisation, schedule, checkpoints, fault tolerance."""

    epochs: PositiveInt = 100
    """Maximum number of epochs."""
    batch_size: PositiveInt = 400
    """Events per worker per step; the global batch is batch_size x workers."""
    optimizer: Literal["adam", "adamw", "lars", "lamb"] = "adam"
    """Optimiser."""
    lr: PositiveFloat = 1e-4
    """Learning rate at the reference batch size."""
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    """Scale lr with global batch / reference_batch_size: not, linearly, or by the square root."""
    reference_batch_size: PositiveInt = 256
    """Batch size at which lr applies unscaled."""
    weight_decay: NonNegFloat = 0.0
    """Weight decay (decoupled for AdamW, LARS and LAMB)."""
    schedule: Literal["constant", "cosine"] = "constant"
    """Learning-rate schedule after warm-up."""
    warmup_epochs: NonNegFloat = 0.0
    """Linear warm-up length in epochs (fractions allowed)."""
    grad_clip: PositiveFloat | None = None
    """Clip the global gradient norm to this value; None disables clipping."""
    early_stopping_patience: PositiveInt | None = 20
    """Stop after this many epochs without a better validation loss; None disables."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16 autocast applies on GPU only; CPU runs stay fp32 (CPU bf16 is slower)."""
    compile: bool = False
    """Compile the model with torch.compile."""
    seed: Seed = 0
    """Seed of weights, shuffling and augmentations."""
    probe_events: NonNegInt = 4_000
    """Labelled validation events for the per-epoch linear-probe AUC (val_probe_auc): half fit
    a logistic regression on the representation, half score it. 0 disables the probe."""
    keep_checkpoints: PositiveInt = 3
    """Keep the best K checkpoints by validation loss (plus the latest)."""
    max_failures: NonNegInt = 2
    """Worker-group restarts allowed before the run fails."""
    fail_rank: NonNegInt | None = None
    """Fault injection for tests: crash this rank once ..."""
    fail_epoch: NonNegInt | None = None
    """... in this epoch (after its training pass); once per run."""

    @model_validator(mode="after")
    def _fault_injection_pair(self) -> Self:
        if (self.fail_rank is None) != (self.fail_epoch is None):
            raise ValueError("fail_rank and fail_epoch must be set together")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) exceeds epochs ({self.epochs})")
        return self


# ------------------------------------------------------------------------------------------------
# tune


class TuneConfig(Section):
    """Hyper-parameter sweeps with Ray Tune."""

    num_samples: PositiveInt = 1
    """Samples per point of the search space (grid) or trials (random/optuna)."""
    scheduler: Literal["asha", "none"] = "asha"
    """Trial scheduler; ASHA stops weak trials early."""
    search: Literal["grid", "random", "optuna"] = "grid"
    """Search algorithm."""
    metric: str = "val_probe_auc"
    """Metric reported every epoch and used for selection."""
    mode: Literal["max", "min"] = "max"
    """Whether the metric is maximised or minimised."""
    grace_period: PositiveInt = 2
    """ASHA: epochs before a trial can be stopped."""
    reduction_factor: Annotated[float, Field(gt=1)] = 3.0
    """ASHA: halving rate."""
    max_concurrent_trials: PositiveInt | None = None
    """Cap on concurrent trials; None derives it from the cluster's resources."""


# ------------------------------------------------------------------------------------------------
# evaluate


def _default_fractions() -> list[float]:
    return [0.0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.2, 0.5, 1.0]


class EvaluateConfig(Section):
    """Classifier tests, CWoLa scans and the bump hunt on a representation."""

    feature_sets: list[FeatureSet] = Field(default_factory=lambda: list(FEATURE_SETS))
    """Feature sets compared."""
    classifiers: list[ClassifierName] = Field(default_factory=lambda: list(CLASSIFIERS))
    """Classifiers: linear (LCT) and the fully connected network (FCN)."""
    fcn_hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
    """FCN hidden layer sizes."""
    fcn_dropout: Fraction = 0.1
    """FCN dropout (off at test time)."""
    fcn_lr: PositiveFloat = 1e-3
    """FCN Adam learning rate."""
    fcn_epochs: PositiveInt = 200
    """FCN maximum epochs."""
    fcn_patience: PositiveInt = 10
    """FCN early stopping patience on validation loss."""
    fcn_batch_size: PositiveInt = 256
    """FCN batch size."""
    repeats: PositiveInt = 5
    """Independent seeds (or folds) per measurement; results give mean and spread."""
    min_background: PositiveInt = 20
    """SIC is only reported where the background efficiency rests on this many test events."""
    cwola_fractions: list[Fraction] = Field(default_factory=_default_fractions)
    """Signal fractions f of the idealised CWoLa scan."""
    signal_region: tuple[PositiveFloat, PositiveFloat] = (3_300.0, 3_700.0)
    """Bump hunt signal region in m_jj [GeV]."""
    sideband_width: PositiveFloat = 200.0
    """Width of each sideband next to the signal region [GeV]."""
    seed: Seed = 0
    """Seed of sampling and classifier initialisation."""
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
    trans_bc: bool = True
    """Train the Trans+BC baseline in ``evaluate classify``: the encoder architecture trained end
    to end on the labelled constituents with binary cross-entropy (needs the prepared data)."""
    trans_bc_epochs: Annotated[int, Field(ge=1, le=10_000)] = 50
    """Trans+BC maximum epochs."""
    trans_bc_patience: Annotated[int, Field(ge=1, le=1_000)] = 5
    """Trans+BC early stopping patience: epochs without a better loss on the validation part
    carved from the train split."""
    trans_bc_lr: Annotated[float, Field(gt=0, le=1)] = 1e-3
    """Trans+BC Adam learning rate."""
    trans_bc_batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    """Trans+BC batch size (events per optimiser step)."""
    trans_bc_device: Literal["cpu", "cuda", "auto"] = "cpu"
    """Device of the Trans+BC training: 'cuda' needs a GPU, 'auto' takes one if present."""
    bumphunt_efficiencies: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [1.0, 0.1, 0.01]
    )
    """Bump hunt cuts: each keeps this fraction of the signal-region and sideband events with
    the highest classifier scores (1.0: no cut)."""
    bumphunt_bin_width: Annotated[float, Field(gt=0, le=5_000)] = 100.0
    """Largest m_jj bin width of the bump hunt spectra and sideband fit [GeV]."""

    @model_validator(mode="after")
    def _region_ordered(self) -> Self:
        low, high = self.signal_region
        if not low < high:
            raise ValueError(f"signal_region must be (low, high) with low < high, got {low, high}")
        if any(math.isnan(f) for f in self.cwola_fractions):
            raise ValueError("cwola_fractions contains NaN")
        return self


# ------------------------------------------------------------------------------------------------
# tracking and ray


class TrackingConfig(Section):
    """MLflow tracking."""

    enabled: bool = True
    """Log to MLflow at all."""
    uri: str | None = None
    """Tracking URI; None uses MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working dir."""
    experiment: str = "distributed_clr"
    """MLflow experiment name."""
    system_metrics: bool = True
    """Record CPU/GPU/memory system metrics with the run."""


class RayConfig(Section):
    """The Ray cluster and the resources a training run asks for."""

    address: str | None = None
    """Cluster address; None uses RAY_ADDRESS, else starts a local Ray."""
    num_workers: PositiveInt = 2
    """Training workers (DDP ranks)."""
    use_gpu: bool = False
    """One GPU per worker, nccl backend; otherwise CPU with gloo."""
    cpus_per_worker: PositiveFloat = 1.0
    """CPUs reserved per training worker."""
    storage_path: str = "ray_results"
    """Where Ray Train keeps checkpoints and results (local path or URI)."""
    num_cpus: PositiveInt | None = None
    """CPUs of a local Ray session; None lets Ray count them."""


# ------------------------------------------------------------------------------------------------


class RunConfig(Section):
    """The whole configuration of a run: one section per component."""

    data: DataConfig = Field(default_factory=DataConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
