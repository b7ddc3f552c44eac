"""Output parsing: valid sets, invalid labels, duplicates, truncation, empties, yes/no."""

from __future__ import annotations

import math

import pytest

from labelmill.config import LabelConfig, TaxonomyConfig
from labelmill.parsing import parse_label_set, yes_probability
from labelmill.taxonomy import Taxonomy

TAX = Taxonomy.from_config(
    TaxonomyConfig(labels=[LabelConfig(name=n, description="d") for n in ("a", "b", "c")])
)


@pytest.mark.parametrize(
    ("raw", "labels", "error"),
    [
        ('["c","a"]', ["a", "c"], None),
        ('["a","a","b"]', ["a", "b"], None),
        ("[]", [], None),
        ('```json\n["b"]\n```', ["b"], None),
        ('["a","zz"]', ["a"], r"labels not in the taxonomy: \['zz'\]"),
        ('["a",', ["a"], r"unparseable model output"),
        ('no json here "a"', [], r"unparseable model output"),
        ("", [], r"empty model output"),
        (None, [], r"empty model output"),
        ('{"a": 1}', [], r"JSON dict, not an array"),
        ("[1, 2]", [], r"non-string items"),
    ],
)
def test_parse_label_set(raw, labels, error) -> None:
    parsed = parse_label_set(raw, TAX)
    assert parsed.labels == labels
    if error is None:
        assert parsed.error is None
    else:
        assert parsed.error is not None
        assert __import__("re").search(error, parsed.error)


def test_truncated_output_says_so() -> None:
    parsed = parse_label_set('[\n"b",\n"a",\n"b",\n"a', TAX, finish_reason="length")
    assert parsed.labels == ["a", "b"]  # complete names before the cut, in taxonomy order
    assert "hit the token limit" in parsed.error


def test_yes_probability_renormalises() -> None:
    top = {"Yes": math.log(0.3), " yes": math.log(0.1), "No": math.log(0.2), "maybe": math.log(0.4)}
    assert yes_probability(top, ["yes"], ["no"]) == pytest.approx(0.4 / 0.6)


def test_yes_probability_none_without_answer_tokens() -> None:
    assert yes_probability({"maybe": -0.1}, ["yes"], ["no"]) is None
    assert yes_probability({}, ["yes"], ["no"]) is None
    assert yes_probability({"no": 0.0}, ["yes"], ["no"]) == 0.0
