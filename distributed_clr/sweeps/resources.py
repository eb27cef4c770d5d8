"""What one trial holds, and how many trials run at once on the cluster.

A trial is its driver function (``TRIAL_DRIVER_CPUS``: it only drives its ``TorchTrainer`` and
logs to MLflow) plus its ``ray.num_workers`` training workers, which reserve their own CPUs and
GPUs. The count of concurrent trials comes from ``runtime.units_that_fit``, the package's one
resource check, with one CPU kept free for Ray Data.
"""

from __future__ import annotations

from collections.abc import Mapping

from distributed_clr.config.schema import RunConfig
from distributed_clr.runtime import DATA_CPUS, units_that_fit

__all__ = ["DATA_CPUS", "TRIAL_DRIVER_CPUS", "max_concurrent_trials", "trial_footprint"]

TRIAL_DRIVER_CPUS = 0.5
"""CPUs reserved by each trial function. It only drives its ``TorchTrainer`` (whose workers
reserve their own CPUs/GPUs) and logs to MLflow, so it gets half a logical CPU."""


def trial_footprint(config: RunConfig) -> tuple[float, float]:
    """(CPUs, GPUs) one trial holds: its driver function plus its training workers."""
    ray_config = config.ray
    cpus = TRIAL_DRIVER_CPUS + ray_config.num_workers * ray_config.cpus_per_worker
    gpus = float(ray_config.num_workers) if ray_config.use_gpu else 0.0
    return cpus, gpus


def max_concurrent_trials(config: RunConfig, cluster: Mapping[str, float]) -> int:
    """How many trials fit at once: ``tune.max_concurrent_trials`` if set, else
    floor((CPUs - 1) / CPUs per trial) (one CPU stays free for Ray Data), limited by
    GPUs / GPUs per trial on GPU runs.

    Raises:
        ResourceError: not even one trial fits (also when ``tune.max_concurrent_trials`` is
            set).
    """
    cpus, gpus = trial_footprint(config)
    ray_config = config.ray
    workers = "worker" if ray_config.num_workers == 1 else "workers"
    per_worker = f"{ray_config.cpus_per_worker:g} CPU" + (
        "" if ray_config.cpus_per_worker == 1 else "s"
    )
    gpu_note = ", 1 GPU each" if gpus else ""
    what = (
        f"a trial ({ray_config.num_workers} {workers} x {per_worker}{gpu_note} + "
        f"{TRIAL_DRIVER_CPUS:g} CPU for the trial driver)"
    )
    fits = units_that_fit(cluster, cpus, gpus, what=what, reserved_cpus=DATA_CPUS)
    if config.tune.max_concurrent_trials is not None:
        return config.tune.max_concurrent_trials
    return fits
