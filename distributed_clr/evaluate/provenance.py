"""Where the embeddings came from, and the MLflow runs an evaluation logs to.

``encoder_source`` reads the embeddings' manifest and, if it still exists unchanged, the
checkpoint that made them (its run config and its pretraining run id).

MLflow (all through ``tracking.RunHandle``): results are logged to a child run (tag
``dclr.kind=evaluate``) of the encoder's run, ``encoder_run``: the run id given explicitly, else
the one stored in the checkpoint. ``open_evaluation_run`` opens the child, called
``<encoder run name>-<evaluation>-<digest>``, the digest hashing the evaluation settings, the
embeddings' identity and the splits: rerunning the same evaluation logs into the same run, a
different one (another mode, classifier, setting or dataset) gets its own. Its params are the
encoder's run config with the ``evaluate`` (or ``nplm``) section of this evaluation (flattened), its
``config.yaml`` that config; tags ``dclr.evaluation`` (the evaluation's label) and
``dclr.embeddings`` (the embeddings' path). Without tracking, or without an encoder run to
attach to, there is no run and only files are written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed_clr.config import to_flat_dict, to_yaml
from distributed_clr.config.load import RESUMABLE_CHANGES
from distributed_clr.config.schema import EvaluateConfig, NPLMConfig, RunConfig, TrackingConfig
from distributed_clr.evaluate.errors import EvaluationError
from distributed_clr.storage.files import json_digest, sha256_file
from distributed_clr.storage.location import StoragePath
from distributed_clr.storage.manifest import Manifest, require_complete
from distributed_clr.tracking import Kind, RunHandle, TrackingError, tracking_uri

log = logging.getLogger(__name__)

__all__ = ["EncoderSource", "encoder_run", "encoder_source", "open_evaluation_run", "run_name"]

EVALUATION_TAG = "dclr.evaluation"
EMBEDDINGS_TAG = "dclr.embeddings"


@dataclass
class EncoderSource:
    """The embedding dataset and, where still readable, the checkpoint that made it."""

    embeddings: StoragePath
    manifest: Manifest
    checkpoint: Path | None
    """The checkpoint directory, if it exists and is the one the embeddings were made with."""
    run_config: RunConfig | None
    """The checkpoint's run configuration."""
    mlflow_run_id: str | None
    """The pretraining run the checkpoint belongs to."""


def encoder_source(embeddings: StoragePath) -> EncoderSource:
    """Read the embeddings' manifest and, if it still exists unchanged, their checkpoint."""
    from distributed_clr.checkpoint import STATE_FILE, load_checkpoint

    manifest = require_complete(embeddings, "embedding")
    named = manifest.config.get("checkpoint")
    if not named:
        log.warning("the manifest of %s names no checkpoint", embeddings)
        return EncoderSource(embeddings, manifest, None, None, None)
    checkpoint = Path(named)
    if not (checkpoint / STATE_FILE).is_file():
        log.warning(
            "the checkpoint %s the embeddings were made with is gone; its run id and "
            "architecture are unknown",
            checkpoint,
        )
        return EncoderSource(embeddings, manifest, None, None, None)
    if sha256_file(checkpoint / STATE_FILE) != manifest.config.get("checkpoint_sha256"):
        log.warning(
            "the checkpoint %s changed since the embeddings in %s were made; not using it",
            checkpoint,
            embeddings,
        )
        return EncoderSource(embeddings, manifest, None, None, None)
    payload = load_checkpoint(checkpoint)
    run_id = payload["train_state"].mlflow_run_id
    return EncoderSource(embeddings, manifest, checkpoint, payload["config"], run_id)


def encoder_run(
    tracking: TrackingConfig | None, explicit: str | None, source: EncoderSource
) -> RunHandle | None:
    """The encoder's run: ``explicit`` (an error if it does not exist), else the checkpoint's
    (a warning if it does not exist here), else None with a message."""
    if tracking is None or not tracking.enabled:
        log.info("MLflow tracking is off; the results go to files only")
        return None
    run_id = explicit or source.mlflow_run_id
    if run_id is None:
        log.warning(
            "no MLflow run of the encoder is known (the checkpoint of %s names none, or is "
            "gone): the results go to files only; pass --run RUN_ID to log them to a child of "
            "the pretraining run",
            source.embeddings,
        )
        return None
    uri = tracking_uri(tracking)
    try:
        return RunHandle.attach(uri, run_id)
    except TrackingError as err:
        if explicit:
            raise EvaluationError(str(err)) from err
        log.warning(
            "the checkpoint's MLflow run %s is not at %s; the results go to files only",
            run_id,
            uri,
        )
        return None


def run_name(
    parent: RunHandle, label: str, config: EvaluateConfig | NPLMConfig, identity: Mapping[str, Any]
) -> str:
    """``<parent name>-<label>-<digest>``, the digest of the settings and ``identity``."""
    digest = json_digest({"evaluate": config.model_dump(mode="json"), **identity}, length=8)
    return f"{parent.name}-{label}-{digest}"


def _section(config: EvaluateConfig | NPLMConfig) -> str:
    """The name of the run-config section whose type ``config`` has."""
    return next(
        name for name, field in RunConfig.model_fields.items() if field.annotation is type(config)
    )


def open_evaluation_run(
    parent: RunHandle,
    source: EncoderSource,
    config: EvaluateConfig | NPLMConfig,
    tracking: TrackingConfig,
    label: str,
    identity: Mapping[str, Any],
) -> RunHandle:
    """Open (or reopen) the child run of ``parent`` for this evaluation (module docstring);
    ``config`` is the evaluation's section (``evaluate``, or ``nplm`` for the NPLM test)."""
    name = run_name(parent, label, config, identity)
    run_tracking = tracking.model_copy(
        update={"uri": parent.uri, "experiment": parent.experiment_name}
    )
    base = source.run_config or RunConfig()
    run_config = base.model_copy(update={_section(config): config, "tracking": run_tracking})
    try:
        run = RunHandle.open(
            run_tracking,
            name,
            Kind.EVALUATE,
            params=to_flat_dict(run_config),
            config_text=to_yaml(run_config),
            parent_run_id=parent.run_id,
            tags={EVALUATION_TAG: label, EMBEDDINGS_TAG: str(source.embeddings)},
            may_differ=RESUMABLE_CHANGES,
            uri=parent.uri,
        )
    except TrackingError as err:
        raise EvaluationError(
            f"cannot reuse the MLflow evaluation run '{name}': {err}. The encoder's checkpoint "
            "has probably changed or gone since the first evaluation; delete that run to redo it"
        ) from err
    log.info(
        "%s MLflow run '%s' (%s), a child of %s",
        "logging to the existing" if run.resumed else "created",
        name,
        run.run_id,
        parent.run_id,
    )
    return run
