"""One local Ray and one tiny random Llama per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
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
