"""Where a job runs: connecting to Ray, sizing work to the cluster, and storage locations.

* ``init_ray`` joins the cluster at ``ray.address`` or ``RAY_ADDRESS``, else starts a local
  session big enough for the job.
* ``units_that_fit`` is the one resource check: how many copies of a unit of work (a training
  run's workers, a sweep's trial) fit on the cluster next to the CPU Ray Data needs to read
  shards; a clear ``ResourceError`` when not even one does.
* ``as_completed`` is the one loop over Ray tasks: results as each task finishes, and on a
  failure the rest cancelled and the task's own ``UserError`` raised as it was.
* ``storage_root`` and ``join`` handle storage locations that are local paths or URIs
  (``s3://...``, ``gs://...``): local paths become absolute, since Ray workers run in other
  directories.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from distributed_clr.errors import UserError

if TYPE_CHECKING:
    # Only a type here: a Ray worker imports this module to run ``setup_worker`` when it starts,
    # and the configuration tree (pydantic) is not needed for that.
    from distributed_clr.config.schema import RayConfig

log = logging.getLogger(__name__)

__all__ = [
    "DATA_CPUS",
    "ResourceError",
    "as_completed",
    "init_ray",
    "join",
    "storage_root",
    "units_that_fit",
    "unwrap_ray_error",
]

DATA_CPUS = 1.0
"""CPUs kept free for Ray Data to read shards next to the training workers."""


class ResourceError(UserError):
    """The Ray cluster cannot hold the job as configured."""


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
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            runtime_env={"worker_process_setup_hook": setup_worker},
        )
        quiet_ray_logging()
        return
    num_cpus = config.num_cpus
    if min_cpus is not None:
        if num_cpus is not None and num_cpus < min_cpus:
            log.info("ray.num_cpus = %d is too few for this job; using %d", num_cpus, min_cpus)
        num_cpus = max(num_cpus or os.cpu_count() or 1, min_cpus)
    log.info("starting a local Ray session (%s CPUs)", num_cpus or "all")
    # A local session turns on Ray's token authentication and announces it with a warning on
    # every start; it is what a session on this machine should do, so the notice is kept out.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )
    hook_variable = _inherited_hook_variable()
    with _environment(hook_variable, f"{setup_worker.__module__}.{setup_worker.__qualname__}"):
        ray.init(
            # "local": a new session even where `ray start` runs a cluster on this machine,
            # which Ray would otherwise join unasked; a cluster is joined only when it is named.
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            configure_logging=True,
            runtime_env=None if hook_variable else {"worker_process_setup_hook": setup_worker},
        )
    quiet_ray_logging()


def _inherited_hook_variable() -> str | None:
    """The environment variable through which a Ray worker process finds its setup hook, or
    None where this Ray does not have one.

    A local session's processes inherit the driver's environment (the raylet is its child, the
    workers the raylet's), so naming ``setup_worker`` there reaches every worker without a
    runtime environment. That matters for speed: a job with a runtime environment cannot use
    the workers Ray prestarts with the session, and waits for new ones that its runtime-env
    agent prepares (about 1.5 s of a 2-core machine before the first task runs). A cluster that
    is joined has its own processes, so there the hook goes through ``runtime_env``.
    """
    from ray._private import ray_constants

    name = getattr(ray_constants, "WORKER_PROCESS_SETUP_HOOK_ENV_VAR", None)
    return name if isinstance(name, str) and name else None


@contextmanager
def _environment(name: str | None, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` while the block runs (nothing when ``name`` is None), and
    the previous value back afterwards, so that later child processes of this one (another
    command, a test's subprocess) do not inherit it."""
    if name is None:
        yield
        return
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


QUIET_LOGGERS = {
    "ray.train": logging.ERROR,
    "ray.tune": logging.WARNING,
    "ray.data": logging.WARNING,
}
"""Ray's loggers and the level below which a successful run stays silent: Ray Train logs every
report at INFO and, without Ray's dashboard, a warning per second from its placement-group
cleaner; Ray Data announces each execution; MLflow announces creating its database tables.
Errors still show; ``-v`` shows everything."""

HOUSEKEEPING_LOGGERS = frozenset({"ray.train.v2._internal.callbacks.placement_group_callback"})
"""Ray loggers whose records below CRITICAL are housekeeping: Ray Train's controller logs, with a
traceback, when its placement-group cleaner (a helper actor that removes a run's placement
group should the controller die) takes longer than a few seconds to stop, which is routine on a
loaded machine and changes nothing: the run has finished and removed its placement group
itself. A filter on the logger drops them; a level would not do, since the controller
reconfigures Ray Train's logging (``logging.config.dictConfig``) after the worker setup hook
ran, which resets the levels of the loggers under ``ray.train`` but keeps their filters."""

HOUSEKEEPING_THREADS = frozenset({"PlacementGroupCleanerMonitor"})
"""Ray threads whose uncaught errors are housekeeping, not the job's: the placement-group
cleaner's monitor asks the State API whether the controller is alive, and in a session without
the dashboard, with ``ray[default]`` installed, that call raises an RPC error that ends the
thread with a traceback. Such an error is logged at DEBUG; the job is unaffected (sweeps
release orphaned placement groups themselves, ``sweeps.janitor``)."""


def setup_worker() -> None:
    """Ray's ``worker_process_setup_hook`` for every worker of a job: ``quiet_ray_logging``,
    and ``RAY_ADDRESS`` pinned to the worker's own cluster. Ray's helpers that look a cluster
    up by themselves (Ray Train's placement-group cleaner asks the State API whether the
    controller lives) would otherwise pick the newest of several Ray instances on the machine,
    with a warning, and could watch another job's cluster."""
    quiet_ray_logging()
    if not os.environ.get("RAY_ADDRESS"):
        import ray

        address = ray.get_runtime_context().gcs_address
        if address:
            os.environ["RAY_ADDRESS"] = address


def quiet_ray_logging() -> None:
    """Raise Ray's chattiest loggers to ``QUIET_LOGGERS`` and keep the records of
    ``HOUSEKEEPING_LOGGERS`` and the errors of ``HOUSEKEEPING_THREADS`` out of the output (on
    the driver and, as Ray's ``worker_process_setup_hook``, in every worker) unless the
    package logs at DEBUG. (Ray Data's announcement of each execution is turned off where a
    dataset is made, ``storage.reader.ray_dataset``, so that a process that makes none does
    not import Ray Data for it.)"""
    if logging.getLogger("distributed_clr").isEnabledFor(logging.DEBUG):
        return
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for name in HOUSEKEEPING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Housekeeping) for f in logger.filters):
            logger.addFilter(_Housekeeping())
    _quiet_housekeeping_threads()


