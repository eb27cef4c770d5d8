"""Named presets: each a function returning a complete, validated ``RunConfig``.

``debug`` is the tiny configuration shared by tests and CI; ``demo`` is what ``make demo`` runs on
a 2-core laptop; ``paper_lhco`` holds the settings of the seed paper (Dillon, Mastandrea, Nachman
2023) on the LHC Olympics R&D dijets, ``paper_lhco_cwola`` its background-only encoder for the
weakly supervised scans and ``paper_lhco_reference`` its own encoder rebuilt; ``paper_adc``
(SupCon) and ``paper_adc_simclr`` hold the settings of the 2025 paper (Metzger, Grosso, Harris
et al.) on object-level events; ``search`` is an
m_jj-blind bump hunt on generated data (the closure and injection study of the README).
"""

from __future__ import annotations

from collections.abc import Callable

from distributed_clr.config.errors import ConfigError
from distributed_clr.config.schema import (
    AugmentConfig,
    BumpHuntConfig,
    BumpHuntSample,
    CWoLaConfig,
    DataConfig,
    EvaluateConfig,
    FaultConfig,
    FCNConfig,
    GenerateConfig,
    LossConfig,
    ModelConfig,
    NPLMConfig,
    OptimizerConfig,
    PrepareConfig,
    RayConfig,
    RoleSample,
    RunConfig,
    SampleConfig,
    ScheduleConfig,
    TrainConfig,
    TransBCConfig,
)


def paper_lhco() -> RunConfig:
    """The seed paper: 50 constituents per jet, transformer (4 heads, 2 layers, width = latent
    size 128), NT-Xent at temperature 0.1 without the positive in the denominator (its Eq. 1),
    an unaugmented anchor view, Adam at lr 1e-4, batch 400 on one worker, early stopping after
    20 epochs, and the representation taken after the first head layer. The classifier tests
    use the paper's balanced standard test set (as many background as signal test events)."""
    return RunConfig(
        prepare=PrepareConfig(num_constituents=50, select_by="mass"),
        augment=AugmentConfig(views="anchor"),
        model=ModelConfig(
            name="transformer", latent_dim=128, depth=2, heads=4, representation="head1"
        ),
        loss=LossConfig(name="ntxent", temperature=0.1, positive_in_denominator=False),
        train=TrainConfig(
            epochs=500,
            batch_size=400,
            optimizer=OptimizerConfig(name="adam", lr=1e-4),
            schedule=ScheduleConfig(name="constant"),
            early_stopping_patience=20,
        ),
        ray=RayConfig(num_workers=1),
        sample=SampleConfig(classify_test=RoleSample(signal_to_background=1.0)),
    )


def paper_lhco_cwola() -> RunConfig:
    """``paper_lhco`` with the encoder the paper uses for its weakly supervised (CWoLa)
    scans: pretrained on background only, so that the representation cannot have learned the
    signal it is then asked to find."""
    config = paper_lhco()
    return config.model_copy(
        update={
            "sample": config.sample.model_copy(update={"pretrain": RoleSample(signal=0)}),
        }
    )


def paper_lhco_reference() -> RunConfig:
    """``paper_lhco`` with the paper's own encoder and inputs rebuilt (``models/reference.py``):
    the reference our encoder has to beat on the same data."""
    config = paper_lhco()
    return config.model_copy(
        update={"model": config.model.model_copy(update={"name": "reference", "inputs": "paper"})}
    )


def paper_adc() -> RunConfig:
    """The 2025 paper (Metzger, Grosso, Harris et al.) on object-level events (CMS ADC2021
    layout, 19 objects x (pT, eta, phi)): the MLP 57 -> 96 -> 64 -> 48 -> 4 with normalisation
    (layer norm: no statistics across ranks) and LeakyReLU, the expander 4 -> 48 -> 96 for the
    loss and the embedding taken before it; SupCon on the SM process id, random masking of
    the inputs with p = 0.5, temperature 0.9, LARS at lr 0.2 x batch / 256 with 10 warm-up
    epochs and cosine decay, batch 1024 on one worker, 50 epochs. ``paper_adc_simclr`` is its
    SimCLR variant. Evaluations compare the embedding with the 57 raw inputs ('event'); the
    Trans+BC baseline is a dijet model and is off. The paper's transformer is
    ``model.name=transformer``, ``model.width=64``, ``model.heads=8``, ``model.depth=4``,
    ``model.pooling=cls``."""
    return RunConfig(
        data=DataConfig(kind="objects"),
        augment=AugmentConfig(pipeline=["mask_inputs"], input_mask_probability=0.5),
        model=ModelConfig(
            name="mlp",
            mlp_hidden=[96, 64, 48],
            mlp_norm="layer",
            mlp_activation="leaky_relu",
            dropout=0.0,
            latent_dim=4,
            head_dim=48,
            head_out=96,
            representation="encoder",
        ),
        loss=LossConfig(name="supcon", supcon_label="process_id", temperature=0.9),
        train=TrainConfig(
            epochs=50,
            batch_size=1024,
            optimizer=OptimizerConfig(
                name="lars",
                lr=0.2,
                lr_scaling="linear",
                reference_batch_size=256,
                weight_decay=1e-6,
            ),
            schedule=ScheduleConfig(name="cosine", warmup_epochs=10),
            early_stopping_patience=None,
        ),
        evaluate=EvaluateConfig(
            feature_sets=["latent", "event"], trans_bc=TransBCConfig(enabled=False)
        ),
        nplm=NPLMConfig(feature_sets=["latent", "event"]),
        ray=RayConfig(num_workers=1),
    )


