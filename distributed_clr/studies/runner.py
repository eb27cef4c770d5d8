"""``run_study``: one study from its data to its report, resumable piece by piece.

1. The data: one dataset directory, or several of one kind combined (``data.combine``) into
   ``<out>/data`` (a background and its signals).
2. The config: the study's default preset for the data's kind (``--preset`` replaces it), the
   ``--config`` files, the scale (``scales``), the study's own settings, then ``--set``. A
   ``--set`` of a key the study varies is refused.
3. The study record ``<out>/study.json``: the study, scale, digest (of the config apart from
   ``ray`` and ``tracking``, and of the data's shards) and data, and every finished piece with
   its outputs and run time. A rerun with another configuration or other data under the same
   name is refused; a rerun with the same ones skips every piece the record lists.
4. Pieces, in order: the pretraining grid (one Ray Tune sweep, trials concurrent as the
   cluster allows, restored when interrupted), the untrained encoder of every architecture,
   the embeddings of every encoder an evaluation uses, the evaluations. Each stage keeps its
   own record too (checkpoints, embedding manifests, ``reuse_or_run``), so a piece killed
   half-way resumes where it stopped.
5. MLflow: a parent run (``dclr.kind=study``) with the sweep's run and every evaluation's run
   as children (tag ``dclr.piece``), and the report as its artifacts.
6. The report (``report.py``): ``report.md``, ``report.html``, ``results.csv``, ``plots/``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distributed_clr.config import RunConfig, apply_overrides, config_digest, resolve_config
from distributed_clr.config.load import to_flat_dict, to_yaml
from distributed_clr.crashpoints import crash_point
from distributed_clr.errors import RunError, UserError
from distributed_clr.storage.files import atomic_write_text, json_digest
from distributed_clr.studies.catalog import get_study
from distributed_clr.studies.plan import (
    UNTRAINED,
    Evaluation,
    ReportTable,
    StudyContext,
    StudyDef,
    StudyPlan,
    StudyResults,
)
from distributed_clr.studies.readers import slug
from distributed_clr.studies.scales import DEFAULT_PRESETS, scale_name, scale_overrides
from distributed_clr.tracking import Kind, RunHandle, tracking_uri

log = logging.getLogger(__name__)

__all__ = ["RECORD", "StudyOutcome", "run_study", "study_config"]

RECORD = "study.json"
PIECE_TAG = "dclr.piece"
STUDY_TAG = "dclr.study"


@dataclass
class StudyOutcome:
    """A finished study."""

    name: str
    directory: Path
    report: Path
    html: Path
    csv: Path
    plots: list[Path] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)
    """The report's tables (``report.layout`` renders one)."""
    pieces: int = 0
    reused: int = 0
    """Pieces an earlier attempt had finished."""
    seconds: float = 0.0
    parent_run_id: str | None = None
    tracking_uri: str | None = None


# ------------------------------------------------------------------------------------------------
# data and config


def _data(paths: Sequence[str | Path], out: Path) -> Path:
    """One dataset: the directory given, or several of one kind combined under ``out``."""
    from distributed_clr.data.combine import combine

    resolved = [Path(p).resolve() for p in paths]
    if not resolved:
        raise UserError("a study needs --data: a prepared dijet or object-level dataset")
    if len(resolved) == 1:
        return resolved[0]
    combine(resolved, out / "data")
    return out / "data"


