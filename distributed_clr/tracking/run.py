"""The one MLflow run handle: open or reopen a run by name, log to it, finish it.

Layout (docs/architecture.md, "Tracking layout"): one run per pretrain (tag ``dclr.kind`` =
``pretrain``), found again by its run name (tag ``dclr.run_name``) so that a rerun with the same
name logs into the same run; a sweep is a parent run (``sweep``) with a child run per trial
(``trial``); evaluations log into a child run (``evaluate``) of the encoder's run. A run that
finished everything it had to do carries ``dclr.complete = true``. Params are the flattened
config.

The default store is ``sqlite:///mlflow.db`` in the working directory, resolved to an absolute
path (Ray workers run elsewhere); artifacts of a SQLite store go to ``mlartifacts/`` next to the
database file. ``MLFLOW_TRACKING_URI`` or ``tracking.uri`` point at a server instead (use one on
a multi-node cluster: a SQLite file on the head node is not visible to the workers). A run on a
server has a page in its UI (``RunHandle.ui_url``), which the commands print at the end.

Only drivers and rank 0 of a training run ever talk to MLflow.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed_clr.config.schema import TrackingConfig
from distributed_clr.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "COMPLETE_TAG",
    "KIND_TAG",
    "PARENT_TAG",
    "RUN_NAME_TAG",
    "Kind",
    "RunHandle",
    "TrackingError",
    "client",
    "tracking_uri",
]

RUN_NAME_TAG = "dclr.run_name"
KIND_TAG = "dclr.kind"
COMPLETE_TAG = "dclr.complete"
PARENT_TAG = "mlflow.parentRunId"
DEFAULT_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000


class Kind:
    """The values of the ``dclr.kind`` tag."""

    PRETRAIN = "pretrain"
    TRIAL = "trial"
    SWEEP = "sweep"
    EVALUATE = "evaluate"
    STUDY = "study"


class TrackingError(UserError, ValueError):
    """A run that cannot be opened as asked: another config under its name, a missing run id,
    a deleted experiment."""


def tracking_uri(config: TrackingConfig) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``;
    relative SQLite paths become absolute."""
    uri = config.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri``."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _artifact_root(uri: str) -> str | None:
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        return Path(uri[len(prefix) :]).resolve().parent.joinpath(ARTIFACT_DIR).as_uri()
    return None


def _experiment_id(mlflow_client: Any, name: str, uri: str) -> str:
    """The id of experiment ``name``, created (with a local artifact root for SQLite) if new."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment '{name}' is deleted; restore it or choose another "
                "tracking.experiment"
            )
        return str(experiment.experiment_id)
    root = _artifact_root(uri)
    root_uri = None if root is None else f"{root}/{name}"
    try:
        return str(mlflow_client.create_experiment(name, artifact_location=root_uri))
    except Exception:  # another process created it meanwhile
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def _find(mlflow_client: Any, experiment_id: str, name: str, kind: str) -> Any | None:
    """The newest run named ``name`` of ``kind`` in the experiment, or None."""
    escaped = name.replace("'", "\\'")
    runs = mlflow_client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_NAME_TAG}` = '{escaped}' and tags.`{KIND_TAG}` = '{kind}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def param_value(value: Any) -> str:
    """A param as MLflow stores it: lists and mappings as JSON, the rest as text."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in patterns)


