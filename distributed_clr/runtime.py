"""Connecting to Ray: one place that decides between a cluster and a local session."""

from __future__ import annotations

import logging
import os

from distributed_clr.config.schema import RayConfig

log = logging.getLogger(__name__)


def init_ray(config: RayConfig) -> None:
    """Join the cluster at ``config.address`` or ``RAY_ADDRESS``, else start a local Ray.

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
    log.info("starting a local Ray session (%s CPUs)", config.num_cpus or "all")
    ray.init(
        num_cpus=config.num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        configure_logging=True,
    )
