"""Kill the label job midway, rerun it: every row exactly once, the finished parts not redone.

The teacher is the OpenAI-compatible stand-in (a real HTTP server) holding each answer 0.2 s, so
that the kill lands midway. Resume works on the written vote parts whatever the engine; a vLLM
teacher here would cost two engine start-ups (about a minute on CPU) for the same check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml
from conftest import LABELS
from openai_standin import StandinServer

from labelmill.config import load_config
from labelmill.pipelines.label import run_label_job
from labelmill.pipelines.votes_io import read_votes


def test_killed_job_resumes_without_duplicates_or_gaps(ray_local, tmp_path) -> None:
    with StandinServer(delay_s=0.2) as standin:
        _kill_and_resume(ray_local, standin, tmp_path)


def _kill_and_resume(ray_local, standin: StandinServer, tmp_path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as handle:
        for i in range(48):
            handle.write(
                json.dumps({"id": f"doc{i:02d}", "text": f"Document {i} edits text."}) + "\n"
            )
    output = tmp_path / "out"
    config_path = tmp_path / "job.yaml"
    teacher = {
        "name": "tiny-set",
        "kind": "openai",
        "model": "standin",
        "base_url": standin.base_url,
        "mode": "set",
        "batch_size": 4,
        "max_output_tokens": 64,
    }
    config_path.write_text(
        yaml.safe_dump(
            {
                "corpus": {"uri": str(corpus)},
                "taxonomy": {"labels": [{"name": n, "description": d} for n, d in LABELS]},
                "teachers": [teacher],
                "output_uri": str(output),
                "ray": {"address": ray_local.get_runtime_context().gcs_address},
            }
        ),
        encoding="utf-8",
    )
    parts = output / "votes" / "tiny-set"
    process = subprocess.Popen(
        [sys.executable, "-m", "labelmill.pipelines.cli", "label", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if parts.exists() and len(list(parts.glob("part-*.parquet"))) >= 2:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the job finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    written_before = read_votes(str(output), "tiny-set", ["id"]).num_rows
    assert 0 < written_before < 48

    summary = run_label_job(load_config(config_path))
    stats = summary.teachers[0]
    assert stats.rows_resumed >= written_before
    assert stats.rows_resumed + stats.rows_labeled == 48
    ids = read_votes(str(output), "tiny-set", ["id"])["id"].to_pylist()
    assert sorted(ids) == [f"doc{i:02d}" for i in range(48)]  # each exactly once
