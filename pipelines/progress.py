"""The student's training progress (epoch, step) on the driver's console, from Ray Train.

Ray Train runs the loop in worker processes and its reports reach only the train controller
actor. Ray Train (v2) builds the callbacks named in ``RAY_TRAIN_CALLBACKS`` when a trainer is
constructed, on the driver, and ships them to the controller: :class:`TrainProgressCallback`
is one. Built on the driver, it picks up the queue that :func:`training_progress` opened; in
the controller it forwards each report's epoch and rows trained there, and a driver thread
turns them into the console's progress bar. The worker loop reports once per epoch, so the
step count moves an epoch at a time.

Progress is decoration: a failure anywhere here never fails training.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray.train.v2._internal.execution.callback import ControllerCallback, ReportCallback

from labelmill.console import Progress, current
from labelmill.console import progress as console_progress

CALLBACKS_ENV = "RAY_TRAIN_CALLBACKS"
_CALLBACK_PATH = "labelmill.pipelines.progress.TrainProgressCallback"
_QUEUE: list[Any] = []  # the queue of the training_progress block running now, if any


def schedule(loop_config: dict[str, Any]) -> tuple[int, int]:
    """(epochs at most, optimizer steps per epoch) of the train loop, by the rule it runs."""
    from labelmill.config import StudentConfig
    from labelmill.student.training import training_schedule

    settings = StudentConfig.model_validate(loop_config["student"])
    epochs, total, _ = training_schedule(int(loop_config["rows_train"]), settings)
    return epochs, total // max(epochs, 1)  # epochs 0: the linear probe alone


def report_event(loop_config: dict[str, Any], metrics: list[dict[str, Any]]) -> dict | None:
    """What the driver needs from one report of all workers (None when it lacks an epoch)."""
    first = metrics[0] if metrics else {}
    if "epoch" not in first:
        return None
    epochs, per_epoch = schedule(loop_config)
    return {
        "epoch": int(first["epoch"]),
        "epochs": epochs,
        "steps_per_epoch": per_epoch,
        "dev_loss": first.get("dev_loss"),
    }


class TrainProgressCallback(ReportCallback, ControllerCallback):
    """Forwards each epoch's report to the driver's queue (see the module docstring).

    Callbacks named in ``RAY_TRAIN_CALLBACKS`` are Ray Train's internal kind (not wrapped like
    ``RunConfig(callbacks=...)``): the run's loop config comes from ``after_controller_start``
    and each report from ``after_report(training_report, metrics)``.
    """

    def __init__(self) -> None:
        self._queue = _QUEUE[-1] if _QUEUE else None
        self._loop_config: dict[str, Any] = {}

    def after_controller_start(self, train_run_context: Any) -> None:
        self._loop_config = dict(getattr(train_run_context, "train_loop_config", None) or {})

    def after_report(self, training_report: Any = None, metrics: Any = None, **_: Any) -> None:
        if self._queue is None:
            return
        try:
            event = report_event(self._loop_config, list(metrics or []))
            if event is not None:
                self._queue.put_nowait(event)
        except Exception:  # progress must never fail the training run
            pass


def apply_event(bar: Progress, event: dict[str, Any]) -> None:
    """Move the bar to the end of the reported epoch: step = epoch x steps per epoch."""
    total = event["epochs"] * event["steps_per_epoch"]
    if bar.total != total:
        bar.set_total(total)
    bar.update(event["epoch"] * event["steps_per_epoch"] - bar.done)
    loss = event.get("dev_loss")
    shown = f", dev loss {loss:.4f}" if isinstance(loss, int | float) else ""
    bar.note(f"epoch {event['epoch']}/{event['epochs']}{shown}")


@contextmanager
def training_progress(desc: str = "student") -> Iterator[None]:
    """A progress bar for the Ray Train run(s) inside the block, when a console is current."""
    if current() is None or os.environ.get(CALLBACKS_ENV):
        yield  # nobody to show it to, or the user set their own callbacks: leave them
        return
    from ray.util.queue import Empty, Queue

    queue = Queue(actor_options={"num_cpus": 0})  # must not wait for a CPU the workers hold
    stop = threading.Event()
    with console_progress(desc, None, unit="steps") as bar:

        def drain() -> None:
            while not stop.is_set():
                try:
                    apply_event(bar, queue.get(timeout=1.0))
                except Empty:
                    continue
                except Exception:  # the queue actor went away: stop quietly
                    return

        thread = threading.Thread(target=drain, daemon=True, name="train progress")
        _QUEUE.append(queue)
        os.environ[CALLBACKS_ENV] = _CALLBACK_PATH
        thread.start()
        try:
            yield
        finally:
            os.environ.pop(CALLBACKS_ENV, None)
            _QUEUE.remove(queue)
            stop.set()
            thread.join(timeout=3.0)
            try:
                while True:  # the last epoch's report may still be queued
                    apply_event(bar, queue.get_nowait())
            except Exception:  # Empty, or the queue actor is gone
                pass
            queue.shutdown()
