"""``dclr generate``: Pythia 8 events with a detector response, one Ray task per shard.

Each shard gets its own seed, derived from the master seed and the process name, so shards are
independent, a QCD and a signal dataset made with the same seed share no random stream, and the
same command always writes the same bytes. The manifest exists from the start; workers write
their shards into the run's staging area and the driver publishes each one and records it at
once, so a run killed at any point resumes where it stopped and ends with the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from distributed_clr.config.errors import ConfigError
from distributed_clr.config.schema import GenerateConfig, RayConfig
from distributed_clr.crashpoints import crash_point
from distributed_clr.physics.particles import to_arrow
from distributed_clr.physics.pythia import GenerationError, generate_events, pythia_settings
from distributed_clr.progress import progress
from distributed_clr.seeds import seed_sequence
from distributed_clr.storage.files import write_parquet_atomic
from distributed_clr.storage.formats import LABEL_BACKGROUND, LABEL_SIGNAL
from distributed_clr.storage.manifest import (
    Manifest,
    ShardRecord,
    finish,
    publish,
    resume_or_start,
    staging_area,
)

log = logging.getLogger(__name__)

LABELS = {"qcd_dijet": LABEL_BACKGROUND, "wprime_xy": LABEL_SIGNAL}

# event_id = tag (20 bits) | shard (15 bits) | index in shard (28 bits): unique within a dataset,
# and distinct between datasets of different process or seed with overwhelming probability.
_TAG_BITS, _SHARD_BITS, _INDEX_BITS = 20, 15, 28
MAX_SHARDS = 1 << _SHARD_BITS
MAX_EVENTS_PER_SHARD = 1 << _INDEX_BITS


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def events_per_shard(events: int, shards: int) -> list[int]:
    """Split ``events`` over ``shards`` evenly; the first shards take the remainder."""
    base, extra = divmod(events, shards)
    return [base + (1 if i < extra else 0) for i in range(shards)]


def _dataset_tag(process: str, seed: int) -> int:
    return zlib.crc32(f"{process}:{seed}".encode()) & ((1 << _TAG_BITS) - 1)


def shard_seed(config: GenerateConfig, index: int) -> np.random.SeedSequence:
    """The seed sequence of shard ``index``: independent of the shard count and of other shards."""
    return seed_sequence(config.seed, zlib.crc32(config.process.encode()), spawn_key=(index,))


def event_ids(config: GenerateConfig, index: int, n: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    return make_event_ids(config.process, config.seed, index, n)


def make_event_ids(
    process: str, seed: int, index: int, n: int
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The event ids of shard ``index`` of a generated ``process`` dataset (module comment)."""
    base = (_dataset_tag(process, seed) << (_SHARD_BITS + _INDEX_BITS)) | (index << _INDEX_BITS)
    return base + np.arange(n, dtype=np.int64)


def generate_shard(config: GenerateConfig, index: int, n_events: int, out: str) -> ShardRecord:
    """The Ray task: generate shard ``index`` and write it atomically into directory ``out``
    (the run's staging area; the driver publishes it)."""

    result = generate_events(config, n_events, shard_seed(config, index))
    table = to_arrow(
        result.particles, event_ids(config, index, n_events), LABELS[config.process], config.process
    )
    name = shard_name(index)
    digest = write_parquet_atomic(table, Path(out) / name)
    return ShardRecord(name, table.num_rows, digest, {"index": index, **result.stats()})


def dataset_id(config: GenerateConfig) -> str:
    """A name for the dataset that depends on how it was made, never on where it is stored."""
    digest = hashlib.sha256(
        json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
    return f"{config.process}-seed{config.seed}-{digest[:12]}"


def _summary(config: GenerateConfig, shards: list[ShardRecord]) -> dict[str, Any]:
    generated = sum(int(s.stats["generated"]) for s in shards)
    passed = sum(int(s.stats["passed_trigger"]) for s in shards)
    # Each shard is an independent Pythia run: combine their cross-sections weighted by events.
    sigmas = np.array([s.stats["sigma_gen_pb"] for s in shards], dtype=float)
    errors = np.array([s.stats["sigma_err_pb"] for s in shards], dtype=float)
    weights = np.array([s.stats["generated"] for s in shards], dtype=float)
    sigma = float(np.average(sigmas, weights=weights))
    sigma_err = float(np.sqrt(np.sum((weights * errors) ** 2)) / weights.sum())
    efficiency = passed / generated if generated else math.nan
    return {
        "dataset": dataset_id(config),
        "process": config.process,
        "label": LABELS[config.process],
        "pythia_settings": pythia_settings(config, seed=None),
        "events": sum(s.rows for s in shards),
        "generated": generated,
        "failed": sum(int(s.stats["failed"]) for s in shards),
        "trigger": (
            {"leading_jet_pt_min": config.trigger_pt, "radius": config.trigger_radius}
            if config.trigger
            else None
        ),
        "trigger_efficiency": efficiency if config.trigger else 1.0,
        "sigma_gen_pb": sigma,
        "sigma_err_pb": sigma_err,
        "sigma_after_trigger_pb": sigma * (efficiency if config.trigger else 1.0),
    }


def generate(config: GenerateConfig, out: Path, ray_config: RayConfig) -> Manifest:
    """Generate a raw-event dataset into ``out`` (resuming a previous, interrupted run)."""
    import ray

    from distributed_clr.runtime import as_completed, init_ray

    if config.shards > MAX_SHARDS:
        raise ConfigError(f"at most {MAX_SHARDS} shards, got {config.shards}")
    counts = events_per_shard(config.events, config.shards)
    if max(counts) >= MAX_EVENTS_PER_SHARD:
        raise ConfigError(f"at most {MAX_EVENTS_PER_SHARD - 1} events per shard; use more shards")
    if min(counts) == 0:
        raise ConfigError(f"{config.events} events cannot fill {config.shards} shards")

    out = Path(out)
    manifest = resume_or_start(out, "raw", config.model_dump(mode="json"))
    manifest.seeds = {
        "master": config.seed,
        "derivation": "SeedSequence([seed, crc32(process)], spawn_key=(shard,)); per shard, "
        "child 0 seeds Pythia (pythia_seed in each shard's record), child 1 the detector",
    }
    done = {s.file for s in manifest.shards}
    todo = [i for i in range(config.shards) if shard_name(i) not in done]
    if done:
        log.info("%s: %d of %d shards already complete", out, len(done), config.shards)
    crash_point("stage-started", str(out))

    if todo:
        init_ray(ray_config)
        staging = staging_area(out)
        task = ray.remote(num_cpus=1, max_retries=1)(generate_shard)
        pending = {task.remote(config, i, counts[i], str(staging)): i for i in todo}

        def failed(index: int, err: BaseException) -> Exception:
            return GenerationError(f"generating shard {index} failed: {err}")

        with progress(
            total=config.events, initial=manifest.rows, desc=f"generate {config.process}", unit="ev"
        ) as bar:
            for index, record in as_completed(pending, failed):
                publish(out, manifest, staging / record.file, record)
                bar.update(record.rows)
                log.info(
                    "%s: shard %d done (%d of %d shards, %d events)",
                    out,
                    index,
                    len(manifest.shards),
                    config.shards,
                    manifest.rows,
                )

    manifest.summary = _summary(config, manifest.shards)
    finish(out, manifest)
    log.info(
        "%s: %d %s events, trigger efficiency %.3f, sigma %.4g pb",
        out,
        manifest.rows,
        config.process,
        manifest.summary["trigger_efficiency"],
        manifest.summary["sigma_gen_pb"],
    )
    return manifest
