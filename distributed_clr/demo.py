"""``dclr demo``: the whole method end to end on generated data, on a laptop or a cluster.

generate (QCD + W') -> prepare (dijets) -> pretrain (Ray Train, ``ray.num_workers`` workers)
-> embed (every split) -> classify (LCT and FCN on latent, event-space and high-level
features, plus Trans+BC) -> idealised CWoLa scan over a few signal fractions; everything is
logged to MLflow under the pretraining run.

Stages run in order and each writes its results under ``out`` with its stage record
(``manifest.json``); a rerun reuses every stage that finished with the same configuration and
redoes the rest. ``scale`` multiplies every stage's event count. The CLI prints the result
(``cli/demo.py``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed_clr.config import RunConfig, apply_overrides, config_digest
from distributed_clr.config.schema import ClassifierName
from distributed_clr.data.generate import generate
from distributed_clr.data.prepare import prepare
from distributed_clr.embed import embed
from distributed_clr.evaluate import classify, cwola
from distributed_clr.runtime import init_ray
from distributed_clr.train import pretrain

log = logging.getLogger(__name__)

SIGNAL_SHARE = 0.25
"""Signal events generated per QCD event (the samples are mixed later at any fraction)."""


@dataclass
class DemoResult:
    """What the demo made and how long each stage took."""

    directory: Path
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    classify: dict[str, Any] = field(default_factory=dict)
    """``evaluate.classify``'s summary."""
    cwola: dict[str, Any] = field(default_factory=dict)
    """``evaluate.cwola``'s summary (idealised scan)."""
    untrained_classify: dict[str, Any] = field(default_factory=dict)
    """Object-level demo: ``classify`` of the same encoder untrained (the SM process probe's
    baseline)."""
    nplm: dict[str, Any] = field(default_factory=dict)
    """Object-level demo: ``evaluate.nplm``'s summary."""
    mlflow_run_id: str | None = None
    tracking_uri: str | None = None


def run_name(config: RunConfig) -> str:
    """The demo's pretraining run name: 'demo-' and a digest of the config, so a rerun with the
    same settings continues (or reuses) the same run and other settings get their own."""
    return "demo-" + config_digest(config)