@dataclass
class RunHandle:
    """An MLflow run of this package: its store, id, name, and whether it was reopened."""

    uri: str
    run_id: str
    name: str
    resumed: bool = False

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        tracking: TrackingConfig,
        name: str,
        kind: str,
        *,
        params: Mapping[str, Any],
        config_text: str | None = None,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        may_differ: Sequence[str] = (),
        uri: str | None = None,
    ) -> RunHandle:
        """The run named ``name`` of ``kind`` in ``tracking.experiment``, or a new one.

        A new run gets ``params`` (logged in batches) and, when given, ``config_text`` as the
        artifact ``config.yaml``. An existing one is reopened (status RUNNING) and must have
        been made with the same params, apart from keys listed in ``may_differ`` (exact keys,
        or prefixes ending in '.'); anything else raises ``TrackingError``.
        """
        uri = uri or tracking_uri(tracking)
        mlflow_client = client(uri)
        experiment_id = _experiment_id(mlflow_client, tracking.experiment, uri)
        flat = {k: param_value(v) for k, v in params.items()}
        existing = _find(mlflow_client, experiment_id, name, kind)
        if existing is not None:
            logged = existing.data.params
            changed = sorted(
                key
                for key in set(logged) | set(flat)
                if logged.get(key) != flat.get(key) and not _matches(key, may_differ)
            )
            if changed:
                shown = ", ".join(f"{k}: {logged.get(k)!r} -> {flat.get(k)!r}" for k in changed[:8])
                raise TrackingError(
                    f"run '{name}' exists with a different configuration ({shown}"
                    f"{', ...' if len(changed) > 8 else ''}); choose a new --run-name to start "
                    "a new run"
                )
            run_id = str(existing.info.run_id)
            mlflow_client.update_run(run_id, status="RUNNING")
            return cls(uri, run_id, name, resumed=True)
        all_tags = {RUN_NAME_TAG: name, KIND_TAG: kind, "mlflow.runName": name}
        if parent_run_id is not None:
            all_tags[PARENT_TAG] = parent_run_id
        all_tags.update(tags or {})
        run = mlflow_client.create_run(experiment_id, tags=all_tags, run_name=name)
        handle = cls(uri, str(run.info.run_id), name)
        handle.log_params(flat)
        if config_text is not None:
            handle.log_text(config_text, "config.yaml")
        return handle

    @classmethod
    def find(cls, tracking: TrackingConfig, name: str, kind: str) -> RunHandle | None:
        """The run named ``name`` of ``kind``, without reopening it; None if there is none."""
        uri = tracking_uri(tracking)
        mlflow_client = client(uri)
        experiment_id = _experiment_id(mlflow_client, tracking.experiment, uri)
        run = _find(mlflow_client, experiment_id, name, kind)
        return None if run is None else cls(uri, str(run.info.run_id), name, resumed=True)

    @classmethod
    def attach(cls, uri: str, run_id: str) -> RunHandle:
        """The existing run ``run_id`` at ``uri``; ``TrackingError`` if there is none."""
        try:
            run = client(uri).get_run(run_id)
        except Exception as err:
            raise TrackingError(f"no MLflow run {run_id} at {uri}: {err}") from err
        name = run.data.tags.get(RUN_NAME_TAG) or run.info.run_name or run_id
        return cls(uri, run_id, str(name), resumed=True)

    # -- reading -----------------------------------------------------------------------------

    @functools.cached_property
    def client(self) -> Any:
        """The ``MlflowClient`` of the run's store (made once per handle)."""
        return client(self.uri)

    def __getstate__(self) -> dict[str, Any]:
        # A handle travels to Ray workers; its client is rebuilt there.
        return {k: v for k, v in self.__dict__.items() if k != "client"}

    def run(self) -> Any:
        """MLflow's ``Run`` entity, fetched now."""
        return self.client.get_run(self.run_id)

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.run().data.tags)

    @property
    def complete(self) -> bool:
        """True once ``mark_complete`` was called on this run (in any attempt)."""
        return self.tags.get(COMPLETE_TAG) == "true"

    @property
    def experiment_name(self) -> str:
        return str(self.client.get_experiment(self.run().info.experiment_id).name)

    def ui_url(self) -> str | None:
        """The run's page in the MLflow UI of its tracking server,
        ``<server>/#/experiments/<experiment id>/runs/<run id>`` (without any user name or
        password of the URI); None for a store without a UI server (SQLite, files)."""
        parts = urllib.parse.urlsplit(self.uri)
        if parts.scheme not in ("http", "https"):
            return None
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        server = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        experiment_id = self.run().info.experiment_id
        return f"{server}/#/experiments/{experiment_id}/runs/{self.run_id}"

    def metric_history(self, key: str) -> list[Any]:
        return list(self.client.get_metric_history(self.run_id, key))

    def children(self, kind: str) -> dict[str, Any]:
        """This run's child runs of ``kind``, by run name."""
        experiment_id = self.run().info.experiment_id
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.run_id}' and tags.`{KIND_TAG}` = '{kind}'",
            max_results=10_000,
        )
        return {run.data.tags.get(RUN_NAME_TAG, run.info.run_id): run for run in runs}

    def download(self, artifact_path: str, destination: Path | None = None) -> Path:
        """An artifact of this run, downloaded (a local store's artifacts are used in place)."""
        target = destination or Path(tempfile.mkdtemp(prefix="dclr-artifact-"))
        try:
            local = self.client.download_artifacts(self.run_id, artifact_path, str(target))
        except Exception as err:
            raise TrackingError(
                f"MLflow run {self.run_id} has no '{artifact_path}' artifact: {err}"
            ) from err
        return Path(local)

    # -- writing -----------------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params in batches (MLflow takes at most 100 per call)."""
        from mlflow.entities import Param

        items = [Param(key, param_value(value)) for key, value in sorted(params.items())]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Metrics at ``step`` in batches of at most 1000; NaN and inf are left out."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(key, float(value), now, step)
            for key, value in sorted(metrics.items())
            if math.isfinite(float(value))
        ]
        for start in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + MAX_METRICS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: Path | str, artifact_path: str | None = None) -> None:
        """Every file under ``directory``, under ``artifact_path``."""
        self.client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """``text`` as the artifact ``artifact_file`` (e.g. 'config.yaml')."""
        with tempfile.TemporaryDirectory(prefix="dclr-text-") as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_text(text, encoding="utf-8")
            parent = str(Path(artifact_file).parent)
            self.log_artifact(path, None if parent == "." else parent)

    def log_model(self, model: Any, pip_requirements: Sequence[str]) -> None:
        """``model`` (an ``nn.Module``) as the ``mlflow.pytorch`` model named ``model``
        (loadable with ``mlflow.pytorch.load_model``)."""
        import mlflow
        import mlflow.pytorch

        mlflow.set_tracking_uri(self.uri)
        with (
            mlflow.start_run(run_id=self.run_id, log_system_metrics=False),
            warnings.catch_warnings(),
        ):
            # MLflow inspects forward()'s type hints for a pyfunc signature and warns that
            # tensors are 'Any'; the model is used through mlflow.pytorch, never as a pyfunc.
            warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
            # The pickle format is chosen on purpose (the model class is this package's); MLflow
            # warns about it at WARNING on every call.
            pytorch_logger = logging.getLogger("mlflow.pytorch")
            level = pytorch_logger.level
            pytorch_logger.setLevel(logging.ERROR)
            try:
                mlflow.pytorch.log_model(
                    model,
                    name="model",
                    serialization_format="pickle",
                    pip_requirements=list(pip_requirements),
                )
            finally:
                pytorch_logger.setLevel(level)

    # -- finishing ---------------------------------------------------------------------------

    def mark_complete(self) -> None:
        """Tag the run as having finished everything it had to do."""
        self.set_tags({COMPLETE_TAG: "true"})

    def finish(self, status: str = "FINISHED") -> None:
        """End the run with ``status`` (FINISHED, FAILED or KILLED)."""
        self.client.set_terminated(self.run_id, status)

    @contextlib.contextmanager
    def failing_on_error(self) -> Iterator[RunHandle]:
        """Within the block, an exception ends the run FAILED (KILLED for an interruption)
        and propagates."""
        try:
            yield self
        except BaseException as err:
            self.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