def _counts(data: Path, kind: str) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Events per split and class, and the signal processes, of ``data``."""
    import pyarrow.compute as pc

    from distributed_clr.storage.reader import iter_tables

    counts: dict[str, dict[str, int]] = {}
    processes: set[str] = set()
    for table in iter_tables(data, kind, columns=["split", "label", "process"], verify="rows"):
        signal = pc.equal(table["label"], 1)
        for split in pc.unique(table["split"]).to_pylist():
            mask = pc.equal(table["split"], split)
            n_signal = pc.sum(pc.and_(mask, signal)).as_py() or 0
            n_all = pc.sum(mask).as_py() or 0
            entry = counts.setdefault(str(split), {"background": 0, "signal": 0})
            entry["signal"] += int(n_signal)
            entry["background"] += int(n_all - n_signal)
        processes.update(str(p) for p in pc.unique(table.filter(signal)["process"]).to_pylist())
    return counts, sorted(processes)


def study_config(
    study: StudyDef,
    kind: str,
    scale: str | float,
    preset: str | None,
    config_files: Sequence[str | Path],
    overrides: Sequence[tuple[str, Any]],
    fixed: Sequence[tuple[str, Any]] = (),
) -> RunConfig:
    """preset (the kind's default) -> files -> scale -> the study's ``fixed`` -> overrides."""
    return resolve_config(
        preset or DEFAULT_PRESETS[kind],
        list(config_files),
        [*scale_overrides(scale, kind), *fixed, *overrides],
    )


# ------------------------------------------------------------------------------------------------
# the record


class _Record:
    """``study.json``: the study's identity and its finished pieces, written atomically."""

    def __init__(self, directory: Path, identity: dict[str, Any]) -> None:
        self.path = directory / RECORD
        self.identity = identity
        self.pieces: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                stored = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                log.warning("%s is unreadable; starting the study's record again", self.path)
                stored = {}
            known = stored.get("identity")
            if known is not None and known.get("digest") != identity["digest"]:
                raise UserError(
                    f"{directory} holds study '{known.get('name')}' with another configuration "
                    f"or data (digest {known.get('digest')}, this one {identity['digest']}); "
                    "rerun with the same settings and data to resume it, or give a new --name "
                    "or --out"
                )
            self.pieces = dict(stored.get("pieces", {}))
        self.reused = len(self.pieces)
        self.write()

    def done(self, piece: str) -> bool:
        return piece in self.pieces

    def add(self, piece: str, kind: str, seconds: float, **facts: Any) -> None:
        self.pieces[piece] = {
            "kind": kind,
            "seconds": round(seconds, 3),
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **facts,
        }
        self.write()
        crash_point("study-piece", piece)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"identity": self.identity, "pieces": self.pieces}, indent=1)
        atomic_write_text(self.path, text + "\n")


class _Progress:
    """Pieces done / total, the current piece and a time estimate, logged and on a bar."""

    def __init__(self, total: int, record: _Record) -> None:
        from distributed_clr.progress import progress

        self.total, self.record = total, record
        self.bar = progress(total=total, desc="study", unit="piece")
        self.bar.update(min(total, len(record.pieces)))

    def estimate(self, remaining: Mapping[str, int]) -> float:
        seconds: dict[str, list[float]] = {}
        for piece in self.record.pieces.values():
            seconds.setdefault(piece["kind"], []).append(float(piece.get("seconds") or 0.0))
        overall = [s for values in seconds.values() for s in values]
        fallback = float(np.mean(overall)) if overall else math.nan
        return sum(
            n * (float(np.mean(seconds[kind])) if kind in seconds else fallback)
            for kind, n in remaining.items()
        )

    def start(self, piece: str, remaining: Mapping[str, int]) -> None:
        done = len(self.record.pieces)
        eta = self.estimate(remaining)
        shown = "unknown" if math.isnan(eta) else f"~{_duration(eta)}"
        log.info("[%d/%d] %s (remaining %s)", done + 1, self.total, piece, shown)
        self.bar.set_description_str(piece[:40])

    def finish(self, count: int = 1) -> None:
        self.bar.update(count)

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------------------------------------
# the study


