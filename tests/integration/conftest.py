"""One local Ray and one tiny random Llama per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from labelmill.config import LabelmillConfig, parse_config

LABELS = [
    ("use::editing", "Used to edit content."),
    ("works-with::text", "Works with text."),
    ("works-with::audio", "Works with sound or music."),
    ("network::server", "Provides a network service."),
]

# Keyword corpora of the tests: label k is on when KEYWORDS[k] is in the text (every word is in
# the tiny BERT's vocabulary).
KEYWORDS = ["editor", "text", "music", "server"]
FILLER = "the a of to and is for with program tool library file data window viewer".split()  # noqa: SIM905
VOTE_TIME = datetime(2025, 1, 1, tzinfo=UTC)


def vote_record(doc_id: str, teacher: str, mode: str, version: str, **fields: Any) -> dict:
    """One teacher-vote row (labelmill.records.vote_schema) of a stand-in teacher."""
    return {
        "id": doc_id,
        "teacher": teacher,
        "model": f"model-{teacher}",
        "mode": mode,
        "labels": [],
        "probs": None,
        "raw_output": "",
        "error": None,
        "truncated": False,
        "prompt_tokens": 10,
        "output_tokens": 2,
        "prompt_hash": f"hash-{teacher}",
        "taxonomy_version": version,
        "created_at": VOTE_TIME,
        **fields,
    }


API_KEY_ENV = "LABELMILL_TEST_API_KEY"
API_KEY = "test-secret-key-0123456789"


@pytest.fixture(scope="session")
def s3_bucket() -> Iterator[str]:
    """A real S3 API on loopback (moto's server) with one bucket; -> ``s3://<bucket>``.

    Sets the standard AWS_* variables (AWS_ENDPOINT_URL among them) before the session's Ray
    starts (``ray_local`` depends on this), so Ray's workers inherit them.
    """
    import uuid

    import fsspec
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    bucket = f"labelmill-test-{uuid.uuid4().hex[:8]}"
    fsspec.filesystem("s3").mkdir(bucket)
    yield f"s3://{bucket}"
    server.stop()


@pytest.fixture(scope="session")
def ray_local(s3_bucket: str) -> Iterator[Any]:
    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    # Ray's worker processes (Serve replicas among them) inherit the environment of the
    # processes ray.init starts: the endpoint's auth test reads its key from here.
    os.environ.setdefault(API_KEY_ENV, API_KEY)
    # address="local": always a fresh local Ray, never one a concurrent process left running
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from labelmill.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-random-llama")


def job_config(corpus: dict, teachers: list[dict], output: Path, **extra: Any) -> LabelmillConfig:
    """A validated config over the 4-label test taxonomy."""
    tree = {
        "corpus": corpus,
        "taxonomy": {"labels": [{"name": n, "description": d} for n, d in LABELS]},
        "teachers": teachers,
        "output_uri": str(output),
        **extra,
    }
    return parse_config(tree)


def vllm_teacher(name: str, model: Path, mode: str, **extra: Any) -> dict:
    """A CPU vLLM teacher on the tiny model, sized for this 2-core machine."""
    return {
        "name": name,
        "kind": "vllm",
        "model": str(model),
        "mode": mode,
        "accelerator": "cpu",
        "max_model_len": 512,
        "max_output_tokens": 24,
        "batch_size": 8,
        "cpu_kvcache_gb": 1,
        **extra,
    }


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT encoder (1 layer, hidden 32) with a WordPiece tokenizer, built locally."""
    from labelmill.models import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


def export_tiny_student(
    tiny_bert: Path,
    out: Path,
    thresholds: list[float],
    lineage: dict[str, Any],
    seed: int = 3,
) -> Path:
    """Export a tiny random student over the LABELS taxonomy (head weights ~ N(0, 2))."""
    import torch
    from transformers import AutoTokenizer

    from labelmill.student.export import export_student
    from labelmill.student.model import build_student
    from labelmill.taxonomy import Taxonomy

    names = [name for name, _ in LABELS]
    taxonomy = Taxonomy(tuple(names), tuple(desc for _, desc in LABELS))
    torch.manual_seed(seed)
    model = build_student(str(tiny_bert), len(names), dict(enumerate(names)))
    with torch.no_grad():  # a visibly non-constant head, so probabilities differ per row
        model.classifier.weight.normal_(0.0, 2.0)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    return export_student(
        model,
        tokenizer,
        out,
        names,
        taxonomy.version,
        thresholds,
        lineage,
        {"micro_f1": 0.5},
        taxonomy_descriptions=list(taxonomy.descriptions),
    )
