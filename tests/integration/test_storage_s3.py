"""The run directory on a real S3 API (moto's server on loopback, found through AWS_ENDPOINT_URL):
`labelmill run` writes every stage's files there, then `labelmill predict` and the HTTP endpoint
read the student back from s3 through this node's model cache.

Teachers: two OpenAI-compatible teachers against the deterministic stand-in server (a label
applies when the last word of its name is in the text), so the label stage is real and cheap.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
from pathlib import Path
from typing import Any

import fsspec
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import FILLER, LABELS, export_tiny_student, job_config
from openai_standin import StandinServer

from labelmill.artifacts import FETCH_RECORD, artifact_version, cache_root
from labelmill.pipelines.cli import main

pytestmark = pytest.mark.integration

NAMES = [name for name, _ in LABELS]
# The stand-in's keyword of each label: the last word of its name.
WORDS = [name.rsplit(":", 1)[-1] for name in NAMES]
N_DOCS = 48


def _corpus(uri: str) -> dict[str, str]:
    """N_DOCS keyword documents with gold tags (what the stand-in will answer), on s3."""
    rng = random.Random(1)
    ids, texts, tags = [], [], []
    for n in range(N_DOCS):
        on = [rng.random() < 0.35 for _ in WORDS]
        words = rng.sample(FILLER, 4) + [w for w, flag in zip(WORDS, on, strict=True) if flag]
        rng.shuffle(words)
        ids.append(f"doc-{n:02d}")
        texts.append(" ".join(words))
        tags.append([name for name, flag in zip(NAMES, on, strict=True) if flag])
    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "wb") as handle:
        pq.write_table(pa.table({"id": ids, "text": texts, "tags": tags}), handle)
    return dict(zip(ids, texts, strict=True))


def _teacher(name: str, base_url: str, mode: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "openai",
        "model": "standin",
        "base_url": base_url,
        "mode": mode,
        "batch_size": 8,
        "concurrency": 1,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_run_predict_and_serve_with_the_run_directory_on_s3(
    ray_local: Any, s3_bucket: str, tiny_bert: Path, tmp_path: Path
) -> None:
    run_uri = f"{s3_bucket}/run-e2e"
    texts = _corpus(f"{s3_bucket}/corpus/corpus.parquet")
    with StandinServer() as standin:
        config = job_config(
            {"uri": f"{s3_bucket}/corpus/corpus.parquet", "gold_column": "tags"},
            [_teacher("t-set", standin.base_url, "set")],  # score mode: test_label_openai
            Path("unused"),
            output_uri=run_uri,
            gold={"seed_fraction": 0.3},
            student={
                "backbone": str(tiny_bert),
                "epochs": 2,
                "min_steps": 0,
                "batch_size": 8,
                "max_length": 16,
                "dev_fraction": 0.3,
                "fast_path": False,
                "exclude_eval_gold": False,
            },
            predict={"batch_size": 8, "concurrency": 1},
            ray={"light_stage_cpus": 0.25},
        )
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(config.model_dump(mode="json")), encoding="utf-8")
        assert main(["run", str(path)]) == 0

    fs, root = fsspec.core.url_to_fs(run_uri)
    written = {p[len(root) + 1 :] for p in fs.find(root)}
    for expected in (
        "aggregate/summary.json",
        "aggregate/reliability.json",
        "student/labelmill.json",
        "student/model.safetensors",
        "eval/metrics.json",
        "eval/report.html",
        "run_summary.json",
    ):
        assert expected in written, sorted(written)
    for prefix in ("votes/t-set/part-", "aggregate/labels/part-"):
        assert any(name.startswith(prefix) for name in written), prefix
    # Ray Train's checkpoints went to the same storage and were removed after the run
    assert not any(name.startswith("student-train/distill-") for name in written)
    assert not Path("unused").exists()
    assert json.loads(fs.cat_file(f"{root}/eval/metrics.json"))["systems"]["student"]

    # predict: the driver reads the version on s3; the actor fetches it into this node's cache
    student_uri = f"{run_uri}/student"
    version = artifact_version(student_uri)
    # training is deterministic, so an earlier session on this machine may have cached this
    # very version (from another bucket): remove it so that this predict's fetch is the one seen
    shutil.rmtree(cache_root() / version, ignore_errors=True)
    assert main(["predict", str(path)]) == 0
    rows = pq.read_table(f"{root}/predictions", filesystem=fs).to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(texts)
    assert {r["model_version"] for r in rows} == {version}
    entry = cache_root() / version
    record = json.loads((entry / FETCH_RECORD).read_text())
    assert record["source"] == student_uri and record["version"] == version

    # the endpoint, built on the s3 URI, answers with that version and the same scores
    from ray import serve

    from labelmill.serve.app import build_app
    from labelmill.serve_config import parse_serve_config

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        args = {"model_dir": student_uri, "replicas": {"num_cpus": 0.0, "torch_threads": 1}}
        serve.run(build_app(parse_serve_config(args)), name="s3", route_prefix="/s3")
        doc = sorted(texts)[0]
        response = httpx.post(
            f"http://127.0.0.1:{port}/s3/v1/classify", json={"text": texts[doc]}, timeout=60
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == version
        scores = body["results"][0]["scores"]
        predicted = next(r for r in rows if r["id"] == doc)["probs"]
        np.testing.assert_allclose([scores[n] for n in NAMES], predicted, atol=1e-4)

        # a new export at the same URI is a new version: redeploying serves it, never the
        # stale cache entry (which stays, keyed by the old version)
        export_tiny_student(tiny_bert, student_uri, [0.5] * 4, {}, seed=9)  # type: ignore[arg-type]
        new_version = artifact_version(student_uri)
        assert new_version != version
        serve.run(build_app(parse_serve_config(args)), name="s3", route_prefix="/s3")
        response = httpx.post(
            f"http://127.0.0.1:{port}/s3/v1/classify", json={"text": texts[doc]}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == new_version
        assert (cache_root() / new_version / FETCH_RECORD).is_file() and entry.is_dir()
    finally:
        serve.delete("s3")
        serve.shutdown()
