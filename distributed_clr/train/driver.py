"""The driver of a pretraining run: ``pretrain(config, data, run_name)``.

It is what ``dclr pretrain`` and every Tune trial call. It

1. reads the prepared dataset's manifest (the model's constituent count comes from the data)
   and sizes the epoch so that every rank runs the same number of steps;
2. opens the MLflow run of this run name (new, or the one a previous attempt left; a complete
   one is returned at once) and hands it to rank 0, with the sample compositions as params and
   the fraction of events each augmentation changes (``augment_effects``) as metrics;
3. runs a Ray Train V2 ``TorchTrainer`` whose storage is ``<ray.storage_path>/<run name>``:
   Ray restores the latest checkpoint by itself when that directory already holds the run, so
   rerunning the same command continues an interrupted run; ``FailureConfig`` restarts the
   worker group after a failure; Ray keeps the best ``train.checkpoint.keep`` by
   ``train.selection_metric`` plus the latest;
4. logs the final artifacts from the best checkpoint (``results.log_final_artifacts``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from distributed_clr.augment import Effect
from distributed_clr.checkpoint import save_initial
from distributed_clr.config.load import RESUMABLE_CHANGES, to_flat_dict, to_yaml
from distributed_clr.config.schema import SELECTION_MODES, RunConfig
from distributed_clr.runtime import init_ray, join, storage_root, units_that_fit
from distributed_clr.storage.formats import EVENT_KINDS
from distributed_clr.storage.location import StoragePath, as_storage_path
from distributed_clr.storage.manifest import require_complete
from distributed_clr.storage.verify import verify_shards
from distributed_clr.tracking import Kind, RunHandle
from distributed_clr.train.feed import datasets, label_columns
from distributed_clr.train.plan import (
    EpochPlan,
    PretrainError,
    check_run_name,
    config_for_data,
    default_run_name,
    plan_epoch,
    split_events,
)
from distributed_clr.train.results import PretrainResult, log_final_artifacts, result_from_storage
from distributed_clr.train.samples import SamplePlan, plan_samples
from distributed_clr.train.worker import SPEC_KEY, WorkerSpec, train_loop_per_worker

log = logging.getLogger(__name__)

__all__ = ["augment_effects", "effect_metrics", "pretrain", "untrained"]


def pretrain(
    config: RunConfig,
    data: str | StoragePath,
    run_name: str | None = None,
    *,
    log_embeddings: bool = True,
    callbacks: list[Any] | None = None,
    parent_run_id: str | None = None,
    kind: str = Kind.PRETRAIN,
) -> PretrainResult:
    """Train the encoder on the prepared dijets in ``data``; see the module docstring.

    Args:
        config: the run configuration (its ``prepare`` section is replaced by the data's).
        data: a prepared dijet dataset directory.
        run_name: names the Ray storage directory and the MLflow run; rerunning with the same
            name continues the run. Default: a new time-stamped name.
        log_embeddings: embed the val and test splits at the end and log them to MLflow.
        callbacks: Ray Train ``UserCallback``s (a Tune trial passes ``TuneReportCallback``).
        parent_run_id: MLflow parent run (a sweep's), making this run its child.
        kind: the ``dclr.kind`` tag of the MLflow run ('pretrain', or 'trial' in a sweep).
    """
    data = as_storage_path(data).resolve()
    manifest = require_complete(data, EVENT_KINDS)
    verify_shards(data, manifest, config.data.verify)  # before Ray, MLflow or a model
    run_name = check_run_name(run_name or default_run_name())
    config = config_for_data(config, manifest)
    samples = plan_samples(data, config)
    limit = config.data.max_events
    train_events = samples.compositions["train"].events
    plan = plan_epoch(
        train_events if limit is None else min(train_events, limit),
        split_events(manifest.summary, config.data.val_split, limit),
        config.train.batch_size,
        config.ray.num_workers,
    )
    storage = storage_root(config.ray.storage_path)
    log.info(
        "run '%s': %d workers x batch %d = global batch %d; %d steps per epoch over %d training "
        "events; storage %s",
        run_name,
        config.ray.num_workers,
        config.train.batch_size,
        config.ray.num_workers * config.train.batch_size,
        plan.steps_per_epoch,
        plan.train_events,
        join(storage, run_name),
    )

    run = None
    if config.tracking.enabled:
        run = RunHandle.open(
            config.tracking,
            run_name,
            kind,
            params={**to_flat_dict(config), **samples.params()},
            config_text=to_yaml(config),
            parent_run_id=parent_run_id,
            may_differ=RESUMABLE_CHANGES,
        )
        if run.resumed and run.complete:
            log.info("run '%s' is already complete (MLflow run %s)", run_name, run.run_id)
            run.finish("FINISHED")
            return _with_samples(result_from_storage(run_name, storage, run), samples)
        log.info(
            "%s MLflow run %s at %s",
            "continuing" if run.resumed else "started",
            run.run_id,
            run.uri,
        )
    effects = augment_effects(config, data)
    if run is not None and effects:
        run.log_metrics(effect_metrics(effects))

    workers = config.ray.num_workers * config.ray.cpus_per_worker
    init_ray(config.ray, min_cpus=math.ceil(workers) + 1)
    if run is None:
        return _with_samples(
            _fit(config, data, run_name, storage, plan, samples, None, callbacks), samples
        )
    with run.failing_on_error():
        result = _fit(config, data, run_name, storage, plan, samples, run, callbacks)
        log_final_artifacts(run, result, config, data, log_embeddings)
        run.mark_complete()
    run.finish("FINISHED")
    return _with_samples(result, samples)


def untrained(config: RunConfig, data: str | StoragePath, directory: str | Path) -> Path:
    """Write the encoder ``pretrain(config, data)`` would start from, untrained, as a checkpoint
    in ``directory``: the baseline that shows what training adds (``checkpoint.save_initial``).
    The model is sized from the data's prepare settings, as in ``pretrain``."""
    data = as_storage_path(data).resolve()
    manifest = require_complete(data, EVENT_KINDS)
    config = config_for_data(config, manifest)
    path = save_initial(Path(directory), config)
    log.info("untrained encoder (train.seed %d) written to %s", config.train.seed, path)
    return path


EFFECT_EVENTS = 1024
"""Train events on which ``augment_effects`` measures the augmentations."""


def augment_effects(config: RunConfig, data: StoragePath) -> list[Effect]:
    """The effect of each augmentation of ``config.augment.pipeline`` on the first
    ``EFFECT_EVENTS`` train events (seeded by ``train.seed``), logged; a warning for one that
    changes fewer than 1% of the encoder's inputs, naming invariance by construction."""
    import pyarrow as pa
    import torch

    from distributed_clr.augment import Augmenter, effects
    from distributed_clr.checkpoint import run_model
    from distributed_clr.storage.reader import CONSTITUENT_COLUMNS, constituents, iter_tables

    augmenter = Augmenter(config.augment)
    if not augmenter.names:
        return []
    tables = iter_tables(
        data, config.data.kind, splits=[config.data.train_split], columns=CONSTITUENT_COLUMNS,
        batch_rows=EFFECT_EVENTS, verify="rows",
    )  # fmt: skip
    chunks, rows = [], 0
    for table in tables:
        chunks.append(table)
        rows += table.num_rows
        if rows >= EFFECT_EVENTS:
            break
    if not rows:
        return []
    model = run_model(config)
    x, mask = constituents(
        pa.concat_tables(chunks).slice(0, EFFECT_EVENTS), groups=model.layout.groups
    )
    generator = torch.Generator().manual_seed(config.train.seed)
    measured = effects(augmenter, model.features, x, mask, generator)
    for effect in measured:
        log.info("augmentation %s (%d train events)", effect.describe(), len(x))
        if effect.features_changed < 0.01:
            why = (
                "the encoder's inputs are invariant to it by construction"
                if effect.invariant
                else "it is close to a no-op with these settings"
            )
            log.warning(
                "augmentation '%s' changes %.1f%% of the encoder's inputs: %s",
                effect.name,
                100 * effect.features_changed,
                why,
            )
    return measured


def effect_metrics(measured: list[Effect]) -> dict[str, float]:
    """MLflow metrics ``augment_changed/<name>`` (events) and ``augment_input_changed/<name>``
    (encoder inputs)."""
    out: dict[str, float] = {}
    for effect in measured:
        out[f"augment_changed/{effect.name}"] = effect.events_changed
        out[f"augment_input_changed/{effect.name}"] = effect.features_changed
    return out


def _with_samples(result: PretrainResult, samples: SamplePlan) -> PretrainResult:
    result.composition = {k: v.to_dict() for k, v in samples.compositions.items()}
    return result


def _fit(
    config: RunConfig,
    data: StoragePath,
    run_name: str,
    storage: str,
    plan: EpochPlan,
    samples: SamplePlan,
    run: RunHandle | None,
    callbacks: list[Any] | None = None,
) -> PretrainResult:
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from distributed_clr.train.faults import marker_path

    ray_config = config.ray
    units_that_fit(
        ray.cluster_resources(),  # type: ignore[no-untyped-call]
        ray_config.num_workers * ray_config.cpus_per_worker,
        float(ray_config.num_workers) if ray_config.use_gpu else 0.0,
        what=f"{ray_config.num_workers} workers x {ray_config.cpus_per_worker:g} CPUs",
    )
    spec = WorkerSpec(
        config=config,
        steps_per_epoch=plan.steps_per_epoch,
        val_batch_size=plan.val_batch_size,
        run=run,
        samples=samples,
        fault_marker=marker_path(storage, run_name, config.train.faults),
    )
    resources: dict[str, float] = {"CPU": ray_config.cpus_per_worker}
    if ray_config.use_gpu:
        resources["GPU"] = 1.0
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={SPEC_KEY: spec},
        torch_config=TorchConfig(backend="nccl" if ray_config.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=ray_config.num_workers,
            use_gpu=ray_config.use_gpu,
            resources_per_worker=resources,
            placement_strategy=ray_config.placement,
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=config.train.faults.max_failures),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # type: ignore[call-arg]
            callbacks=callbacks,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=config.train.checkpoint.keep,
                checkpoint_score_attribute=config.train.selection_metric,
                checkpoint_score_order=SELECTION_MODES[config.train.selection_metric],
            ),
        ),
        datasets=datasets(
            config.data, data, config.train.seed, samples, labels=label_columns(config.loss)
        ),
    )
    try:
        result = trainer.fit()
    except Exception as err:
        raise PretrainError(f"pretraining run '{run_name}' failed: {err}") from err
    if result.checkpoint is None:
        raise PretrainError(f"pretraining run '{run_name}' finished without a checkpoint")
    return result_from_storage(run_name, storage, run, result)