def run_study(
    study_name: str,
    data: Sequence[str | Path],
    *,
    scale: str | float = "ci",
    name: str | None = None,
    out: str | Path | None = None,
    preset: str | None = None,
    config_files: Sequence[str | Path] = (),
    overrides: Sequence[tuple[str, Any]] = (),
    command: str = "",
) -> StudyOutcome:
    """Run (or resume) a study and write its report; see the module docstring.

    Raises:
        UserError: an unknown study, data of a kind it does not take, too little data for
            its samples, a ``--set`` of a key it varies, or a name taken by another
            configuration.
        RunError: a pretraining run failed (rerun to resume it).
    """
    from distributed_clr.storage.formats import EVENT_KINDS
    from distributed_clr.storage.manifest import require_complete

    started = time.perf_counter()
    study = get_study(study_name)
    staging = Path(out) if out is not None else None
    data_dir = _data(data, staging or Path("studies") / f"{study.name}-data")
    manifest = require_complete(data_dir, EVENT_KINDS)
    kind = manifest.kind
    if kind not in study.kinds:
        raise UserError(
            f"study {study.name} runs on {' or '.join(study.kinds)} data; {data_dir} holds {kind}"
        )
    counts, processes = _counts(data_dir, kind)
    base = study_config(study, kind, scale, preset, config_files, overrides)
    context = StudyContext(base, kind, data_dir, scale_name(scale), counts, processes)
    context.scale = scale if isinstance(scale, str) else scale_name(scale)
    plan = study.build(context)
    varied = sorted(set(plan.grid) & {key for key, _ in overrides})
    if varied:
        raise UserError(f"study {study.name} varies {', '.join(varied)} itself; do not --set it")
    config = study_config(study, kind, scale, preset, config_files, overrides, plan.fixed)
    context.config = config
    digest = _digest(config, [shard.sha256 for shard in manifest.shards])
    name = name or f"{study.name}-{scale_name(scale)}-{digest[:8]}"
    directory = (Path(out) if out is not None else Path("studies") / name).resolve()
    config = _pinned(config, directory)
    identity = {
        "study": study.name,
        "name": name,
        "scale": scale_name(scale),
        "digest": digest,
        "data": str(data_dir),
        "kind": kind,
    }
    record = _Record(directory, identity)
    _write_inputs(config, plan, name, directory)
    parent = _open_parent(config, study, name, identity)
    pieces = _piece_count(config, plan)
    progress = _Progress(pieces, record)
    try:
        with parent.failing_on_error() if parent is not None else contextlib.nullcontext():
            checkpoints, encoders = _pretrain(
                config, plan, data_dir, name, record, progress, parent
            )
            checkpoints.update(_untrained(config, plan, data_dir, directory, record, progress))
            embeddings = _embed(config, plan, data_dir, directory, checkpoints, record, progress)
            summaries = _evaluate(
                config, plan, data_dir, directory, embeddings, record, progress, parent
            )
            results = StudyResults(plan, context, encoders, summaries)
            from distributed_clr.studies.report import write_report

            seconds = time.perf_counter() - started
            report = write_report(
                study,
                results,
                directory,
                record.pieces,
                command=command,
                seconds=seconds,
                digest=digest,
            )
            if parent is not None:
                parent.log_artifacts(report.directory, "report")
                parent.log_metrics({"study/pieces": float(pieces)})
                parent.mark_complete()
    finally:
        progress.close()
    if parent is not None:
        parent.finish("FINISHED")
        log.info("MLflow run %s at %s", parent.run_id, parent.uri)
    return StudyOutcome(
        name=name,
        directory=directory,
        report=report.markdown,
        html=report.html,
        csv=report.csv,
        plots=report.plots,
        tables=report.tables,
        pieces=pieces,
        reused=record.reused,
        seconds=time.perf_counter() - started,
        parent_run_id=None if parent is None else parent.run_id,
        tracking_uri=None if parent is None else parent.uri,
    )


def _digest(config: RunConfig, shards: Sequence[str]) -> str:
    """What makes a study the same study: its config, apart from where it runs (``ray``) and
    where it is recorded (``tracking``), and the data's shards (their sha256)."""
    from distributed_clr.config import RayConfig, TrackingConfig

    settled = config.model_copy(update={"ray": RayConfig(), "tracking": TrackingConfig()})
    return json_digest({"config": config_digest(settled), "data": sorted(shards)}, length=10)


def _pinned(config: RunConfig, directory: Path) -> RunConfig:
    """Ray storage under the study's directory (unless set), an absolute tracking URI."""
    changes: list[tuple[str, Any]] = [("tracking.uri", tracking_uri(config.tracking))]
    if config.ray.storage_path in ("ray_results", "./ray_results"):
        changes.append(("ray.storage_path", str(directory / "ray_results")))
    return apply_overrides(config, changes)


def _open_parent(
    config: RunConfig, study: StudyDef, name: str, identity: Mapping[str, Any]
) -> RunHandle | None:
    if not config.tracking.enabled:
        return None
    params = {**to_flat_dict(config), **{f"study.{k}": v for k, v in identity.items()}}
    parent = RunHandle.open(
        config.tracking,
        name,
        Kind.STUDY,
        params=params,
        config_text=to_yaml(config),
        tags={STUDY_TAG: study.name},
        # The config params are compared; the digest (its summary) may change across versions.
        may_differ=("ray.", "tracking.", "study.data", "study.digest"),
    )
    log.info("%s MLflow study run %s", "continuing" if parent.resumed else "started", parent.run_id)
    return parent


def _piece_count(config: RunConfig, plan: StudyPlan) -> int:
    """Encoders to pretrain, untrained architectures, embeddings and evaluations."""
    used = {e.encoder for e in plan.evaluations}
    architectures = {
        _architecture(_variant(config, plan, label), config.data.kind)
        for label in used
        if label.startswith(UNTRAINED)
    }
    return len(plan.encoders) + len(architectures) + len(used) + len(plan.evaluations)


def _variant(config: RunConfig, plan: StudyPlan, label: str) -> RunConfig:
    """The config of encoder ``label`` (trained or untrained)."""
    trained = label.removeprefix(f"{UNTRAINED}/")
    for encoder in plan.encoders:
        if encoder.label == trained:
            return apply_overrides(config, list(encoder.values.items()))
    raise KeyError(label)


