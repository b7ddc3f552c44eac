"""Tests for labelmill.metrics (checked against scikit-learn, which is a test-only dependency)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from labelmill.metrics import (
    ReliabilityCurve,
    expected_calibration_error,
    precision_recall_f1,
    reliability_curve,
    roc_auc_per_label,
)

NAN = np.nan


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_f1_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = (rng.random((200, 6)) < [0.5, 0.1, 0.02, 0.0, 0.3, 0.9]).astype(int)
    y_pred = (rng.random((200, 6)) < [0.5, 0.1, 0.0, 0.05, 0.3, 0.9]).astype(int)
    got = precision_recall_f1(y_true, y_pred)
    for avg in ("micro", "macro"):
        kw = {"average": avg, "zero_division": 0}
        assert got[f"{avg}_precision"] == pytest.approx(precision_score(y_true, y_pred, **kw))
        assert got[f"{avg}_recall"] == pytest.approx(recall_score(y_true, y_pred, **kw))
        assert got[f"{avg}_f1"] == pytest.approx(f1_score(y_true, y_pred, **kw))
    kw = {"average": None, "zero_division": 0}
    np.testing.assert_allclose(got["precision"], precision_score(y_true, y_pred, **kw))
    np.testing.assert_allclose(got["recall"], recall_score(y_true, y_pred, **kw))
    np.testing.assert_allclose(got["f1"], f1_score(y_true, y_pred, **kw))
    np.testing.assert_array_equal(got["support"], y_true.sum(axis=0))


def test_precision_recall_f1_excludes_nan_rows_and_accepts_bool() -> None:
    y_true = np.array([[1, 0], [0, 1], [1, 1]])
    y_pred = np.array([[1.0, 1.0], [NAN, NAN], [0.0, 1.0]])
    got = precision_recall_f1(y_true, y_pred)
    # Remaining rows: label 0 tp=1 fn=1 -> P=1, R=0.5; label 1 tp=1 fp=1 -> P=0.5, R=1.
    np.testing.assert_allclose(got["precision"], [1.0, 0.5])
    np.testing.assert_allclose(got["recall"], [0.5, 1.0])
    assert got["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    same = precision_recall_f1(y_true[[0, 2]].astype(bool), y_pred[[0, 2]].astype(bool))
    assert same["macro_f1"] == pytest.approx(got["macro_f1"])


def test_expected_calibration_error_by_hand() -> None:
    y_true = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])
    probs = np.array([[0.95, 0.15], [0.85, 0.55], [0.12, 0.58], [NAN, NAN]])
    # Row 3 is excluded. 6 cells, n_bins=2: bin [0, 0.5): probs 0.15, 0.12, targets 0, 0
    # -> conf 0.135, acc 0, gap 0.135 (2 cells); bin [0.5, 1]: 0.95, 0.85, 0.55, 0.58 with
    # targets 1, 1, 1, 0 -> conf 0.7325, acc 0.75, gap 0.0175 (4 cells).
    # ECE = 2/6 * 0.135 + 4/6 * 0.0175 = 0.045 + 0.011666... = 0.0566666...
    assert expected_calibration_error(y_true, probs, n_bins=2) == pytest.approx(0.17 / 3)
    curve = reliability_curve(y_true, probs, n_bins=2)
    assert isinstance(curve, ReliabilityCurve)
    np.testing.assert_allclose(curve.centers, [0.25, 0.75])
    np.testing.assert_allclose(curve.accuracy, [0.0, 0.75])
    np.testing.assert_allclose(curve.confidence, [0.135, 0.7325])
    np.testing.assert_array_equal(curve.counts, [2, 4])


def test_reliability_curve_edges_and_empty_bins() -> None:
    y_true = np.array([[1, 0, 1]])
    probs = np.array([[1.0, 0.0, 0.25]])
    centers, accuracy, confidence, counts = reliability_curve(y_true, probs, n_bins=4)
    np.testing.assert_array_equal(counts, [1, 1, 0, 1])  # 1.0 falls in the last bin
    assert np.isnan(accuracy[2]) and np.isnan(confidence[2])
    np.testing.assert_allclose(centers, [0.125, 0.375, 0.625, 0.875])
    assert expected_calibration_error(y_true, probs, n_bins=4) == pytest.approx(0.75 / 3)
    # One bin: acc 2/3, conf 1.25/3 -> gap 0.25
    assert expected_calibration_error(y_true, probs, n_bins=1) == pytest.approx(0.25)
    assert np.isnan(expected_calibration_error(y_true, np.full((1, 3), NAN)))


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    y_true = (rng.random((300, 5)) < [0.3, 0.5, 0.05, 0.0, 1.0]).astype(int)
    scores = np.round(rng.random((300, 5)) + 0.3 * y_true, 1)  # rounding creates many ties
    auc = roc_auc_per_label(y_true, scores)
    for k in range(3):
        assert auc[k] == pytest.approx(roc_auc_score(y_true[:, k], scores[:, k]))
    assert np.isnan(auc[3]) and np.isnan(auc[4])  # only one class present


def test_roc_auc_by_hand_and_nan_rows() -> None:
    y_true = np.array([[1], [0], [1], [0], [1]])
    scores = np.array([[0.9], [0.4], [0.4], [0.1], [NAN]])
    # Positives {0.9, 0.4} vs negatives {0.4, 0.1}: pairs won 1 + 1 + 0.5 (tie) + 1 = 3.5 of 4.
    np.testing.assert_allclose(roc_auc_per_label(y_true, scores), [3.5 / 4])
    np.testing.assert_allclose(roc_auc_per_label(y_true[:4], -5.0 * scores[:4]), [0.5 / 4])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: precision_recall_f1(np.zeros(3), np.zeros(3)), r"ndim=1"),
        (lambda: precision_recall_f1(np.zeros((2, 2)), np.zeros((2, 3))), r"\(2, 2\).*\(2, 3\)"),
        (lambda: precision_recall_f1(np.full((2, 2), 0.5), np.zeros((2, 2))), "only 0/1"),
        (lambda: precision_recall_f1(np.full((2, 2), NAN), np.zeros((2, 2))), "only 0/1"),
        (lambda: precision_recall_f1(np.zeros((2, 2)), np.full((2, 2), 0.5)), "y_pred must"),
        (lambda: expected_calibration_error(np.zeros((2, 2)), np.full((2, 2), 1.1)), r"\[0, 1\]"),
        (lambda: expected_calibration_error(np.zeros((2, 2)), np.zeros((2, 2)), 0), "n_bins"),
        (lambda: reliability_curve(np.zeros((2, 2)), np.zeros((2, 2)), 2.5), "n_bins"),
        (lambda: reliability_curve(np.zeros((2, 2)), np.zeros((3, 2))), "does not match"),
        (lambda: roc_auc_per_label(np.zeros((2, 2)), np.full((2, 2), np.inf)), "infinite"),
        (lambda: roc_auc_per_label(np.zeros((2, 2)), np.zeros((2, 2, 1))), "ndim=3"),
        (lambda: roc_auc_per_label(np.zeros((2, 2)), np.array([["a", "b"]])), "numeric"),
    ],
)
def test_value_errors(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
