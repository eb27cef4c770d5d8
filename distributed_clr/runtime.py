"""Connecting to Ray: one place that decides between a cluster and a local session."""

from __future__ import annotations

import logging
import os

from distributed_clr.config.schema import RayConfig

log = logging.getLogger(__name__)


def init_ray(config: RayConfig, min_cpus: int | None = None) -> None:
    """Join the cluster at ``config.address`` or ``RAY_ADDRESS``, else start a local Ray.

    A local session gets ``ray.num_cpus`` logical CPUs, or all cores but at least ``min_cpus``:
    a training run reserves one CPU per worker and Ray Data needs one more to read shards, so a
    2-core laptop runs 2 workers on 3 logical CPUs rather than waiting forever for a free one.
    Does nothing when this process is already connected (tests share one session this way).
    """
    import ray

    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, logging_level=logging.WARNING)
        return
    num_cpus = config.num_cpus
    if min_cpus is not None:
        if num_cpus is not None and num_cpus < min_cpus:
            log.info("ray.num_cpus = %d is too few for this job; using %d", num_cpus, min_cpus)
        num_cpus = max(num_cpus or os.cpu_count() or 1, min_cpus)
    log.info("starting a local Ray session (%s CPUs)", num_cpus or "all")
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        configure_logging=True,
    )
