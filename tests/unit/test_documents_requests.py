"""Text checks, content ids, truncation and request building."""

from __future__ import annotations

import pytest
from fakes import WordTokenizer

from labelmill.config import LabelConfig, TaxonomyConfig, VllmTeacherConfig
from labelmill.documents import check_text, content_id, truncate_to_tokens
from labelmill.requests import (
    PLACEHOLDER_PROMPT,
    TeacherPlan,
    answer_token_ids,
    build_requests,
    document_token_budget,
)
from labelmill.taxonomy import Taxonomy

TAX = Taxonomy.from_config(
    TaxonomyConfig(labels=[LabelConfig(name=n, description="d") for n in ("a", "b", "c")])
)


def plan(mode: str = "set", max_model_len: int = 256) -> TeacherPlan:
    teacher = VllmTeacherConfig(
        name="t",
        kind="vllm",
        model="/m",
        mode=mode,
        max_model_len=max_model_len,
        max_output_tokens=16,
    )
    return TeacherPlan(teacher=teacher, taxonomy=TAX, model_path="/m")


def test_content_id_is_stable_and_distinct() -> None:
    assert content_id("abc") == content_id(b"abc")
    assert content_id("abc").startswith("sha256:")
    assert len(content_id("abc")) == len("sha256:") + 32
    assert content_id("abc") != content_id("abd")


@pytest.mark.parametrize(
    ("value", "text", "error"),
    [
        ("hello", "hello", None),
        (b"caf\xc3\xa9", "café", None),
        (None, "", "missing text"),
        ("   \n", "", "empty text"),
        (b"ab\xff", "", "invalid UTF-8 at byte 2"),
        ("x\udcff", "", "invalid UTF-8 (lone surrogate at char 1)"),
        (42, "", "text is a int, not a string"),
    ],
)
def test_check_text(value, text: str, error: str | None) -> None:
    checked = check_text(value)
    assert (checked.text, checked.error) == (text, error)


def test_truncate_to_tokens() -> None:
    tok = WordTokenizer()
    assert truncate_to_tokens("a b c", tok, 5) == ("a b c", 3, False)
    assert truncate_to_tokens("a b c d e", tok, 2) == ("a b", 5, True)
    with pytest.raises(ValueError, match=r"max_tokens must be >= 1, got 0"):
        truncate_to_tokens("a", tok, 0)


def test_budget_is_context_minus_overhead() -> None:
    tok = WordTokenizer()
    p = plan("set", 256)
    # The prompt of a one-word document is the overhead plus that word.
    overhead = len(tok.encode(build_requests("d", "x", p, tok, budget=1000)[0]["prompt"])) - 1
    assert document_token_budget(p, tok) == 256 - overhead - 16 - 8
    greedy = TeacherPlan(
        teacher=p.teacher.model_copy(update={"max_output_tokens": 240}),
        taxonomy=TAX,
        model_path="/m",
    )
    with pytest.raises(ValueError, match=r"max_model_len 256 leaves"):
        document_token_budget(greedy, tok)


def test_set_request_and_truncation() -> None:
    tok = WordTokenizer()
    rows = build_requests("d1", "one two three four", plan("set"), tok, budget=2)
    assert len(rows) == 1
    row = rows[0]
    assert row["label_index"] == -1 and row["prep_error"] is None and row["truncated"] is True
    assert "one two" in row["prompt"] and "three" not in row["prompt"]
    assert row["prompt"].endswith("<assistant>")


def test_score_requests_one_per_label() -> None:
    rows = build_requests("d1", "short text", plan("score"), WordTokenizer(), budget=50)
    assert [r["label_index"] for r in rows] == [0, 1, 2]
    assert all(r["truncated"] is False for r in rows)
    assert 'Does the label "b" apply' in rows[1]["prompt"]


def test_bad_text_gives_one_placeholder_with_error() -> None:
    rows = build_requests("d1", b"\xff", plan("score"), WordTokenizer(), budget=50)
    assert len(rows) == 1
    assert rows[0]["prep_error"] == "invalid UTF-8 at byte 0"
    assert rows[0]["prompt"] == PLACEHOLDER_PROMPT


def test_no_tokenizer_cuts_characters() -> None:
    rows = build_requests("d1", "x" * 100, plan("set"), None, budget=10)
    assert rows[0]["prompt"] is None
    assert rows[0]["truncated"] is True
    assert "x" * 30 in rows[0]["messages"][1]["content"]
    assert "x" * 31 not in rows[0]["messages"][1]["content"]


def test_answer_token_ids() -> None:
    tok = WordTokenizer()
    yes, no = answer_token_ids(tok)
    assert tok.decode(yes).split() and set(tok.decode(yes).split()) <= {"yes", "Yes", "YES"}
    assert set(tok.decode(no).split()) <= {"no", "No", "NO"}

    class Empty(WordTokenizer):
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [1, 2]

    with pytest.raises(ValueError, match=r"no single-token yes/no answers"):
        answer_token_ids(Empty())
