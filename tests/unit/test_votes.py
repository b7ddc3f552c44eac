"""Engine results -> vote records: every outcome keeps its row."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from labelmill.config import LabelConfig, TaxonomyConfig, VllmTeacherConfig
from labelmill.records import OLDEST_US, counting_vote_rows, to_micros, votes_that_count
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


def test_votes_that_count_latest_then_lineage() -> None:
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    # teacher 0: the later vote counts; teacher 1: same time, the greater lineage JSON counts;
    # teacher 2: a vote without a time loses to one with a time
    teachers = [0, 0, 1, 1, 2, 2]
    times = [t1, t0, t0, t0, None, t0]
    lineage = ["a", "b", '{"p": "2"}', '{"p": "1"}', "z", "a"]
    assert votes_that_count(teachers, times, lineage) == {0: 0, 1: 2, 2: 5}
    # the choice does not depend on row order
    order = [5, 3, 1, 4, 0, 2]
    picked = votes_that_count(
        [teachers[i] for i in order], [times[i] for i in order], [lineage[i] for i in order]
    )
    assert {t: order[i] for t, i in picked.items()} == {0: 0, 1: 2, 2: 5}
    assert votes_that_count([], [], []) == {}
    with pytest.raises(ValueError, match="one entry per vote, got 2, 1, 2"):
        votes_that_count([0, 1], [t0], ["a", "b"])


def test_counting_vote_rows_per_document_and_teacher() -> None:
    oldest = int(OLDEST_US)
    doc = [0, 0, 0, 1, 1, 1, 1, 2, 2]
    teacher = [0, 0, 1, 0, 0, 1, 1, 0, 0]
    created = [5, 7, 1, 3, 3, oldest, 0, 4, 4]
    lineage = ["b", "a", "x", '{"p": "1"}', '{"p": "2"}', "z", "a", "same", "same"]
    # doc 0 / t0: the later row 1; doc 1 / t0: same time, the greater lineage (row 4);
    # doc 1 / t1: a missing time is the oldest (row 6); doc 2: exact ties keep the earlier row
    assert counting_vote_rows(doc, teacher, created, lineage).tolist() == [1, 2, 4, 6, 7]
    order = np.array([8, 4, 0, 6, 2, 7, 1, 5, 3])
    picked = counting_vote_rows(
        np.array(doc)[order], np.array(teacher)[order], np.array(created)[order],
        np.array(lineage)[order],
    )  # fmt: skip
    assert sorted(order[picked].tolist()) == [1, 2, 4, 6, 8]  # row 8 now comes first
    assert counting_vote_rows([], [], [], []).tolist() == []
    with pytest.raises(ValueError, match="one entry per vote, got 2, 2, 1, 2"):
        counting_vote_rows([0, 0], [0, 1], [1], ["a", "b"])
    with pytest.raises(ValueError, match="must be 1-D"):
        counting_vote_rows([[0]], [0], [1], ["a"])


def test_to_micros() -> None:
    assert to_micros(None) == int(OLDEST_US)
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005
    assert to_micros(datetime(1970, 1, 1, 0, 0, 2)) == 2_000_000  # naive: UTC
