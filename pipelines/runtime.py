"""Connecting to Ray: an existing cluster, or an embedded local one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from labelmill.config import RayConfig
from labelmill.errors import JobError, LabelmillError


def as_job_error(error: BaseException, what: str) -> BaseException:
    """``error`` as labelmill reports it: our own errors unchanged, a Ray failure as a JobError.

    Ray wraps a task's exception (``RayTaskError``, also an instance of the task's exception
    class), so a config or input error raised inside a UDF keeps its kind and exit code. Any
    other Ray error (an actor or a node that died, an object that was lost) is the job failing,
    not a bug in labelmill: a JobError naming the stage. Everything else is returned as is (a
    bug surfaces with its traceback).
    """
    if isinstance(error, LabelmillError):
        return error
    from ray.exceptions import RayError

    if isinstance(error, RayError):
        return JobError(f"{what} failed in Ray: {type(error).__name__}: {error}")
    return error


@contextmanager
def ray_session(config: RayConfig) -> Iterator[None]:
    """Use the Ray already initialised in this process, or connect/start one for the block.

    ``address: null`` starts an embedded local Ray (stopped on exit); an address connects to a
    running cluster (``ray job submit`` sets RAY_ADDRESS, which ``auto`` picks up).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    # Ray Data's progress bars are noise in a batch job's log.
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    start_ray(config.address, config.num_cpus, config.object_store_memory_gb)
    try:
        yield
    finally:
        ray.shutdown()


def start_ray(
    address: str | None, num_cpus: int | None = None, object_store_memory_gb: float | None = None
) -> None:
    """The one ``ray.init`` of labelmill: join ``address``, or start an embedded local Ray.

    ``address: None`` starts a new embedded Ray even if another one runs on this machine
    (``address="local"``), with ``num_cpus`` (default: the machine's, at least 4, so that light
    stages can overlap an engine) and an optional object store size.
    """
    import ray

    kwargs: dict = {"ignore_reinit_error": True, "include_dashboard": False}
    if address is not None:
        kwargs["address"] = address
    else:
        kwargs["address"] = "local"
        kwargs["num_cpus"] = num_cpus or max(os.cpu_count() or 1, 4)
        if object_store_memory_gb is not None:
            kwargs["object_store_memory"] = int(object_store_memory_gb * 2**30)
    ray.init(**kwargs)
