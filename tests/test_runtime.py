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