def _architecture(config: RunConfig, kind: str) -> str:
    """What makes two untrained encoders the same: model, seed and inputs."""
    return json_digest(
        {
            "model": config.model.model_dump(mode="json"),
            "seed": config.train.seed,
            "kind": kind,
        },
        length=10,
    )


# -- pretraining ---------------------------------------------------------------------------------

CONFIG_FILE = "config.yaml"
SPACE_FILE = "pretrain_space.yaml"
"""The study's full config and its pretraining grid as a space file, in the study's directory:
``dclr tune --space pretrain_space.yaml --config config.yaml`` reruns the pretraining alone."""


def _space(plan: StudyPlan, name: str) -> dict[str, Any]:
    """The pretraining grid as the contents of a space file (``tune_spaces/README.md``)."""
    return {
        "description": f"the pretraining grid of study {name}",
        "tune": {"search": "grid", "scheduler": "none", "num_samples": 1},
        "params": {key: {"grid": values} for key, values in plan.grid.items()},
    }


def _write_inputs(config: RunConfig, plan: StudyPlan, name: str, directory: Path) -> None:
    import yaml

    atomic_write_text(directory / CONFIG_FILE, to_yaml(config))
    atomic_write_text(directory / SPACE_FILE, yaml.safe_dump(_space(plan, name), sort_keys=False))


