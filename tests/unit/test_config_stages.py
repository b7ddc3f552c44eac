"""Config sections of the later stages (gold, aggregate, student, evaluate, predict, embedding
teachers) and the run-directory layout with its id-hash splits."""

from __future__ import annotations

import pytest

from labelmill.config import ConfigError, parse_config
from labelmill.layout import (
    aggregate_file_uri,
    aggregate_labels_uri,
    eval_dir,
    id_unit,
    is_dev,
    is_gold_seed,
    predict_model_dir,
    predictions_uri,
    student_dir,
)


def tree(**extra: object) -> dict:
    return {
        "corpus": {"uri": "docs.parquet"},
        "taxonomy": {
            "labels": [{"name": "a", "description": "A."}, {"name": "b", "description": "B."}]
        },
        "teachers": [{"name": "t1", "kind": "vllm", "model": "/m"}],
        "output_uri": "s3://bucket/run/",
        **extra,
    }


def test_stage_defaults() -> None:
    config = parse_config(tree())
    assert config.aggregate.method == "dawid_skene"
    assert config.aggregate.teachers is None
    assert config.student.backbone == "all-minilm-l6-v2"
    assert config.student.num_workers == 1
    assert config.gold.seed_fraction == 0.0
    assert config.evaluate.n_bins == 10
    assert config.predict.concurrency == 1


def test_layout_paths_follow_output_uri_and_overrides() -> None:
    config = parse_config(tree())
    assert aggregate_labels_uri(config) == "s3://bucket/run/aggregate/labels"
    assert aggregate_file_uri(config, "summary.json") == "s3://bucket/run/aggregate/summary.json"
    assert student_dir(config) == "s3://bucket/run/student"
    assert eval_dir(config) == "s3://bucket/run/eval"
    assert predictions_uri(config) == "s3://bucket/run/predictions"
    assert predict_model_dir(config) == "s3://bucket/run/student"
    moved = parse_config(
        tree(student={"output_dir": "/models/s1"}, predict={"output_uri": "/preds"})
    )
    assert student_dir(moved) == "/models/s1"
    assert predict_model_dir(moved) == "/models/s1"
    assert predictions_uri(moved) == "/preds"


def test_embedding_teacher_kind() -> None:
    config = parse_config(
        tree(
            teachers=[
                {
                    "name": "emb",
                    "kind": "embedding",
                    "model": "all-minilm-l6-v2",
                    "embedding": {"calibration": "prior", "prior_rate": 0.2},
                }
            ]
        )
    )
    assert config.teachers[0].embedding.prior_rate == 0.2
    assert config.teachers[0].embedding.calibration == "prior"


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"aggregate": {"method": "vote"}}, "aggregate.method"),
        ({"aggregate": {"threshold": 1.0}}, "aggregate.threshold"),
        ({"aggregate": {"teacher_weights": {"t1": 1.5}}}, r"teacher_weights\['t1'\].*1.5"),
        ({"aggregate": {"iterations": 3}}, "aggregate.iterations"),
        ({"gold": {"seed_fraction": 1.0}}, "gold.seed_fraction"),
        ({"student": {"dev_fraction": 0.0}}, "student.dev_fraction"),
        ({"student": {"loss": "focal"}}, "student.loss"),
        ({"predict": {"batch_size": 0}}, "predict.batch_size"),
        ({"evaluate": {"n_bins": 1}}, "evaluate.n_bins"),
        (
            {
                "teachers": [
                    {"name": "e", "kind": "embedding", "model": "m", "base_url": "http://x"}
                ]
            },
            "teachers.0.base_url: Extra inputs are not permitted; base_url is only valid for kind "
            "'openai', this teacher is kind 'embedding'",
        ),
        (
            {
                "teachers": [
                    {"name": "e", "kind": "embedding", "model": "m", "embedding": {"prior_rate": 0}}
                ]
            },
            "prior_rate",
        ),
    ],
)
def test_stage_config_errors(extra: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(tree(**extra))


def test_id_splits_are_deterministic_and_proportional() -> None:
    ids = [f"pkg-{i}" for i in range(4000)]
    assert [is_gold_seed(i, 0.25) for i in ids] == [is_gold_seed(i, 0.25) for i in ids]
    share = sum(is_gold_seed(i, 0.25) for i in ids) / len(ids)
    assert 0.22 < share < 0.28
    dev = sum(is_dev(i, 0.1) for i in ids) / len(ids)
    assert 0.08 < dev < 0.12
    assert not any(is_gold_seed(i, 0.0) for i in ids)
    # Different salts: the seed and the dev split are independent draws.
    assert id_unit("pkg-1", "gold-seed") != id_unit("pkg-1", "student-dev")
    assert 0.0 <= id_unit("", "x") < 1.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: is_gold_seed("a", 1.0), r"seed_fraction must lie in \[0, 1\), got 1.0"),
        (lambda: is_gold_seed("a", -0.1), "got -0.1"),
        (lambda: is_dev("a", 0.0), r"dev_fraction must lie in \(0, 1\), got 0.0"),
    ],
)
def test_split_errors(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
