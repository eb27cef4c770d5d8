"""``runtime.as_completed``: results as tasks finish; a failed task stops the loop at once
(the rest are cancelled) and surfaces the task's own user error, or the caller's error for
anything else."""

from __future__ import annotations

import time

import pytest

from distributed_clr.errors import UserError
from distributed_clr.runtime import as_completed

pytestmark = pytest.mark.ray


class _BadValueError(UserError):
    pass


def _work(value: int) -> int:
    if value == 3:
        raise _BadValueError("value 3 is not allowed")
    if value == 4:
        raise RuntimeError("a bug")
    if value < 0:
        time.sleep(20)
    return value * value


def test_results_arrive_with_their_keys(ray_session: None) -> None:
    import ray

    task = ray.remote(num_cpus=1)(_work)
    pending = {task.remote(v): f"key{v}" for v in (0, 1, 2)}
    assert dict(as_completed(pending)) == {"key0": 0, "key1": 1, "key2": 4}
    assert not pending


def test_a_user_error_is_raised_as_it_was_without_waiting_for_the_rest(
    ray_session: None,
) -> None:
    import ray

    task = ray.remote(num_cpus=1)(_work)
    slow = task.remote(-1)
    pending = {task.remote(3): 3, slow: -1}
    start = time.monotonic()
    with pytest.raises(_BadValueError, match="value 3 is not allowed"):
        list(as_completed(pending))
    assert time.monotonic() - start < 15


def test_other_failures_become_the_callers_error(ray_session: None) -> None:
    import ray

    task = ray.remote(num_cpus=1)(_work)

    def failed(key: int, err: BaseException) -> Exception:
        return ValueError(f"task {key} failed")

    with pytest.raises(ValueError, match="task 4 failed") as caught:
        list(as_completed({task.remote(4): 4}, failed))
    assert "a bug" in str(caught.value.__cause__)
    with pytest.raises(ray.exceptions.RayTaskError, match="a bug"):
        list(as_completed({task.remote(4): 4}))


def test_housekeeping_thread_errors_are_kept_out_of_the_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging
    import threading

    from distributed_clr import runtime

    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)
    monkeypatch.setattr(logging.getLogger("distributed_clr"), "level", logging.INFO)
    runtime.quiet_ray_logging()
    runtime.quiet_ray_logging()  # installed once, not chained onto itself

    def fail() -> None:
        raise RuntimeError("state API unavailable")

    for name in ("PlacementGroupCleanerMonitor", "a-thread-of-the-job"):
        thread = threading.Thread(target=fail, name=name)
        thread.start()
        thread.join()
    err = capsys.readouterr().err
    assert (
        err.count("RuntimeError: state API unavailable") == 1
    )  # the job's own thread still reports
    assert "a-thread-of-the-job" in err
    assert "PlacementGroupCleanerMonitor" not in err


def test_the_cleaner_stop_traceback_stays_out_after_ray_train_reconfigures_logging(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the Ray Train controller does after the worker setup hook: a dictConfig of
    ``ray.train`` (DEBUG, a console handler, existing loggers kept), which resets the levels of
    the loggers under it. The cleaner's error stays out; other Ray Train errors still show."""
    import logging
    import logging.config
    import sys

    from distributed_clr import runtime

    cleaner = logging.getLogger("ray.train.v2._internal.callbacks.placement_group_callback")
    other = logging.getLogger("ray.train.v2._internal.execution.controller")
    saved = {
        name: (lg.level, list(lg.handlers), lg.propagate, list(lg.filters))
        for name, lg in (("ray.train", logging.getLogger("ray.train")), ("cleaner", cleaner))
    }
    try:
        runtime.quiet_ray_logging()
        runtime.quiet_ray_logging()  # one filter, however often the hook runs
        assert sum(isinstance(f, runtime._Housekeeping) for f in cleaner.filters) == 1
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"console": {"class": "logging.StreamHandler", "stream": sys.stderr}},
                "loggers": {
                    "ray.train": {"level": "DEBUG", "handlers": ["console"], "propagate": False}
                },
            }
        )
        try:
            raise TimeoutError("Get timed out: some object(s) not ready.")
        except TimeoutError:
            cleaner.exception("Failed to stop PlacementGroupCleaner gracefully.")
            other.error("a real Ray Train error")
        err = capsys.readouterr().err
        assert "PlacementGroupCleaner" not in err
        assert "Traceback" not in err
        assert "a real Ray Train error" in err
    finally:
        for name, (level, handlers, propagate, filters) in saved.items():
            lg = logging.getLogger("ray.train") if name == "ray.train" else cleaner
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate = propagate
            lg.filters[:] = filters


def _worker_ray_address() -> str | None:
    import os

    return os.environ.get("RAY_ADDRESS")


def test_workers_know_their_own_cluster(ray_session: None) -> None:
    """The worker setup hook pins RAY_ADDRESS to the worker's own cluster (Ray's helpers that
    look a cluster up would otherwise take the newest on the machine); the driver is left as
    it was, so that the commands it starts do not join this session."""
    import os

    import ray

    address = ray.get_runtime_context().gcs_address
    remote = ray.remote(num_cpus=0)(_worker_ray_address)
    assert ray.get(remote.remote()) == address
    assert os.environ.get("RAY_ADDRESS") in (None, "")


def test_a_local_session_reaches_its_workers_without_a_runtime_environment(
    ray_session: None,
) -> None:
    """A local session names the setup hook in the environment its processes inherit, not in
    a runtime environment (which would keep every job off the workers Ray prestarts): the job
    has no runtime environment, yet its workers ran the hook, and the driver's own environment
    no longer names the hook afterwards."""
    import os

    import ray

    from distributed_clr import runtime

    if os.environ.get("RAY_ADDRESS"):
        pytest.skip("the tests joined a running cluster (RAY_ADDRESS); no local session")
    variable = runtime._inherited_hook_variable()
    assert variable is not None, "this Ray no longer names its setup-hook variable"
    assert os.environ.get(variable) is None
    assert not ray.get_runtime_context().runtime_env
    assert ray.get(ray.remote(num_cpus=0)(_worker_ray_address).remote()) == (
        ray.get_runtime_context().gcs_address
    )