class _Housekeeping(logging.Filter):
    """Drops records below CRITICAL (``HOUSEKEEPING_LOGGERS``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL


def _quiet_housekeeping_threads() -> None:
    """Chain a ``threading.excepthook`` that logs the errors of ``HOUSEKEEPING_THREADS`` at
    DEBUG and hands every other thread's error to the hook it replaces. Installed once."""
    previous = threading.excepthook
    if getattr(previous, "dclr_housekeeping", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.thread is not None and args.thread.name in HOUSEKEEPING_THREADS:
            log.debug("Ray's %s thread stopped: %r", args.thread.name, args.exc_value)
            return
        previous(args)

    hook.dclr_housekeeping = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def units_that_fit(
    cluster: Mapping[str, float],
    cpus: float,
    gpus: float,
    *,
    what: str,
    reserved_cpus: float = DATA_CPUS,
) -> int:
    """How many units of ``cpus`` CPUs and ``gpus`` GPUs fit on ``cluster`` (Ray's
    ``cluster_resources()``) with ``reserved_cpus`` left for Ray Data.

    ``what`` describes one unit for the error message, e.g. '2 workers x 1 CPU'.

    Raises:
        ResourceError: not even one unit fits.
    """
    have_cpu = float(cluster.get("CPU", 0.0))
    have_gpu = float(cluster.get("GPU", 0.0))
    if have_cpu - reserved_cpus < cpus - 1e-9:
        raise ResourceError(
            f"{what} needs {cpus:g} CPUs and Ray Data {reserved_cpus:g} more to read the "
            f"shards; the Ray cluster has {have_cpu:g}. Lower ray.num_workers or "
            "ray.cpus_per_worker, or add CPUs"
        )
    if gpus and have_gpu < gpus - 1e-9:
        raise ResourceError(f"{what} needs {gpus:g} GPUs; the Ray cluster has {have_gpu:g}")
    fits = int((have_cpu - reserved_cpus) / cpus + 1e-9) if cpus > 0 else 1 << 30
    if gpus:
        fits = min(fits, int(have_gpu / gpus + 1e-9))
    return max(1, fits)


def storage_root(path: str) -> str:
    """A storage location usable from every process: URIs as given, local paths absolute."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def join(storage: str, *parts: str) -> str:
    """``storage``/``part``/... for a local path or a URI."""
    return "/".join([storage.rstrip("/"), *parts])


def unwrap_ray_error(err: BaseException) -> BaseException:
    """The exception a Ray task, actor or training worker raised, out of Ray's wrappers.

    Ray re-raises a remote error as a ``RayTaskError`` (its ``cause`` is the original) and Ray
    Train wraps worker errors again; a ``UserError`` found anywhere in that chain is returned as
    it was raised, so its message reaches the user as one line. Anything else is returned
    unchanged.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, UserError) and not _is_ray_wrapper(current):
            return current
        pending += [getattr(current, "cause", None), current.__cause__, current.__context__]
        pending += list(getattr(current, "worker_failures", {}).values())
    return err


K = TypeVar("K")


def log_stage_rate(stage: str, events: int, pieces: int, seconds: float, workers: int) -> None:
    """Log at INFO how fast a stage's distributed part ran: ``events`` in ``pieces`` tasks (or
    shards) on ``workers`` workers, from submitting the first to receiving the last result
    (Ray's start-up and the stage's checks before and after are not in it)."""
    log.info(
        "%s: %d events in %d pieces on %d workers in %.1f s of work (%.0f events/s)",
        stage,
        events,
        pieces,
        workers,
        seconds,
        events / max(seconds, 1e-9),
    )


def as_completed(
    pending: dict[Any, K], failed: Callable[[K, BaseException], Exception] | None = None
) -> Iterator[tuple[K, Any]]:
    """(key, result) of each Ray task in ``pending`` ({object ref: key}) as it finishes.

    When a task fails (its exception, a lost worker or node, an out-of-memory kill), every
    task still pending is cancelled; a ``UserError`` raised inside the task is raised as it
    was (``unwrap_ray_error``), anything else as ``failed(key, error)`` chained to the error,
    or unchanged without ``failed``. ``pending`` is emptied as tasks finish.
    """
    import ray

    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as err:
            for ref in pending:
                ray.cancel(ref)
            cause = unwrap_ray_error(err)
            if isinstance(cause, UserError):
                raise cause from None
            if failed is None:
                raise
            raise failed(key, err) from err
        yield key, result


def _is_ray_wrapper(err: BaseException) -> bool:
    """Ray's ``RayTaskError`` subclasses the cause's type; its message holds a traceback."""
    return any(cls.__name__ == "RayTaskError" for cls in type(err).__mro__)