def scaled(config: RunConfig, scale: float) -> RunConfig:
    """The config with every stage's size multiplied by ``scale``."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    events = max(config.generate.shards, round(config.generate.events * scale))
    return apply_overrides(config, [("generate.events", events)])


def run_demo(config: RunConfig, out: Path, scale: float = 1.0) -> DemoResult:
    """Run every stage (see the module docstring) under ``out``."""
    config = scaled(config, scale)
    out = Path(out)
    result = DemoResult(out)
    # One Ray session for every stage, big enough for training.
    workers = config.ray.num_workers * config.ray.cpus_per_worker
    init_ray(config.ray, min_cpus=math.ceil(workers) + 1)
    raw_dirs = []
    for process, share in (("qcd_dijet", 1.0), ("wprime_xy", SIGNAL_SHARE)):
        events = max(config.generate.shards, round(config.generate.events * share))
        gen = apply_overrides(config, [("generate.process", process), ("generate.events", events)])
        start = time.perf_counter()
        manifest = generate(gen.generate, out / process, config.ray)
        result.timings[f"generate {process}"] = time.perf_counter() - start
        result.facts[f"{process} events"] = manifest.rows
        result.facts[f"{process} trigger efficiency"] = manifest.summary["trigger_efficiency"]
        raw_dirs.append(out / process)

    start = time.perf_counter()
    dijets = prepare(
        raw_dirs, out / "dijets", config.prepare, config.ray, verify=config.data.verify
    )
    result.timings["prepare"] = time.perf_counter() - start
    result.facts["dijet events"] = dijets.rows
    result.facts["splits"] = dijets.summary["splits"]
    _learn_and_evaluate(config, out, result)
    return result


def _learn_and_evaluate(config: RunConfig, out: Path, result: DemoResult) -> None:
    config = apply_overrides(config, [("ray.storage_path", str((out / "ray_results").resolve()))])
    start = time.perf_counter()
    trained = pretrain(config, out / "dijets", run_name(config))
    result.timings["pretrain"] = time.perf_counter() - start
    result.mlflow_run_id, result.tracking_uri = trained.mlflow_run_id, trained.tracking_uri
    best = next((h for h in trained.history if int(h["epoch"]) == trained.best_epoch), {})
    result.facts["pretrain epochs"] = trained.epochs
    result.facts["pretrain kept epoch"] = trained.best_epoch
    result.facts[f"pretrain {trained.selection_metric} (kept epoch)"] = trained.best_value
    result.facts["pretrain val loss (kept epoch)"] = trained.best_val_loss
    result.facts["pretrain probe AUC (kept epoch)"] = best.get("val_probe_auc", float("nan"))

    start = time.perf_counter()
    embeddings = out / "embeddings"
    verify = config.data.verify
    embed(trained.best_checkpoint, out / "dijets", embeddings, config.ray, verify=verify)
    result.timings["embed"] = time.perf_counter() - start

    # Each evaluation records itself in its directory: a rerun returns the recorded summary.
    start = time.perf_counter()
    result.classify = classify(
        config.evaluate,
        embeddings,
        out / "dijets",
        out / "classify",
        model=config.model,
        mlflow_run_id=trained.mlflow_run_id,
        tracking=config.tracking,
        verify=verify,
        sample=config.sample,
    )
    result.timings["classify"] = time.perf_counter() - start

    start = time.perf_counter()
    result.cwola = cwola(
        config.evaluate,
        embeddings,
        out / "dijets",
        out / "cwola",
        mode="idealised",
        classifier=DEMO_CWOLA_CLASSIFIER,
        mlflow_run_id=trained.mlflow_run_id,
        tracking=config.tracking,
        verify=verify,
        sample=config.sample,
    )
    result.timings["cwola scan"] = time.perf_counter() - start


DEMO_CWOLA_CLASSIFIER: ClassifierName = "fcn"

OBJECT_SIGNALS = ("ato4l", "lq_btau")
"""The signals of the object-level demo."""


def run_object_demo(config: RunConfig, out: Path, scale: float = 1.0) -> DemoResult:
    """The object-level path end to end under ``out``: generate the SM cocktail and two
    signals (``OBJECT_SIGNALS``, ``SIGNAL_SHARE`` of the cocktail's events each), combine them,
    pretrain on the cocktail alone (SupCon on the process ids, or whatever ``config.loss``
    says), embed with the trained encoder and with its initial weights, run the classifier
    tests with the SM process probe on both, and NPLM on the embeddings and on the 57 raw
    inputs. Finished stages are reused on a rerun."""
    from distributed_clr.data.combine import combine
    from distributed_clr.data.generate_objects import generate_objects
    from distributed_clr.evaluate import nplm
    from distributed_clr.train import untrained

    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    events = max(config.objects.shards, round(config.objects.events * scale))
    config = apply_overrides(
        config,
        [
            ("objects.events", events),
            ("ray.storage_path", str((out / "ray_results").resolve())),
        ],
    )
    out = Path(out)
    result = DemoResult(out)
    workers = config.ray.num_workers * config.ray.cpus_per_worker
    init_ray(config.ray, min_cpus=math.ceil(workers) + 1)
    parts = []
    for process, share in (("sm_cocktail", 1.0), *((s, SIGNAL_SHARE) for s in OBJECT_SIGNALS)):
        n = max(config.objects.shards, round(events * share))
        settings = apply_overrides(config, [("objects.process", process), ("objects.events", n)])
        start = time.perf_counter()
        manifest = generate_objects(settings.objects, out / process, config.ray, config.prepare)
        result.timings[f"generate {process}"] = time.perf_counter() - start
        result.facts[f"{process} events"] = manifest.rows
        parts.append(out / process)
    start = time.perf_counter()
    combined = combine(parts, out / "objects")
    result.timings["combine"] = time.perf_counter() - start
    result.facts["splits"] = combined.summary["splits"]

    start = time.perf_counter()
    trained = pretrain(config, out / "sm_cocktail", run_name(config))
    result.timings["pretrain"] = time.perf_counter() - start
    result.mlflow_run_id, result.tracking_uri = trained.mlflow_run_id, trained.tracking_uri
    result.facts["pretrain epochs"] = trained.epochs
    result.facts["pretrain kept epoch"] = trained.best_epoch
    result.facts[f"pretrain {trained.selection_metric} (kept epoch)"] = trained.best_value
    initial = untrained(config, out / "sm_cocktail", out / "untrained")

    verify = config.data.verify
    start = time.perf_counter()
    for name, checkpoint in (("embeddings", trained.best_checkpoint), ("untrained", initial)):
        embed(checkpoint, out / "objects", out / f"{name}-objects", config.ray, verify=verify)
    result.timings["embed"] = time.perf_counter() - start

    start = time.perf_counter()
    result.classify = classify(
        config.evaluate, out / "embeddings-objects", out / "objects", out / "classify",
        mlflow_run_id=trained.mlflow_run_id, tracking=config.tracking, verify=verify,
        sample=config.sample,
    )  # fmt: skip
    result.untrained_classify = classify(
        config.evaluate, out / "untrained-objects", out / "objects", out / "classify-untrained",
        verify=verify, sample=config.sample,
    )  # fmt: skip
    result.timings["classify"] = time.perf_counter() - start

    start = time.perf_counter()
    result.nplm = nplm(
        config.nplm, out / "embeddings-objects", out / "objects", out / "nplm",
        ray_config=config.ray, mlflow_run_id=trained.mlflow_run_id, tracking=config.tracking,
        verify=verify,
    )  # fmt: skip
    result.timings["nplm"] = time.perf_counter() - start
    return result
