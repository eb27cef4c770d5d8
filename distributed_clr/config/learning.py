"""Config sections of representation learning: augmentations, model, loss, the training loop
(with its optimiser, schedule, checkpoint and fault-injection sub-sections) and sweeps."""

from __future__ import annotations

from typing import Annotated, Literal, Self, get_args

from pydantic import Field, model_validator

from distributed_clr.config.base import (
    JET_AUGMENTATIONS,
    AugmentationName,
    Fraction,
    NonNegFloat,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    Section,
    Seed,
)

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
    """At most this many constituents per jet are split collinearly (and at most half the
    slots); a full jet makes room by losing its softest constituents."""
    split_choice: Literal["leading", "random"] = "leading"
    """Which constituents collinear splitting splits: the hardest ('leading'), or real ones
    drawn at random (the seed paper's choice)."""
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
    input_mask_probability: Fraction = 0.5
    """Probability to mask each input (pT, eta, phi of each object; object-level events)."""


# ------------------------------------------------------------------------------------------------
# model


Representation = Literal["encoder", "head1", "head"]
"""Which layer's output is the downstream representation."""
REPRESENTATIONS: tuple[str, ...] = get_args(Representation)


class ModelConfig(Section):
    """The encoder and its projection head."""

    name: Literal["transformer", "mlp", "reference"] = "transformer"
    """Encoder architecture: our transformer, an MLP on the flattened inputs, or 'reference',
    the seed paper's encoder rebuilt from its description (``models/reference.py``)."""
    inputs: Literal["absolute", "jet_frame", "paper"] = "absolute"
    """The encoder's input features (``augment/normalize.py``): 'absolute' includes each jet's
    pT and eta, from which m_jj can be rebuilt; 'jet_frame' keeps only what does not fix the
    jets' momenta (pT fractions and positions within each jet, the jets' azimuthal gap): the
    choice for a bump hunt in m_jj; 'paper' is the seed paper's (pT / reference_pt_scale,
    eta, phi from the first jet's axis)."""
    reference_pt_scale: PositiveFloat = 100.0
    """[GeV] pT divided by this is the 'paper' inputs' pT and the reference encoder's
    attention and pooling weight (the paper divides by a tenth of the batch's largest
    constituent pT, about 1 TeV on these jets)."""
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
    """Hidden sizes of the MLP encoder (the 2025 paper's: 96, 64, 48)."""
    mlp_norm: Literal["none", "layer", "batch"] = "none"
    """Normalisation after each hidden layer of the MLP. 'layer' needs no statistics across
    events; 'batch' becomes SyncBatchNorm under multi-GPU training, and is refused for
    multi-worker CPU training (per-rank batch statistics would let the two views of an event
    find each other through them)."""
    mlp_activation: Literal["gelu", "leaky_relu"] = "gelu"
    """Activation of the MLP's hidden layers (the 2025 paper's: LeakyReLU)."""
    head_dim: PositiveInt | None = None
    """Hidden size of the two-layer projection head; None uses latent_dim."""
    head_out: PositiveInt | None = None
    """Output size of the projection head (what the loss sees); None uses latent_dim. The
    2025 paper's expander is latent -> 48 -> 96 (head_dim 48, head_out 96)."""
    representation: Representation = "head1"
    """Representation used downstream: encoder output, after head layer 1, or head output."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Self:
        width = self.width or self.latent_dim
        if self.name in ("transformer", "reference") and width % self.heads:
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
    supcon_label: Literal["process_id", "label"] = "process_id"
    """What makes two events positives under SupCon: the same SM process id (object-level
    events; the 2025 paper's choice, no signal label involved), or the same signal label
    (dijets, which carry no process id: this trains on the labels a search must not use)."""
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


class OptimizerConfig(Section):
    """The optimiser and its learning rate for the global batch."""

    name: Literal["adam", "adamw", "lars", "lamb"] = "adam"
    """Optimiser: Adam, AdamW, or the large-batch LARS and LAMB."""
    lr: PositiveFloat = 1e-4
    """Learning rate at the reference batch size."""
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    """Scale lr with global batch / reference_batch_size: not, linearly, or by the square root."""
    reference_batch_size: PositiveInt = 256
    """Batch size at which lr applies unscaled."""
    weight_decay: NonNegFloat = 0.0
    """Weight decay (decoupled for AdamW, LARS and LAMB)."""
    grad_clip: PositiveFloat | None = None
    """Clip the global gradient norm to this value; None disables clipping."""


class ScheduleConfig(Section):
    """The learning-rate schedule, stepped once per optimiser step."""

    name: Literal["constant", "cosine"] = "constant"
    """Learning-rate schedule after warm-up."""
    warmup_epochs: NonNegFloat = 0.0
    """Linear warm-up length in epochs (fractions allowed)."""


class CheckpointConfig(Section):
    """Which checkpoints a run keeps."""

    keep: PositiveInt = 3
    """Keep the best K checkpoints by validation loss (plus the latest)."""


class FaultConfig(Section):
    """Fault tolerance, and fault injection to test it."""

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
        return self


class TrainConfig(Section):
    """The training loop; optimiser, schedule, checkpoints and faults have sub-sections."""

    epochs: PositiveInt = 100
    """Maximum number of epochs."""
    batch_size: PositiveInt = 400
    """Events per worker per step; the global batch is batch_size x workers."""
    selection_metric: Literal[
        "val_align_uniform", "val_loss", "val_view_retrieval", "val_probe_auc"
    ] = "val_align_uniform"
    """The metric that picks the best epoch: the checkpoint kept and embedded, early stopping,
    and a sweep's ranking. 'val_align_uniform' (default, minimised) uses no labels: alignment +
    uniformity of the validation views' projections in fixed groups of 256 events, comparable
    across temperatures, losses and batch sizes. 'val_loss' is the contrastive loss (not
    comparable across temperatures); 'val_view_retrieval' rewards an untrained encoder (see
    ``train/validation.py``); 'val_probe_auc' uses the signal labels (a search should not
    select on them)."""
    early_stopping_patience: PositiveInt | None = 20
    """Stop after this many epochs without a better ``selection_metric``; None disables."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """'bf16': autocast of the model to bf16 on any device, the loss in fp32. On CPUs without
    native bf16 arithmetic it is slower than fp32; it runs there so the bf16 path is testable."""
    compile: bool = False
    """Compile the model with torch.compile."""
    seed: Seed = 0
    """Seed of weights, shuffling and augmentations."""
    probe_events: NonNegInt = 4_000
    """Validation events of the per-epoch linear-probe AUC (val_probe_auc), a diagnostic: a
    fixed subset drawn by hash, balanced between background and signal where possible; half fit
    a logistic regression on the representation, half score it. 0 disables the probe; it is
    skipped (NaN, with a warning) when the validation split lacks one class."""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """Optimiser and learning rate."""
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    """Learning-rate schedule."""
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    """Checkpoints kept."""
    faults: FaultConfig = Field(default_factory=FaultConfig)
    """Restarts after failures, and fault injection."""

    @model_validator(mode="after")
    def _warmup_fits(self) -> Self:
        if self.schedule.warmup_epochs > self.epochs:
            raise ValueError(
                f"schedule.warmup_epochs ({self.schedule.warmup_epochs}) exceeds epochs "
                f"({self.epochs})"
            )
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
    grace_period: PositiveInt = 2
    """ASHA: epochs before a trial can be stopped."""
    reduction_factor: Annotated[float, Field(gt=1)] = 3.0
    """ASHA: halving rate."""
    max_concurrent_trials: PositiveInt | None = None
    """Cap on concurrent trials; None derives it from the cluster's resources."""


SELECTION_MODES: dict[str, Literal["max", "min"]] = {
    "val_align_uniform": "min",
    "val_view_retrieval": "max",
    "val_loss": "min",
    "val_probe_auc": "max",
}
"""Whether each selection metric is maximised or minimised."""
