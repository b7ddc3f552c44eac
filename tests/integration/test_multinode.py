"""Label, distill and batch predict on a local multi-node Ray cluster with no shared path for
artifacts: corpus and run directory on the S3 server, one LABELMILL_HOME (model cache) per node;
work spreads over the nodes, every row once, and the predicting nodes fetch the student from s3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_label_distill_and_predict_across_nodes_through_s3(
    s3_bucket: str, tiny_bert: Path, tmp_path: Path
) -> None:
    # Its own process: a ray.cluster_utils.Cluster cannot share a process with the session's
    # single-node Ray. It inherits AWS_ENDPOINT_URL and the credentials from the s3 fixture.
    run_uri = f"{s3_bucket}/multinode-run"
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "multinode_job.py"),
            str(tmp_path),
            str(tiny_bert),
            run_uri,
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(report_path.read_text())
    nodes = report["node_ids"]
    assert set(report["label_nodes"]) == {nodes["H"], nodes["A"]}  # encoder replicas on both
    assert report["train_nodes"] == [nodes["A"]]  # the student was trained on A only
    assert set(report["predict_nodes"]) == {nodes["H"], nodes["B"]}  # A had left
    corpus = sorted(report["corpus_ids"])
    assert sorted(report["vote_ids"]) == corpus  # every row exactly once
    assert sorted(report["prediction_ids"]) == corpus
    # each predicting node copied the student from s3 into its own cache, once; the training
    # node and the driver never needed a copy
    version = report["student_version"]
    caches = report["caches"]
    for name in ("H", "B"):
        assert list(caches[name]) == [version]
        assert caches[name][version]["source"] == f"{run_uri}/student"
    assert caches["A"] == {} and report["driver_cache"] == {}
    assert caches["H"][version]["pid"] != caches["B"][version]["pid"]
