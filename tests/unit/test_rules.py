"""The `rules` teacher's core: compiling, the vectorised matcher, vote rows, lineage hash."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from labelmill.records import vote_schema
from labelmill.rules import compile_rules, pattern_error, rule_votes, rules_hash

NAMES = ("corn", "grain", "other")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
LINEAGE = {"teacher": "kw", "prompt_hash": "h", "taxonomy_version": "v"}


def rules(abstain: bool = False):
    return compile_rules(
        {
            "corn": ([r"\bcorn\b", r"\bmaize\b"], []),
            "grain": ([r"\bgrains?\b", r"\bwheat\b"], [r"\bgrain of salt\b"]),
        },
        NAMES,
        abstain,
    )


def test_match_is_case_insensitive_any_pattern_and_exclusions() -> None:
    texts = [
        "Corn and WHEAT prices",  # corn, grain
        "maize",  # corn
        "popcorn, grainy",  # \b: neither
        "take it with a grain of salt",  # grain excluded
        "grains of maize",  # corn, grain
        None,  # null: no match
    ]
    expected = np.array(
        [
            [True, True, False],
            [True, False, False],
            [False, False, False],
            [False, False, False],
            [True, True, False],
            [False, False, False],
        ]
    )
    np.testing.assert_array_equal(rules().match(texts), expected)
    np.testing.assert_array_equal(rules().match(pa.array(texts)), expected)
    assert rules().match([]).shape == (0, 3)


def test_vote_rows_schema_labels_and_errors() -> None:
    ids = pa.array(["a", "b", "c", "d"])
    texts = pa.array(["corn and wheat", "nothing here", None, "  "], pa.string())
    table = rule_votes(ids, texts, rules(), LINEAGE, NOW)
    assert table.schema == vote_schema()
    rows = table.to_pylist()
    assert [r["labels"] for r in rows] == [["corn", "grain"], [], [], []]
    assert [r["error"] for r in rows] == [None, None, "missing text", "empty text"]
    assert [r["probs"] for r in rows] == [None] * 4
    assert {(r["model"], r["mode"], r["teacher"], r["prompt_hash"]) for r in rows} == {
        ("rules", "set", "kw", "h")
    }
    assert {(r["prompt_tokens"], r["output_tokens"], r["truncated"]) for r in rows} == {
        (0, 0, False)
    }


def test_abstain_when_no_match_gives_all_null_probs() -> None:
    ids = pa.array(["a", "b", "c"])
    texts = pa.array(["corn", "nothing", None], pa.string())
    rows = rule_votes(ids, texts, rules(abstain=True), LINEAGE, NOW).to_pylist()
    assert [r["probs"] for r in rows] == [None, [None, None, None], None]
    assert [r["labels"] for r in rows] == [["corn"], [], []]
    assert rows[2]["error"] == "missing text"  # an error row stays an error, not an abstention


def test_non_string_text_column_errs_every_row() -> None:
    rows = rule_votes(pa.array(["a", "b"]), pa.array([1, 2]), rules(), LINEAGE, NOW).to_pylist()
    assert [r["error"] for r in rows] == ["text is a int, not a string"] * 2
    assert [r["labels"] for r in rows] == [[], []]


def test_compile_errors_name_the_label() -> None:
    with pytest.raises(ValueError, match=r"rule labels \['zz'\] are not in the taxonomy"):
        compile_rules({"zz": (["x"], [])}, NAMES)
    with pytest.raises(ValueError, match=r"rule 'corn': pattern '\(unclosed'"):
        compile_rules({"corn": (["(unclosed"], [])}, NAMES)
    with pytest.raises(ValueError, match=r"rule 'corn': needs at least one pattern"):
        compile_rules({"corn": ([], [])}, NAMES)


def test_pattern_error() -> None:
    assert pattern_error(r"\bcorn\b") is None
    assert "missing )" in (pattern_error("(corn") or "")
    assert "empty pattern" in (pattern_error("") or "")
    assert pattern_error(r"(?=corn)") is not None  # look-ahead: not RE2


def test_rules_hash_is_canonical() -> None:
    a = rules_hash({"rules": {"x": ["1"], "y": ["2"]}, "abstain": False}, "v1")
    b = rules_hash({"abstain": False, "rules": {"y": ["2"], "x": ["1"]}}, "v1")
    assert a == b and len(a) == 16
    assert a != rules_hash({"rules": {"x": ["1"], "y": ["2"]}, "abstain": True}, "v1")
    assert a != rules_hash({"rules": {"x": ["1"], "y": ["2"]}, "abstain": False}, "v2")
