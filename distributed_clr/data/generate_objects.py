"""``dclr generate-objects``: object-level events with Pythia 8, one Ray task per shard.

A single process, or the SM cocktail: W -> l nu, QCD (heavy flavour), Z/gamma* -> l l and
ttbar mixed to ``objects.fractions`` (the ADC2021 shares by default) or, with
``objects.mix=cross_section``, in proportion to each process's cross-section times its
preselection efficiency, both measured in a pilot run of ``objects.pilot_events`` generated
events per process (Ray tasks; recorded in the manifest, so a resumed run mixes the same way).
Each process gets its share of the events, a share of the shards by generation cost (at least
one shard each), and its own dataset name, so (dataset, event_id) stays unique. Events carry
their SM process id (``physics.object_events.process_id``; -1 for signals) and their split
and fold. The shard plan and the pilot's results are written into the manifest before the
first shard, so a resumed run makes exactly the shards it planned.

Shards get their seeds from the master seed, the process and the shard index: the same
command writes the same bytes, and a killed run resumes shard by shard (``storage/manifest``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from distributed_clr.config.errors import ConfigError
from distributed_clr.config.schema import (
    SM_PROCESSES,
    ObjectGenerateConfig,
    PrepareConfig,
    RayConfig,
)
from distributed_clr.crashpoints import crash_point
from distributed_clr.data.generate import MAX_EVENTS_PER_SHARD, MAX_SHARDS, make_event_ids
from distributed_clr.data.objects import object_table
from distributed_clr.errors import RunError
from distributed_clr.physics.object_events import (
    generate_object_events,
    object_settings,
    process_id,
)
from distributed_clr.progress import progress
from distributed_clr.seeds import seed_sequence
from distributed_clr.storage.files import write_parquet_atomic
from distributed_clr.storage.formats import LABEL_BACKGROUND, LABEL_SIGNAL, SPLITS
from distributed_clr.storage.manifest import (
    Manifest,
    ShardRecord,
    finish,
    publish,
    resume_or_start,
    staging_area,
)

log = logging.getLogger(__name__)

__all__ = ["ObjectGenerationError", "generate_objects", "plan_shards"]

PILOT_SHARD = 1 << 14
"""The shard index the pilot runs' seeds derive from (never a real shard's)."""


class ObjectGenerationError(RunError, RuntimeError):
    """A shard or a pilot run failed."""


def _seed(config: ObjectGenerateConfig, process: str, index: int) -> np.random.SeedSequence:
    return seed_sequence(config.seed, zlib.crc32(process.encode()), spawn_key=(index,))


def dataset_name(config: ObjectGenerateConfig, process: str) -> str:
    """The dataset name of one process of a run: how it was made, never where it is stored."""
    made = {**config.model_dump(mode="json"), "process": process}
    digest = hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()
    return f"{process}-seed{config.seed}-{digest[:12]}"


def shares(config: ObjectGenerateConfig, pilot: dict[str, Any] | None) -> dict[str, float]:
    """Each process's share of the events (one process: 1)."""
    if config.process != "sm_cocktail":
        return {config.process: 1.0}
    if config.mix == "cross_section":
        if pilot is None:
            raise ValueError("cross-section mixing needs the pilot run's results")
        weights = {p: pilot[p]["sigma_gen_pb"] * pilot[p]["efficiency"] for p in SM_PROCESSES}
    else:
        weights = {p: float(config.fractions.get(p, 0.0)) for p in SM_PROCESSES}
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError("the cocktail has no process with a positive share")
    return {p: w / total for p, w in weights.items() if w > 0}


