"""Scoring systems against gold, the metrics.json document, and the HTML report (no Ray)."""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import pyarrow as pa
import pytest

from labelmill.evaluation import (
    add_lift,
    build_metrics_document,
    format_quality_table,
    gold_matrix,
    probs_matrix,
    score_system,
    to_json,
)
from labelmill.pipelines.evaluate import collect_held_out, select_held_out
from labelmill.report import render_report

NAMES = ["a", "b"]
# Four documents; the system abstains on the last one.
GOLD = [["a"], ["b"], ["a", "b"], []]
PROBS = [[0.9, 0.45], [0.6, 0.4], [0.8, 0.7], None]


def toy_system(kind: str = "teacher", n_bins: int = 2) -> dict:
    y = gold_matrix(GOLD, NAMES)
    return score_system(kind, y, probs_matrix(PROBS, 2), 0.5, NAMES, n_bins=n_bins)


def test_gold_and_probs_matrices() -> None:
    assert gold_matrix(GOLD, NAMES).tolist() == [[1, 0], [0, 1], [1, 1], [0, 0]]
    p = probs_matrix([[0.1, None], None], 2)
    assert p[0, 0] == 0.1 and np.isnan(p[0, 1]) and np.isnan(p[1]).all()


def test_score_toy_system_by_hand() -> None:
    s = toy_system()
    # Scored rows 0..2; predictions at 0.5: a=[1,1,1], b=[0,0,1] vs gold a=[1,0,1], b=[0,1,1].
    assert s["kind"] == "teacher" and s["n_scored"] == 3 and s["coverage"] == 0.75
    assert s["per_label"]["a"]["precision"] == pytest.approx(2 / 3)
    assert s["per_label"]["a"]["recall"] == 1.0
    assert s["per_label"]["a"]["f1"] == pytest.approx(0.8)
    assert s["per_label"]["b"]["precision"] == 1.0
    assert s["per_label"]["b"]["recall"] == 0.5
    assert s["per_label"]["b"]["f1"] == pytest.approx(2 / 3)
    assert [s["per_label"][n]["support"] for n in NAMES] == [2, 2]
    assert s["micro_precision"] == s["micro_recall"] == s["micro_f1"] == pytest.approx(0.75)
    assert s["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    # AUC: a separates perfectly; b ranks one positive (0.4) below the negative (0.45).
    assert s["per_label"]["a"]["roc_auc"] == 1.0 and s["per_label"]["b"]["roc_auc"] == 0.5
    assert s["mean_roc_auc"] == pytest.approx(0.75)
    # Bins [0, .5): p=.45,.4 y=0,1 -> |.5 - .425|; [.5, 1]: p=.9,.6,.8,.7 y=1,0,1,1 -> 0.
    assert s["ece"] == pytest.approx(2 * 0.075 / 6)
    assert s["reliability"]["counts"] == [2, 4]
    assert s["thresholds"] == [0.5, 0.5]


def test_per_label_thresholds_change_predictions() -> None:
    y = gold_matrix(GOLD, NAMES)
    s = score_system("student", y, probs_matrix(PROBS, 2), [0.7, 0.4], NAMES, n_bins=2)
    # a at 0.7: [1,0,1] -> perfect; b at 0.4: [1,1,1] vs [0,1,1] -> P 2/3, R 1.
    assert s["per_label"]["a"]["f1"] == 1.0
    assert s["per_label"]["b"]["precision"] == pytest.approx(2 / 3)
    assert s["thresholds"] == [0.7, 0.4]


def test_inner_null_excludes_the_row_for_that_system() -> None:
    y = gold_matrix(GOLD, NAMES)
    probs = probs_matrix([[0.9, None], [0.6, 0.4], [0.8, 0.7], [0.1, 0.1]], 2)
    assert score_system("teacher", y, probs, 0.5, NAMES)["n_scored"] == 3


def test_nan_becomes_null_in_metrics_json() -> None:
    y = gold_matrix([["a"], ["a"]], NAMES)  # label b has no positives: its AUC is undefined
    scored = score_system("aggregate", y, [[0.9, 0.1], [0.7, 0.2]], 0.5, NAMES)
    nothing = score_system("teacher", y, probs_matrix([None, None], 2), 0.5, NAMES)
    assert nothing["n_scored"] == 0 and math.isnan(nothing["micro_f1"])
    doc = build_metrics_document(
        NAMES, "v1", 2, {"agg": scored, "t": nothing}, {"x": math.nan}, "2024-01-01T00:00:00"
    )
    text = to_json(doc)
    assert "NaN" not in text and "Infinity" not in text
    parsed = json.loads(text)
    assert parsed["format_version"] == 1 and parsed["n_documents"] == 2
    assert parsed["taxonomy"] == {"names": NAMES, "version": "v1"}
    assert parsed["systems"]["agg"]["per_label"]["b"]["roc_auc"] is None
    assert parsed["systems"]["agg"]["per_label"]["a"]["roc_auc"] is None  # one class only
    assert parsed["systems"]["agg"]["micro_f1"] == 1.0
    assert parsed["systems"]["t"]["micro_f1"] is None and parsed["systems"]["t"]["ece"] is None
    assert parsed["systems"]["t"]["coverage"] == 0.0
    assert parsed["lineage"] == {"x": None}
    assert None in parsed["systems"]["agg"]["reliability"]["accuracy"]  # empty bins


def test_report_has_table_two_plots_and_lineage() -> None:
    doc = build_metrics_document(
        NAMES,
        "v1",
        4,
        {"t1": toy_system("teacher"), "aggregate": toy_system("aggregate")},
        {"aggregate": {"method": "<majority>"}},
        "2024-01-01T00:00:00",
    )
    page = render_report(doc)
    assert page.startswith("<!DOCTYPE html>")
    assert "<table class='summary'>" in page and "<td>t1</td>" in page
    assert "0.750" in page  # micro-F1 of the toy system
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "&lt;majority&gt;" in page  # lineage is escaped
    table = format_quality_table(doc)
    assert len(table.splitlines()) == 3 and "3/4" in table


def test_lift_over_the_best_teacher_by_hand() -> None:
    y = gold_matrix(GOLD, NAMES)
    weak = score_system("teacher", y, probs_matrix(PROBS, 2), 0.85, NAMES)  # only doc 0's a
    strong = toy_system("teacher")  # micro-F1 0.75
    student = score_system("student", y, probs_matrix(PROBS, 2), 0.4, NAMES)
    doc = add_lift(
        build_metrics_document(
            NAMES, "v1", 4, {"weak": weak, "strong": strong, "student": student}, {}, "t"
        )
    )
    assert doc["best_teacher"] == "strong"
    assert doc["systems"]["strong"]["lift"]["micro_f1"] == 0.0
    # student at 0.4 predicts a,b / a,b / a,b on the scored docs: tp 4, fp 2, fn 0 -> 8/10
    assert student["micro_f1"] == pytest.approx(0.8)
    assert doc["systems"]["student"]["lift"]["micro_f1"] == pytest.approx(0.8 - 0.75)
    per_label = doc["systems"]["weak"]["lift"]["per_label"]
    # weak, label a: tp 1, fn 1 -> F1 2/3; strong, label a: tp 2, fp 1 -> 4/5
    assert per_label["a"] == pytest.approx(2 / 3 - 4 / 5)
    page = render_report(doc)
    assert "micro lift" in page and "+0.050" in page and "<code>strong</code>" in page
    assert "threshold" in page and "0.850" in page  # per-label thresholds are shown
    assert "lift: micro-F1 minus the best teacher's (strong)" in format_quality_table(doc)
    no_teacher = add_lift(build_metrics_document(NAMES, "v1", 4, {"s": student}, {}, "t"))
    assert no_teacher["best_teacher"] is None
    # a teacher that scored fewer documents is no yardstick, however high its F1 there
    narrow = score_system("teacher", y, probs_matrix([PROBS[0], None, None, None], 2), 0.5, NAMES)
    assert narrow["micro_f1"] == pytest.approx(1.0) and narrow["n_scored"] == 1
    systems = {"narrow": narrow, "strong": strong, "student": student}
    assert add_lift(build_metrics_document(NAMES, "v1", 4, systems, {}, "t"))["best_teacher"] == (
        "strong"
    )


def test_quality_table_shows_the_baseline_with_its_lift() -> None:
    y = gold_matrix(GOLD, NAMES)
    # at 0.85 only doc 0's "a" is predicted: tp 1, fp 0, fn 3 -> micro-F1 2/5; macro (2/3 + 0) / 2.
    # ECE, 10 bins: |.9-1| + |.6-0| + |.8-1| + 2 |.425-.5| (.45 and .4) + |.7-1| = 1.35 over 6.
    seed_only = score_system("baseline", y, probs_matrix(PROBS, 2), 0.85, NAMES)
    systems = {"strong": toy_system("teacher"), "seed-only": seed_only}
    doc = add_lift(build_metrics_document(NAMES, "v1", 4, systems, {}, "t"))
    assert doc["best_teacher"] == "strong"
    lines = format_quality_table(doc).splitlines()
    assert lines[2].split() == ["seed-only", "baseline", "0.400", "0.333", "0.225", "0.750",
                                "3/4", "-0.350"]  # fmt: skip
    assert lines[-1] == "lift: micro-F1 minus the best teacher's (strong), all at tuned thresholds"


def test_error_paths() -> None:
    y = gold_matrix(GOLD, NAMES)
    p = probs_matrix(PROBS, 2)
    with pytest.raises(ValueError, match=r"kind must be one of .* got 'oracle'"):
        score_system("oracle", y, p, 0.5, NAMES)
    with pytest.raises(ValueError, match=r"must both have shape \(N, 3\)"):
        score_system("teacher", y, p, 0.5, [*NAMES, "c"])
    with pytest.raises(ValueError, match=r"thresholds must lie in \[0, 1\], got 1.5"):
        score_system("teacher", y, p, 1.5, NAMES)
    with pytest.raises(ValueError, match=r"probs values must lie in \[0, 1\]"):
        score_system("teacher", y, p * 3, 0.5, NAMES)
    with pytest.raises(ValueError, match=r"row 0 have 3 entries, expected 2"):
        probs_matrix([[0.1, 0.2, 0.3]], 2)
    with pytest.raises(ValueError, match=r"gold label 'zzz' is not in the taxonomy \(row 0\)"):
        gold_matrix([["zzz"]], NAMES)
    with pytest.raises(
        ValueError, match=r"gold labels\[0\] must be a list of label names, got 'a'"
    ):
        gold_matrix(["a"], NAMES)
    with pytest.raises(ValueError, match=r"at least one scored system"):
        build_metrics_document(NAMES, "v1", 4, {}, {}, "now")
    with pytest.raises(ValueError, match=r"per_label keys do not match"):
        build_metrics_document(["a"], "v1", 4, {"t": toy_system()}, {}, "now")
    with pytest.raises(ValueError, match=r"lacks key 'systems'"):
        render_report({"taxonomy": {}, "n_documents": 0, "lineage": {}, "created_at": "now"})


def test_held_out_selection_and_none_left() -> None:
    batch = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "gold": pa.array([["x"], None, [], ["y"]], pa.list_(pa.string())),
            "gold_seed": [False, False, False, True],
        }
    )
    held = collect_held_out([select_held_out(batch)], "run/aggregate/labels", 0.2)
    assert held["id"].to_pylist() == ["a", "c"]  # no gold and seed rows dropped; [] is gold
    seed_only = select_held_out(batch.filter(pa.array([False, True, False, True])))
    with pytest.raises(ValueError, match=r"no held-out gold documents in 'u'.*now 0.9"):
        collect_held_out([seed_only], "u", 0.9)
