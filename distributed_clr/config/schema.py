"""The typed configuration tree: one section per component, each in the module of its stage.

A component receives only its own section: the model is built from ``ModelConfig``, the
optimiser from ``OptimizerConfig``, never from the whole ``RunConfig``. ``RunConfig`` is the
tree the CLI, the presets and MLflow's params see; its sections live in ``stages`` (data,
generate, prepare, tracking, ray), ``learning`` (augment, model, loss, train, tune) and
``evaluation`` (evaluate). This module is the one place to import any of them from.

Units: energies and momenta in GeV, angles in radians.
"""

from __future__ import annotations

from pydantic import Field

from distributed_clr.config.base import (
    ALL_FEATURE_SETS,
    CLASSIFIERS,
    FEATURE_SETS,
    JET_AUGMENTATIONS,
    OBJECT_AUGMENTATIONS,
    AugmentationName,
    ClassifierName,
    FeatureSet,
    Section,
)
from distributed_clr.config.evaluation import (
    BumpHuntConfig,
    CWoLaConfig,
    EvaluateConfig,
    FCNConfig,
    NPLMConfig,
    TransBCConfig,
)
from distributed_clr.config.learning import (
    REPRESENTATIONS,
    SELECTION_MODES,
    AugmentConfig,
    CheckpointConfig,
    FaultConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    Representation,
    ScheduleConfig,
    TrainConfig,
    TuneConfig,
)
from distributed_clr.config.sample import BumpHuntSample, RoleSample, SampleConfig
from distributed_clr.config.stages import (
    SIGNAL_PROCESSES,
    SM_PROCESSES,
    DataConfig,
    DetectorConfig,
    GenerateConfig,
    ObjectGenerateConfig,
    ObjectRecoConfig,
    PrepareConfig,
    RayConfig,
    TrackingConfig,
)

__all__ = [
    "ALL_FEATURE_SETS",
    "CLASSIFIERS",
    "FEATURE_SETS",
    "JET_AUGMENTATIONS",
    "OBJECT_AUGMENTATIONS",
    "REPRESENTATIONS",
    "SELECTION_MODES",
    "SIGNAL_PROCESSES",
    "SM_PROCESSES",
    "AugmentConfig",
    "AugmentationName",
    "BumpHuntConfig",
    "BumpHuntSample",
    "CWoLaConfig",
    "CheckpointConfig",
    "ClassifierName",
    "DataConfig",
    "DetectorConfig",
    "EvaluateConfig",
    "FCNConfig",
    "FaultConfig",
    "FeatureSet",
    "GenerateConfig",
    "LossConfig",
    "ModelConfig",
    "NPLMConfig",
    "ObjectGenerateConfig",
    "ObjectRecoConfig",
    "OptimizerConfig",
    "PrepareConfig",
    "RayConfig",
    "Representation",
    "RoleSample",
    "RunConfig",
    "SampleConfig",
    "ScheduleConfig",
    "Section",
    "TrackingConfig",
    "TrainConfig",
    "TransBCConfig",
    "TuneConfig",
]


class RunConfig(Section):
    """The whole configuration of a run: one section per component."""

    data: DataConfig = Field(default_factory=DataConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    objects: ObjectGenerateConfig = Field(default_factory=ObjectGenerateConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    nplm: NPLMConfig = Field(default_factory=NPLMConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
