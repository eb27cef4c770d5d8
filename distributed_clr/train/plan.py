"""What a pretraining run is before it starts: its name, its errors, and how an epoch is cut."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from distributed_clr.config.errors import ConfigError
from distributed_clr.config.schema import PrepareConfig, RunConfig
from distributed_clr.errors import RunError, UserError
from distributed_clr.storage.manifest import Manifest

log = logging.getLogger(__name__)

__all__ = [
    "EpochPlan",
    "PlanError",
    "PretrainError",
    "check_run_name",
    "config_for_data",
    "default_run_name",
    "plan_epoch",
    "split_events",
]

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class PretrainError(RunError, RuntimeError):
    """A pretraining run that did not finish (a worker failed after its retries)."""


class PlanError(UserError, PretrainError):
    """A pretraining run that cannot start: too few events for a batch on every rank."""


def default_run_name() -> str:
    return "pretrain-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def check_run_name(name: str) -> str:
    """``name`` if it can name a run (a directory and an MLflow run), else ``ConfigError``."""
    if not RUN_NAME.match(name):
        raise ConfigError(
            f"invalid run name {name!r}: use letters, digits, '_', '.', '-' (at most 128, "
            "starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class EpochPlan:
    """How an epoch is cut: the same number of full batches on every rank."""

    train_events: int
    val_events: int
    steps_per_epoch: int
    val_batch_size: int


def plan_epoch(train_events: int, val_events: int, batch_size: int, workers: int) -> EpochPlan:
    """Steps per epoch = floor(train events / workers / batch); validation batches are at most
    the training batch and fit each rank's share at least once."""
    per_rank = train_events // workers
    steps = per_rank // batch_size
    if steps < 1:
        raise PlanError(
            f"the train split has {train_events} events: {workers} workers x batch "
            f"{batch_size} needs at least {workers * batch_size}; lower train.batch_size or "
            "ray.num_workers, or prepare more events"
        )
    val_per_rank = val_events // workers
    if val_per_rank < 2:
        raise PlanError(
            f"the val split has {val_events} events; {workers} workers need at least "
            f"{2 * workers} for a validation loss"
        )
    return EpochPlan(train_events, val_events, steps, min(batch_size, val_per_rank))


def split_events(manifest_summary: dict[str, Any], split: str, limit: int | None) -> int:
    """Events of ``split`` a prepared dataset's manifest counts, at most ``limit``."""
    n = int(manifest_summary.get("splits", {}).get(split, 0))
    return min(n, limit) if limit is not None else n


def config_for_data(config: RunConfig, manifest: Manifest) -> RunConfig:
    """The run config for the event dataset of ``manifest``: ``data.kind`` set to its kind,
    and for dijets the ``prepare`` section that made them (the model's input size depends on
    it). Checks that the augmentations and the loss apply to that kind of event."""
    from distributed_clr.augment import check_pipeline

    kind = manifest.kind
    check_pipeline(tuple(config.augment.pipeline), kind)
    if (
        config.loss.name == "supcon"
        and config.loss.supcon_label == "process_id"
        and (kind != "objects")
    ):
        raise ConfigError(
            "loss.supcon_label=process_id needs object-level events (dijet datasets carry no "
            "SM process id); SupCon on dijets takes loss.supcon_label=label, which trains on "
            "the signal labels"
        )
    if (
        config.model.mlp_norm == "batch"
        and config.model.name == "mlp"
        and (config.ray.num_workers > 1 and not config.ray.use_gpu)
    ):
        raise ConfigError(
            "model.mlp_norm=batch with several CPU workers would normalise with per-rank batch "
            "statistics (SyncBatchNorm needs GPUs): use model.mlp_norm=layer, one worker, or "
            "ray.use_gpu=true"
        )
    data = config.data.model_copy(update={"kind": kind})
    if kind != "dijet":
        return config.model_copy(update={"data": data})
    made_with = PrepareConfig.model_validate(manifest.config["prepare"])
    if made_with != config.prepare:
        log.info(
            "using the data's prepare settings (%d constituents per jet)",
            made_with.num_constituents,
        )
    return config.model_copy(update={"prepare": made_with, "data": data})