def _largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    exact = {k: total * w for k, w in weights.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    left = total - sum(counts.values())
    for key in sorted(exact, key=lambda k: counts[k] - exact[k])[:left]:
        counts[key] += 1
    return counts


TYPICAL_EFFICIENCY = {
    "w_lnu": 0.31, "qcd": 0.041, "z_ll": 0.47, "ttbar": 0.37,
    "ato4l": 0.27, "lq_btau": 0.15, "h0_tautau": 0.060, "hplus_taunu": 0.008,
}  # fmt: skip
"""Preselection efficiencies at the default settings (``benchmarks/object_physics.py``), used
only to share the shards of a cocktail by generation cost: they never change an event."""


def plan_shards(
    config: ObjectGenerateConfig, share: dict[str, float]
) -> list[tuple[str, int, int]]:
    """(process, shard index, events) of every shard: each process its share of the events,
    and of the shards in proportion to its generation cost (events / typical preselection
    efficiency), at least one shard for each process with events."""
    events = _largest_remainder(config.events, share)
    events = {p: n for p, n in events.items() if n > 0}
    cost = {p: n / TYPICAL_EFFICIENCY.get(p, 0.1) for p, n in events.items()}
    total_cost = sum(cost.values())
    shards = _largest_remainder(config.shards, {p: c / total_cost for p, c in cost.items()})
    plan = []
    for process, n in events.items():
        count = min(max(shards.get(process, 0), 1), n)
        if count > MAX_SHARDS:
            raise ConfigError(f"at most {MAX_SHARDS} shards per process")
        base, extra = divmod(n, count)
        for index in range(count):
            size = base + (1 if index < extra else 0)
            if size >= MAX_EVENTS_PER_SHARD:
                raise ConfigError("too many events per shard; use more shards")
            plan.append((process, index, size))
    return plan


def shard_file(process: str, index: int) -> str:
    return f"objects-{process}-{index:05d}.parquet"


def generate_object_shard(
    config: ObjectGenerateConfig, prepare: PrepareConfig, process: str, index: int, n: int,
    out: str,
) -> ShardRecord:  # fmt: skip
    """The Ray task: shard ``index`` of ``process``, written into ``out`` (the staging area)."""
    shard = generate_object_events(config, process, n, _seed(config, process, index))
    events = shard.events
    label = LABEL_BACKGROUND if process in SM_PROCESSES else LABEL_SIGNAL
    table = object_table(
        events.values, events.classes, np.full(len(events.values), process_id(process), np.int16),
        make_event_ids(process, config.seed, index, len(events.values)), label, process,
        dataset_name(config, process), prepare,
    )  # fmt: skip
    name = shard_file(process, index)
    digest = write_parquet_atomic(table, Path(out) / name)
    splits = Counter(table.column("split").to_pylist())
    stats = {"process": process, "index": index, "splits": dict(splits), **shard.stats()}
    return ShardRecord(name, table.num_rows, digest, stats)


def pilot_run(config: ObjectGenerateConfig, process: str) -> dict[str, float]:
    """The Ray task of cross-section mixing: cross-section and preselection efficiency of
    ``process`` from ``pilot_events`` generated events."""
    shard = generate_object_events(
        config, process, config.pilot_events, _seed(config, process, PILOT_SHARD),
        max_generated=config.pilot_events,
    )  # fmt: skip
    return {
        "generated": shard.generated,
        "passed": shard.passed,
        "efficiency": shard.passed / shard.generated,
        "sigma_gen_pb": shard.sigma_pb,
        "sigma_err_pb": shard.sigma_err_pb,
    }


def _pilot(config: ObjectGenerateConfig, ray_config: RayConfig) -> dict[str, Any]:
    import ray

    from distributed_clr.runtime import as_completed, init_ray

    init_ray(ray_config)
    task = ray.remote(num_cpus=1, max_retries=1)(pilot_run)
    pending = {task.remote(config, p): p for p in SM_PROCESSES}

    def failed(process: str, err: BaseException) -> Exception:
        return ObjectGenerationError(f"the pilot run of {process} failed: {err}")

    results = {}
    for process, result in as_completed(pending, failed):
        results[process] = result
        log.info(
            "pilot %s: sigma %.4g pb, preselection efficiency %.4f (%d events)",
            process, result["sigma_gen_pb"], result["efficiency"], result["generated"],
        )  # fmt: skip
    return results


def generate_objects(
    config: ObjectGenerateConfig, out: str | Path, ray_config: RayConfig,
    prepare: PrepareConfig | None = None,
) -> Manifest:  # fmt: skip
    """Generate an object-level dataset into ``out`` (resuming an interrupted run)."""
    import ray

    from distributed_clr.runtime import as_completed, init_ray

    prepare = prepare or PrepareConfig()
    out = Path(out)
    identity = {
        "objects": config.model_dump(mode="json"),
        "splits": {
            "train_fraction": prepare.train_fraction,
            "val_fraction": prepare.val_fraction,
            "num_folds": prepare.num_folds,
            "split_salt": prepare.split_salt,
        },
    }
    manifest = resume_or_start(out, "objects", identity)
    manifest.seeds = {
        "master": config.seed,
        "derivation": "SeedSequence([seed, crc32(process)], spawn_key=(shard,)); per shard, "
        "child 0 seeds Pythia (pythia_seed in each shard's record), child 1 the reconstruction",
    }
    pilot = manifest.summary.get("pilot")
    if config.process == "sm_cocktail" and config.mix == "cross_section" and pilot is None:
        pilot = _pilot(config, ray_config)
        manifest.summary["pilot"] = pilot
        manifest.write(out)
    # The plan is recorded before any shard is made, so a resumed run makes the same shards.
    recorded = manifest.summary.get("plan")
    if recorded is None:
        plan = plan_shards(config, shares(config, pilot))
        manifest.summary["plan"] = [list(entry) for entry in plan]
        manifest.write(out)
    else:
        plan = [(str(p), int(i), int(n)) for p, i, n in recorded]
    done = {s.file for s in manifest.shards}
    todo = [(p, i, n) for p, i, n in plan if shard_file(p, i) not in done]
    crash_point("stage-started", str(out))
    if todo:
        init_ray(ray_config)
        staging = staging_area(out)
        task = ray.remote(num_cpus=1, max_retries=1)(generate_object_shard)
        pending = {task.remote(config, prepare, p, i, n, str(staging)): (p, i) for p, i, n in todo}

        def failed(key: tuple[str, int], err: BaseException) -> Exception:
            return ObjectGenerationError(f"generating {key[0]} shard {key[1]} failed: {err}")

        with progress(
            total=config.events, initial=manifest.rows, desc=f"generate {config.process}", unit="ev"
        ) as bar:
            for _, record in as_completed(pending, failed):
                publish(out, manifest, staging / record.file, record)
                bar.update(record.rows)
    manifest.summary = {**_summary(config, manifest, pilot), "plan": manifest.summary["plan"]}
    finish(out, manifest)
    log.info("%s: %d object-level events (%s)", out, manifest.rows, config.process)
    return manifest


def _summary(
    config: ObjectGenerateConfig, manifest: Manifest, pilot: dict[str, Any] | None
) -> dict[str, Any]:
    processes: dict[str, dict[str, Any]] = {}
    splits: Counter[str] = Counter()
    for shard in manifest.shards:
        stats = shard.stats
        entry = processes.setdefault(
            stats["process"], {"events": 0, "generated": 0, "sigma_gen_pb": [], "weights": []}
        )
        entry["events"] += shard.rows
        entry["generated"] += int(stats["generated"])
        entry["sigma_gen_pb"].append(float(stats["sigma_gen_pb"]))
        entry["weights"].append(int(stats["generated"]))
        splits.update(stats["splits"])
    total = manifest.rows
    for process, entry in processes.items():
        sigma = float(np.average(entry.pop("sigma_gen_pb"), weights=entry.pop("weights")))
        entry.update(
            {
                "dataset": dataset_name(config, process),
                "process_id": process_id(process),
                "fraction": entry["events"] / total if total else 0.0,
                "preselection_efficiency": entry["events"] / entry["generated"],
                "sigma_gen_pb": sigma,
                "pythia_settings": object_settings(config, process, seed=None),
            }
        )
    return {
        "process": config.process,
        "events": total,
        "processes": dict(sorted(processes.items())),
        "splits": {s: splits.get(s, 0) for s in SPLITS},
        "pilot": pilot,
    }