def paper_adc_simclr() -> RunConfig:
    """``paper_adc`` with SimCLR (NT-Xent: an event's only positive is its other view)."""
    config = paper_adc()
    return config.model_copy(update={"loss": config.loss.model_copy(update={"name": "ntxent"})})


def demo_objects() -> RunConfig:
    """The object-level path in minutes on a 2-core CPU (``dclr demo --kind objects``): 6,000
    cocktail events and two signals, ``paper_adc``'s encoder and SupCon at latent size 8, two
    Ray workers, 15 epochs, and a small NPLM study."""
    base = paper_adc()
    return base.model_copy(
        update={
            "objects": base.objects.model_copy(update={"events": 6_000, "shards": 4}),
            "model": base.model.model_copy(update={"latent_dim": 8}),
            "train": base.train.model_copy(
                update={
                    "epochs": 15,
                    "batch_size": 256,
                    "schedule": ScheduleConfig(name="cosine", warmup_epochs=2),
                }
            ),
            "evaluate": base.evaluate.model_copy(update={"repeats": 2}),
            "nplm": base.nplm.model_copy(
                update={
                    "toys": 30,
                    "reference_events": 3_000,
                    "data_events": 1_000,
                    "signal_events": [30, 60],
                    "centers": 300,
                }
            ),
            "ray": RayConfig(num_workers=2),
        }
    )


def search() -> RunConfig:
    """An m_jj-blind CWoLa bump hunt on generated dijets, sized for a 2-core machine (about
    an hour): ``demo``'s encoder and training, on 24,000 QCD events (and a W' signal to inject,
    generated separately), encoder inputs in the jet frame, pretrained on background only, the
    event_frame and high-level feature sets next to the latent space, and W' injections of 0 to
    3,000 events with 3 seeds each. With 0 injected it is the closure test: no cut may make a
    bump."""
    base = demo()
    return base.model_copy(
        update={
            "generate": base.generate.model_copy(update={"events": 24_000, "shards": 8}),
            "model": base.model.model_copy(update={"inputs": "jet_frame"}),
            "train": base.train.model_copy(update={"batch_size": 256}),
            "evaluate": base.evaluate.model_copy(
                update={
                    "feature_sets": ["latent", "event_frame", "highlevel"],
                    "cwola": CWoLaConfig(),
                    "bumphunt": BumpHuntConfig(),
                }
            ),
            "sample": base.sample.model_copy(
                update={
                    "pretrain": RoleSample(signal=0),
                    "bumphunt": BumpHuntSample(signal=[0, 300, 1000, 3000]),
                }
            ),
        }
    )


def demo() -> RunConfig:
    """The whole method in minutes on a 2-core CPU: a few thousand events, a small transformer,
    two Ray workers."""
    return RunConfig(
        generate=GenerateConfig(events=4_000, shards=4),
        prepare=PrepareConfig(num_constituents=30),
        model=ModelConfig(latent_dim=32, depth=2, heads=4),
        loss=LossConfig(temperature=0.2),
        train=TrainConfig(
            epochs=10,
            batch_size=128,
            optimizer=OptimizerConfig(name="adam", lr=1e-3),
            schedule=ScheduleConfig(name="cosine", warmup_epochs=1),
            early_stopping_patience=5,
        ),
        evaluate=EvaluateConfig(repeats=3, cwola=CWoLaConfig(fractions=[0.0, 0.05, 0.1, 0.2, 0.5])),
        ray=RayConfig(num_workers=2),
    )


def debug() -> RunConfig:
    """Tiny and fast, for tests and CI: every stage runs in seconds."""
    return RunConfig(
        data=DataConfig(shuffle_buffer=256),
        generate=GenerateConfig(events=200, shards=2),
        prepare=PrepareConfig(num_constituents=16, batch_events=256),
        model=ModelConfig(latent_dim=8, depth=1, heads=2, dropout=0.0, mlp_hidden=[32]),
        train=TrainConfig(
            epochs=2,
            batch_size=32,
            optimizer=OptimizerConfig(lr=1e-3),
            early_stopping_patience=None,
            faults=FaultConfig(max_failures=1),
        ),
        evaluate=EvaluateConfig(
            repeats=2,
            fcn=FCNConfig(epochs=20, patience=3),
            cwola=CWoLaConfig(fractions=[0.0, 0.2, 0.5]),
            trans_bc=TransBCConfig(epochs=3, patience=2, batch_size=64),
        ),
        ray=RayConfig(num_workers=2, num_cpus=2),
    )


PRESETS: dict[str, Callable[[], RunConfig]] = {
    "debug": debug,
    "demo": demo,
    "demo_objects": demo_objects,
    "paper_adc": paper_adc,
    "paper_adc_simclr": paper_adc_simclr,
    "paper_lhco": paper_lhco,
    "paper_lhco_cwola": paper_lhco_cwola,
    "paper_lhco_reference": paper_lhco_reference,
    "search": search,
}


def get_preset(name: str) -> RunConfig:
    """A fresh copy of the named preset, validated again (presets derived by ``model_copy``
    skip pydantic's validators until here)."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown preset '{name}'; available presets: {', '.join(sorted(PRESETS))}"
        ) from None
    return RunConfig.model_validate(factory().model_dump())
