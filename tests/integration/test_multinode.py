"""The label job and batch predict on a two-node Ray cluster: work on both nodes, rows once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import export_tiny_student

HERE = Path(__file__).resolve().parent


def test_label_and_predict_spread_over_two_nodes(tiny_bert: Path, tmp_path: Path) -> None:
    # Its own process: a ray.cluster_utils.Cluster cannot share a process with the session's
    # single-node Ray.
    student = export_tiny_student(tiny_bert, tmp_path / "student", [0.5] * 4, {})
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "multinode_job.py"),
            str(tmp_path),
            str(tiny_bert),
            str(student),
        ],
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["nodes"]) == 2
    assert set(report["label_nodes"]) == set(report["nodes"])  # encoder replicas on both nodes
    assert set(report["predict_nodes"]) == set(report["nodes"])  # student replicas on both nodes
    corpus = sorted(report["corpus_ids"])
    assert sorted(report["vote_ids"]) == corpus  # every row exactly once
    assert sorted(report["prediction_ids"]) == corpus
