"""Progress on the console from real Ray jobs: the label job's bar, and the student's epochs
and steps forwarded from a Ray Train run by the RAY_TRAIN_CALLBACKS callback."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from conftest import job_config

from labelmill.config import StudentConfig
from labelmill.console import Console, use_console
from labelmill.pipelines.label import run_label_job
from labelmill.pipelines.progress import CALLBACKS_ENV, training_progress
from labelmill.student.training import training_schedule


def test_label_job_reports_rows_done_over_total(ray_local: Any, tiny_bert: Path, tmp_path: Path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": f"text editor {i}"}) + "\n" for i in range(12))
    )
    teacher = {
        "name": "tiny-embed", "kind": "embedding", "model": str(tiny_bert), "accelerator": "cpu",
        "batch_size": 4, "embedding": {"max_length": 16, "calibration": "prior"},
    }  # fmt: skip
    config = job_config({"uri": str(corpus)}, [teacher], tmp_path / "out")
    out = io.StringIO()
    with use_console(Console(out, tty=False, interval_s=3600)):
        run_label_job(config)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1  # the interval was never reached: only the closing line
    assert lines[0].startswith("  label tiny-embed: 12/12 docs (100%), ")
    assert " docs/s, in " in lines[0]


def test_training_progress_forwards_epochs_from_ray_train(ray_local: Any, tmp_path: Path):
    import ray.train
    from ray.train.torch import TorchTrainer

    def train_func(loop_config: dict[str, Any]) -> None:  # nested: pickled by value
        import ray.train

        for epoch in (1, 2):
            ray.train.report({"epoch": epoch, "dev_loss": 1.0 / epoch})

    student = StudentConfig(batch_size=4, epochs=2, min_steps=1, max_epochs=2, num_workers=1)
    epochs, total, _ = training_schedule(10, student)  # 3 steps an epoch, 2 epochs
    assert (epochs, total) == (2, 6)
    out = io.StringIO()
    with use_console(Console(out, tty=False, interval_s=3600)), training_progress("student"):
        assert os.environ[CALLBACKS_ENV] == "labelmill.pipelines.progress.TrainProgressCallback"
        TorchTrainer(
            train_func,
            train_loop_config={"student": student.model_dump(), "rows_train": 10},
            scaling_config=ray.train.ScalingConfig(num_workers=1),
            run_config=ray.train.RunConfig(storage_path=str(tmp_path / "train"), name="t"),
        ).fit()
    assert CALLBACKS_ENV not in os.environ
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("  student: 6/6 steps (100%), ")
    assert lines[0].endswith("epoch 2/2, dev loss 0.5000")
