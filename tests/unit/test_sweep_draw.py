"""The taxonomy sweep's draws (bench/sweep.py): bounds, prevalence, reproducibility, templates."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "sweep.py"
_SPEC = importlib.util.spec_from_file_location("labelmill_bench_sweep", _PATH)
sweep = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = sweep  # dataclasses look their module up by name
_SPEC.loader.exec_module(sweep)

N = 200


def _table() -> list[list[str]]:
    """200 packages: 22 common tags (4.5-33.5 %), 6 rare ones on 4 packages each (2 %), and
    tags no draw may take: too frequent, too rare, excluded facets, a placeholder."""
    rows: list[list[str]] = [[] for _ in range(N)]
    for i in range(N):
        rows[i] += [f"use::common-{j}" for j in range(22) if i % (j + 3) == 0]
        rows[i] += [f"works-with::rare-{j}" for j in range(6) if 10 + 4 * j <= i < 14 + 4 * j]
        if i % 5:
            rows[i].append("role::program")  # 80 %: above the band
        if i % 4 == 0:
            rows[i] += ["suite::gnome", "scope::utility", "made-of::html", "use::TODO"]
        if i == 7:
            rows[i] += ["special::not-yet-tagged", "game::lonely"]  # 0.5 %: below the band
    return rows


def _draws(seed: int = 0, count: int = 6) -> list:
    # 199 of 200 documents: each rare tag keeps 3 or 4 of its 4 packages (1.5-2.0 %)
    return [sweep.draw_one(_table(), i, seed, n_docs=N - 1, n_ref=1) for i in range(count)]


def test_label_count_within_bounds_and_eligible_only() -> None:
    counts = set()
    for draw in _draws():
        counts.add(len(draw.labels))
        assert 8 <= len(draw.labels) <= 20
        assert draw.labels == sorted(set(draw.labels))
        assert all(label.split("::")[0] in ("use", "works-with") for label in draw.labels)
        assert "use::TODO" not in draw.labels
    assert len(counts) > 1  # the count is drawn, not fixed


def test_prevalence_in_band_with_rare_labels() -> None:
    table = _table()
    for draw in _draws():
        corpus = [table[i] for i in draw.corpus]
        for label in draw.labels:
            share = sum(label in tags for tags in corpus) / len(corpus)
            assert share == pytest.approx(draw.prevalence[label])
            assert 0.01 <= share <= 0.40
        rare = sum(p < 0.03 for p in draw.prevalence.values())
        assert rare >= max(2, math.ceil(len(draw.labels) / 4))


def test_same_seed_same_draw_other_seed_other_draw() -> None:
    first, again, other = _draws(0), _draws(0), _draws(1)
    for a, b in zip(first, again, strict=True):
        assert a.labels == b.labels
        np.testing.assert_array_equal(a.corpus, b.corpus)
        np.testing.assert_array_equal(a.reference, b.reference)
    assert [d.labels for d in first] != [d.labels for d in other]
    # draw i does not depend on how many draws are asked for
    assert sweep.draw_one(_table(), 3, 0, N - 1, 1).labels == first[3].labels


def test_corpus_and_reference_are_disjoint() -> None:
    draw = sweep.draw_one(_table(), 0, 0, n_docs=150, n_ref=30, bounds=sweep.Bounds(min_rare=0))
    assert len(draw.corpus) == 150 and len(draw.reference) == 30
    assert not set(draw.corpus.tolist()) & set(draw.reference.tolist())


def test_too_few_eligible_tags_is_an_error() -> None:
    with pytest.raises(ValueError, match="eligible tags"):
        sweep.draw_one([["use::a"], ["use::b"], []], 0, 0, n_docs=2, n_ref=1)


def test_descriptions_come_from_facet_templates() -> None:
    assert sweep.describe("works-with::audio") == "Works with audio."
    assert sweep.describe("use::gameplaying") == "Used for gameplaying."
    assert sweep.describe("interface::text-mode") == "Has a text mode interface."
    assert sweep.describe("implemented-in::c++") == "Implemented in c++."
    assert sweep.describe("devel::lang:perl") == "For software development: the perl language."
    assert sweep.describe("works-with::software:source") == "Works with software source."
    assert sweep.describe("security::firewall") == "Security: firewall."  # generic template
    draw = _draws(count=1)[0]
    assert draw.descriptions == [sweep.describe(label) for label in draw.labels]


def test_eligible_and_restrict() -> None:
    assert sweep.eligible("use::editing")
    for tag in ("suite::gnome", "special::x", "made-of::html", "scope::utility", "use::TODO"):
        assert not sweep.eligible(tag)
    gold = sweep.restrict([["use::a", "role::b"], ["role::b"]], np.array([0, 1]), ["use::a"])
    assert gold == [["use::a"], []]  # an empty list is gold too


def test_best_f1_threshold() -> None:
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    cut = sweep.best_f1_threshold(y, p)  # all four top scores: F1 6/7
    assert 0.2 < cut < 0.6
    assert sweep.best_f1_threshold(np.zeros(3), np.array([0.1, 0.2, 0.3])) == 0.5


def test_summary_line_format() -> None:
    def row(student: float, auc: float) -> dict:
        figures = {"micro_f1": student, "macro_f1": 0.1, "mean_roc_auc": auc}
        base = {"micro_f1": 0.5, "macro_f1": 0.1, "mean_roc_auc": 0.8}
        return {"systems": {"student": figures, "best teacher": base, "aggregate": base}}

    line = sweep.summary_line([row(0.55, 0.85), row(0.45, 0.75)])
    assert line == (
        "sweep: draws=2 student_minus_teacher_min=-0.050 student_minus_aggregate_min=-0.050 "
        "student_auc_minus_aggregate_auc_min=-0.050"
    )
