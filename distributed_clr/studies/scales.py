"""Study scales: how big each study's samples, models and trainings are.

* ``ci``: a few minutes per study on the tests' small datasets: every event of the data,
  one-layer models, two epochs, two repeats, half a CPU per training worker (several trials
  at once), and the shortest grids that keep every row of the report (the ends and middle of
  a scan).
* ``laptop``: a study in under an hour on 2 CPU cores (the README states the measured times),
  on datasets of a few ten thousand generated events.
* ``paper``: the papers' sample sizes and trainings (``PAPER_SIZES``), meant for GPUs.
* a number F: the paper's settings with every sample size multiplied by F.

A scale is a list of config overrides applied after the preset and ``--config`` files and
before the study's own settings and ``--set`` (``runner.study_config``).
"""

from __future__ import annotations

from typing import Any

from distributed_clr.errors import UserError

__all__ = ["DEFAULT_PRESETS", "NAMED_SCALES", "PAPER_SIZES", "parse_scale", "scale_overrides"]

NAMED_SCALES = ("ci", "laptop", "paper")

DEFAULT_PRESETS = {"dijet": "paper_lhco", "objects": "paper_adc"}
"""The preset a study starts from, by the kind of its data (``--preset`` replaces it)."""

PAPER_SIZES: dict[str, dict[str, int]] = {
    # Dillon, Mastandrea, Nachman 2023 on the LHC Olympics R&D set, as the authors' code
    # sets it up (published.yaml, 'setup'): the encoder trains on 50k background events (plus
    # signal in the pretraining S/B study); the classifiers on 85k background + 85k signal
    # (train and validation); the standard test set is 10k + 10k; CWoLa's samples hold 85k.
    "dijet": {
        "sample.pretrain.background": 50_000,
        "sample.classify_train.background": 85_000,
        "sample.classify_train.signal": 85_000,
        "sample.classify_test.background": 10_000,
        "sample.cwola.background": 85_000,
    },
    # Metzger, Grosso, Harris et al. 2025: reference 1e6, toys of 1e5 background events.
    "objects": {
        "nplm.reference_events": 1_000_000,
        "nplm.data_events": 100_000,
    },
}
"""The papers' sample sizes, per data kind; a factor scale multiplies each."""

PAPER_SETTINGS: dict[str, list[tuple[str, Any]]] = {
    # The encoders of the seed paper's ablation and latent scans see as much signal as
    # background (its "50kS_50kB" runs); the studies that need background-only encoders, or
    # scan S/B, set their own.
    "dijet": [("sample.pretrain.signal_to_background", 1.0)],
    "objects": [],
}
"""The papers' settings that are not sample sizes, at the paper scale and its factors."""

_CI: dict[str, list[tuple[str, Any]]] = {
    "dijet": [
        ("model.depth", 1),
        ("model.heads", 2),
        ("train.epochs", 2),
        ("train.batch_size", 32),
        ("train.early_stopping_patience", None),
        ("train.optimizer.lr", 1e-3),
        ("ray.num_workers", 1),
        ("ray.cpus_per_worker", 0.5),
        ("evaluate.repeats", 2),
        ("evaluate.bootstrap", 20),
        ("evaluate.fcn.epochs", 20),
        ("evaluate.fcn.patience", 3),
        ("evaluate.trans_bc.epochs", 2),
        ("evaluate.trans_bc.patience", 1),
        ("evaluate.trans_bc.batch_size", 64),
        ("evaluate.cwola.fractions", [0.0, 0.1, 0.3, 1.0]),
        ("evaluate.bumphunt.allow_leaky", True),
        ("evaluate.bumphunt.efficiencies", [1.0, 0.3]),
        ("nplm.toys", 6),
        ("nplm.reference_events", 100),
        ("nplm.data_events", 60),
        ("nplm.centers", 30),
        ("nplm.toys_per_task", 6),
    ],
    "objects": [
        ("model.latent_dim", 4),
        ("train.epochs", 2),
        ("train.batch_size", 64),
        ("train.schedule.warmup_epochs", 1),
        ("ray.num_workers", 1),
        ("ray.cpus_per_worker", 0.5),
        ("evaluate.repeats", 2),
        ("evaluate.bootstrap", 20),
        ("evaluate.fcn.epochs", 20),
        ("nplm.toys", 6),
        ("nplm.reference_events", 150),
        ("nplm.data_events", 80),
        ("nplm.centers", 30),
        ("nplm.toys_per_task", 6),
    ],
}

_LAPTOP: dict[str, list[tuple[str, Any]]] = {
    # The transformer's width is held at 64 (the paper ties it to the latent size), so that
    # latent 512 fits the hour; the latent size is the representation's (after the first head
    # layer).
    "dijet": [
        ("model.width", 64),
        ("model.depth", 2),
        ("model.heads", 4),
        ("train.epochs", 6),
        ("train.batch_size", 128),
        ("train.early_stopping_patience", None),
        ("train.optimizer.lr", 1e-3),
        ("train.schedule.name", "cosine"),
        ("train.schedule.warmup_epochs", 1),
        ("ray.num_workers", 1),
        ("sample.pretrain.background", 3_000),
        ("sample.pretrain.signal_to_background", 1.0),
        ("sample.classify_train.background", 1_500),
        ("sample.classify_train.signal", 1_500),
        ("sample.cwola.background", 3_000),
        ("evaluate.repeats", 3),
        ("evaluate.bootstrap", 100),
        ("evaluate.fcn.epochs", 100),
        ("evaluate.trans_bc.epochs", 5),
        ("evaluate.trans_bc.patience", 2),
        ("nplm.toys", 50),
        ("nplm.reference_events", 3_000),
        ("nplm.data_events", 1_000),
        ("nplm.centers", 300),
    ],
    "objects": [
        ("train.epochs", 15),
        ("train.batch_size", 256),
        ("train.schedule.warmup_epochs", 2),
        ("ray.num_workers", 1),
        ("evaluate.repeats", 2),
        ("nplm.toys", 50),
        ("nplm.reference_events", 3_000),
        ("nplm.data_events", 1_000),
        ("nplm.centers", 300),
    ],
}


def parse_scale(text: str) -> str | float:
    """'ci', 'laptop', 'paper' or a positive factor of the paper sizes ('0.1')."""
    if text in NAMED_SCALES:
        return text
    try:
        factor = float(text)
    except ValueError:
        raise UserError(
            f"unknown scale {text!r}: use {', '.join(NAMED_SCALES)} or a positive number that "
            "multiplies the paper's sample sizes (e.g. 0.1)"
        ) from None
    if not 0 < factor < float("inf"):
        raise UserError(f"a scale factor must be a positive number, got {text!r}")
    return factor


def scale_name(scale: str | float) -> str:
    """'ci', 'laptop', 'paper', or 'x0.1' for a factor."""
    return scale if isinstance(scale, str) else f"x{scale:g}"


def scale_overrides(scale: str | float, kind: str) -> list[tuple[str, Any]]:
    """The config overrides of ``scale`` for data of ``kind``."""
    if kind not in PAPER_SIZES:
        raise UserError(f"studies run on dijet or object-level data, not {kind!r}")
    if scale == "ci":
        return list(_CI[kind])
    if scale == "laptop":
        return list(_LAPTOP[kind])
    factor = 1.0 if scale == "paper" else float(scale)
    sizes = [(key, max(1, round(n * factor))) for key, n in PAPER_SIZES[kind].items()]
    return [*PAPER_SETTINGS[kind], *sizes]
