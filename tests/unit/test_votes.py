"""Engine results -> vote records: every outcome keeps its row."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from labelmill.config import LabelConfig, TaxonomyConfig, VllmTeacherConfig
from labelmill.requests import TeacherPlan
from labelmill.taxonomy import Taxonomy
from labelmill.votes import score_vote, set_vote

TAX = Taxonomy.from_config(
    TaxonomyConfig(labels=[LabelConfig(name=n, description="d") for n in ("a", "b")])
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def plan(mode: str) -> TeacherPlan:
    return TeacherPlan(
        teacher=VllmTeacherConfig(name="t", kind="vllm", model="m", mode=mode),
        taxonomy=TAX,
        model_path="/m",
    )


def result(**kw) -> dict:
    base = {
        "id": "d1",
        "label_index": -1,
        "prep_error": None,
        "truncated": False,
        "raw_output": None,
        "prompt_tokens": 10,
        "output_tokens": 3,
        "finish_reason": "stop",
        "engine_error": None,
        "top_logprobs_json": None,
    }
    base.update(kw)
    return base


def test_set_vote_ok_with_lineage() -> None:
    row = set_vote(plan("set"), result(raw_output='["b","a","b"]'), NOW)
    assert row["labels"] == ["a", "b"] and row["error"] is None and row["probs"] is None
    assert row["teacher"] == "t" and row["mode"] == "set"
    assert row["prompt_hash"] == plan("set").prompt_hash
    assert row["taxonomy_version"] == TAX.version
    assert row["created_at"] == NOW and row["prompt_tokens"] == 10


@pytest.mark.parametrize(
    ("kw", "error", "labels"),
    [
        ({"prep_error": "empty text"}, "empty text", []),
        ({"engine_error": "ValueError: too long"}, "engine error: ValueError: too long", []),
        ({"raw_output": '["a",', "finish_reason": "length"}, "hit the token limit", ["a"]),
    ],
)
def test_set_vote_errors(kw: dict, error: str, labels: list[str]) -> None:
    row = set_vote(plan("set"), result(**kw), NOW)
    assert error in row["error"]
    assert row["labels"] == labels


def top(p_yes: float) -> str:
    return json.dumps({"yes": math.log(p_yes), "no": math.log(1 - p_yes)})


def test_score_vote_combines_labels() -> None:
    rows = [
        result(label_index=1, top_logprobs_json=top(0.2), raw_output="no", output_tokens=1),
        result(label_index=0, top_logprobs_json=top(0.9), raw_output="yes", output_tokens=1),
    ]
    row = score_vote(plan("score"), rows, NOW)
    assert row["probs"] == pytest.approx([0.9, 0.2])
    assert row["labels"] == ["a"]
    assert row["error"] is None
    assert row["prompt_tokens"] == 20 and row["output_tokens"] == 2
    assert json.loads(row["raw_output"]) == {"a": "yes", "b": "no"}


def test_score_vote_partial_failures_keep_the_rest() -> None:
    rows = [
        result(label_index=0, top_logprobs_json=json.dumps({"maybe": -0.1})),
        result(label_index=1, engine_error="boom"),
    ]
    row = score_vote(plan("score"), rows[:1], NOW)
    assert row["probs"] == [None, None]
    assert "a: no yes/no token" in row["error"] and "no result for labels ['b']" in row["error"]
    row = score_vote(plan("score"), rows, NOW)
    assert "b: engine error: boom" in row["error"]


def test_score_vote_prep_error_and_bad_input() -> None:
    row = score_vote(plan("score"), [result(prep_error="missing text")], NOW)
    assert row["error"] == "missing text" and row["probs"] is None and row["prompt_tokens"] == 0
    with pytest.raises(ValueError, match=r"at least one result"):
        score_vote(plan("score"), [], NOW)
    with pytest.raises(ValueError, match=r"label_index 5 out of range for 2 labels"):
        score_vote(plan("score"), [result(label_index=5, top_logprobs_json=top(0.5))], NOW)