def _pretrain(
    config: RunConfig,
    plan: StudyPlan,
    data: Path,
    name: str,
    record: _Record,
    progress: _Progress,
    parent: RunHandle | None,
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Every encoder of the grid through one sweep; {label: best checkpoint} and facts."""
    from distributed_clr.runtime import join
    from distributed_clr.sweeps import space_from_dict, sweep
    from distributed_clr.sweeps.summary import load_trials
    from distributed_clr.sweeps.tuner import trial_run_name
    from distributed_clr.train.results import result_from_storage

    pieces = {e.label: f"pretrain/{slug(e.label)}" for e in plan.encoders}
    if not all(record.done(p) for p in pieces.values()):
        space = space_from_dict(_space(plan, name), config, name=f"{name}-pretrain")
        sweep_config = apply_overrides(config, list(space.settings))
        progress.start(
            f"pretraining {len(plan.encoders)} encoder(s)",
            {"pretrain": sum(not record.done(p) for p in pieces.values())},
        )
        started = time.perf_counter()
        result = sweep(
            sweep_config,
            space,
            data,
            f"{name}-pretrain",
            parent_run_id=None if parent is None else parent.run_id,
        )
        seconds = time.perf_counter() - started
        by_key = {e.key(): e for e in plan.encoders}
        runs = (
            {}
            if result.summary is None
            else dict(zip(result.summary["trial_id"], result.summary["mlflow_run_id"], strict=True))
        )
        failed = []
        trials = load_trials(result.experiment_path, space)
        for trial in trials:
            values = dict(space.decode(trial.params))
            encoder = by_key.get(json.dumps(dict(sorted(values.items())), sort_keys=True))
            if encoder is None:
                continue
            if trial.status != "TERMINATED":
                failed.append(f"{encoder.label} ({trial.status.lower()}: {trial.error[-200:]})")
                continue
            run_name = trial_run_name(result.name, trial.trial_id)
            trained = result_from_storage(run_name, join(result.experiment_path, "runs"), None)
            if not record.done(pieces[encoder.label]):
                record.add(
                    pieces[encoder.label],
                    "pretrain",
                    seconds / max(1, len(trials)),
                    checkpoint=trained.best_checkpoint,
                    run_name=run_name,
                    mlflow_run_id=runs.get(trial.trial_id),
                    best_epoch=trained.best_epoch,
                    epochs=trained.epochs,
                    selection_metric=trained.selection_metric,
                    best_value=trained.best_value,
                )
                progress.finish()
        if failed:
            raise RunError(
                f"{len(failed)} pretraining run(s) did not finish: {'; '.join(failed)}. Rerun the "
                "same command to resume them"
            )
        missing = [label for label, piece in pieces.items() if not record.done(piece)]
        if missing:
            raise RunError(
                f"the sweep has no finished trial for {', '.join(missing)}; rerun to resume"
            )
    checkpoints = {label: record.pieces[piece]["checkpoint"] for label, piece in pieces.items()}
    facts = {label: dict(record.pieces[piece]) for label, piece in pieces.items()}
    return checkpoints, facts


# -- untrained baselines -------------------------------------------------------------------------


def _untrained(
    config: RunConfig,
    plan: StudyPlan,
    data: Path,
    directory: Path,
    record: _Record,
    progress: _Progress,
) -> dict[str, str]:
    """{untrained label: checkpoint}, one checkpoint per distinct architecture."""
    from distributed_clr.train import untrained

    kind = config.data.kind
    checkpoints: dict[str, str] = {}
    for label in dict.fromkeys(e.encoder for e in plan.evaluations):
        if not label.startswith(UNTRAINED):
            continue
        variant = _variant(config, plan, label)
        arch = _architecture(variant, kind)
        piece = f"untrained/{arch}"
        if not record.done(piece):
            progress.start(f"untrained encoder ({label})", {"untrained": 1})
            started = time.perf_counter()
            path = untrained(variant, data, directory / "encoders" / f"untrained-{arch}")
            record.add(piece, "untrained", time.perf_counter() - started, checkpoint=str(path))
            progress.finish()
        checkpoints[label] = record.pieces[piece]["checkpoint"]
    return checkpoints


# -- embeddings ----------------------------------------------------------------------------------


def _embed(
    config: RunConfig,
    plan: StudyPlan,
    data: Path,
    directory: Path,
    checkpoints: Mapping[str, str],
    record: _Record,
    progress: _Progress,
) -> dict[str, Path]:
    """{encoder label: embeddings} of every encoder an evaluation uses."""
    from distributed_clr.embed import embed

    labels = list(dict.fromkeys(e.encoder for e in plan.evaluations))
    out: dict[str, Path] = {}
    for index, label in enumerate(labels):
        checkpoint = checkpoints[label]
        target = directory / "embeddings" / slug(f"{label}-{Path(checkpoint).name}")
        piece = f"embed/{slug(label)}"
        if not record.done(piece):
            progress.start(f"embed {label}", {"embed": len(labels) - index})
            started = time.perf_counter()
            embed(checkpoint, data, target, config.ray, verify=config.data.verify)
            record.add(piece, "embed", time.perf_counter() - started, embeddings=str(target))
            progress.finish()
        out[label] = Path(record.pieces[piece]["embeddings"])
    return out


# -- evaluations ---------------------------------------------------------------------------------


def _evaluate(
    config: RunConfig,
    plan: StudyPlan,
    data: Path,
    directory: Path,
    embeddings: Mapping[str, Path],
    record: _Record,
    progress: _Progress,
    parent: RunHandle | None,
) -> dict[str, dict[str, Any]]:
    summaries: dict[str, dict[str, Any]] = {}
    for index, evaluation in enumerate(plan.evaluations):
        out = directory / "evaluations" / evaluation.name.replace("/", "__")
        if not record.done(evaluation.name):
            progress.start(evaluation.name, {"evaluate": len(plan.evaluations) - index})
            started = time.perf_counter()
            settings = apply_overrides(
                _variant(config, plan, evaluation.encoder), list(evaluation.overrides)
            )
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out.parent / f"{out.name}.config.yaml", to_yaml(settings))
            summary = _run_stage(
                evaluation, settings, embeddings[evaluation.encoder], data, out, parent
            )
            run = (summary.get("mlflow") or {}).get("run_id")
            if parent is not None and run:
                RunHandle.attach(parent.uri, run).set_tags(
                    {PIECE_TAG: evaluation.name, STUDY_TAG: parent.name}
                )
            record.add(
                evaluation.name,
                "evaluate",
                time.perf_counter() - started,
                output=str(out),
                embeddings=str(embeddings[evaluation.encoder]),
                config=str(out.parent / f"{out.name}.config.yaml"),
                stage=evaluation.stage,
                mlflow_run_id=run,
            )
            progress.finish()
        summaries[evaluation.name] = json.loads((out / "summary.json").read_text())
    return summaries


def _run_stage(
    evaluation: Evaluation,
    config: RunConfig,
    embeddings: Path,
    data: Path,
    out: Path,
    parent: RunHandle | None,
) -> dict[str, Any]:
    from distributed_clr.evaluate import classify, cwola, nplm

    common: dict[str, Any] = {
        "mlflow_run_id": None if parent is None else parent.run_id,
        "tracking": config.tracking,
        "verify": config.data.verify,
    }
    if evaluation.stage == "classify":
        return classify(
            config.evaluate,
            embeddings,
            data,
            out,
            model=config.model,
            sample=config.sample,
            **common,
        )
    if evaluation.stage in ("cwola", "bumphunt"):
        return cwola(
            config.evaluate,
            embeddings,
            data,
            out,
            mode="idealised" if evaluation.stage == "cwola" else "bumphunt",
            classifier=evaluation.classifier,
            sample=config.sample,
            **common,
        )
    return nplm(config.nplm, embeddings, data, out, ray_config=config.ray, **common)
