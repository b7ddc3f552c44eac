"""Tests for labelmill.selection (pure numpy + scikit-learn, no Ray)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

from labelmill.selection import (
    disagreement_scores,
    label_issue_cells,
    label_issue_scores,
    margin_scores,
    out_of_fold_probs,
    priority_scores,
    select_diverse,
    select_random,
    uncertainty_scores,
)

NAN = np.nan

# ---------------------------------------------------------------- uncertainty and margin


def test_uncertainty_by_hand() -> None:
    probs = np.array([[0.5, 0.5], [0.0, 1.0], [0.5, 0.0], [0.25, 0.25]])
    # H(0.5) = 1, H(0) = H(1) = 0; row 2: (1 + 0) / 2 = 0.5
    # H(0.25) = -0.25 log2 0.25 - 0.75 log2 0.75 = 0.5 + 0.75 * 0.4150375 = 0.8112781
    h25 = 0.5 - 0.75 * np.log2(0.75)
    np.testing.assert_allclose(uncertainty_scores(probs), [1.0, 0.0, 0.5, h25])
    assert uncertainty_scores(np.zeros((0, 3))).shape == (0,)


def test_uncertainty_keeps_unit_range_for_float32() -> None:
    probs = np.random.default_rng(0).random((50, 4)).astype(np.float32)
    out = uncertainty_scores(probs)
    assert out.shape == (50,) and np.all((out >= 0) & (out <= 1))


def test_margin_by_hand() -> None:
    thresholds = np.array([0.5, 0.8])
    probs = np.array([[0.5, 0.0], [1.0, 0.0], [0.9, 0.6]])
    # row 0: label 0 sits on its threshold -> distance 0 -> score 1
    # row 1: |1 - 0.5| / 0.5 = 1, |0 - 0.8| / 0.8 = 1 -> min 1 -> score 0
    # row 2: |0.9 - 0.5| / 0.5 = 0.8, |0.6 - 0.8| / 0.8 = 0.25 -> min 0.25 -> score 0.75
    np.testing.assert_allclose(margin_scores(probs, thresholds), [1.0, 0.0, 0.75])


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (np.array([0.1, 0.2, 0.3]), r"shape=\(3,\)"),
        (np.array([[0.1, 1.5]]), r"1\.5"),
        (np.array([[0.1, NAN]]), "NaN"),
        (np.zeros((2, 0)), r"\(2, 0\)"),
    ],
)
def test_uncertainty_rejects(probs: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        uncertainty_scores(probs)


def test_margin_rejects() -> None:
    probs = np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match=r"\(2,\), got \(3,\)"):
        margin_scores(probs, np.array([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"1\.2"):
        margin_scores(probs, np.array([0.5, 1.2]))
    with pytest.raises(ValueError, match=r"2\.0"):
        margin_scores(np.array([[0.5, 2.0]]), np.array([0.5, 0.5]))


# ---------------------------------------------------------------- disagreement


def test_disagreement_by_hand() -> None:
    votes = np.array(
        [
            # label 0: (1, 1, 0) -> pairs (a,b)=0, (a,c)=1, (b,c)=1 -> 2/3; label 1 unanimous -> 0
            [[1, 1], [1, 1], [0, 1]],
            # label 0: b abstains -> one pair |1 - 0| = 1; label 1: one observer -> skipped
            [[1, NAN], [NAN, NAN], [0, 1]],
            # soft: label 0 (0.2, 0.5, 0.9) -> (0.3 + 0.7 + 0.4) / 3 = 1.4 / 3; label 1 -> 0
            [[0.2, 0.0], [0.5, 0.0], [0.9, 0.0]],
            # fewer than 2 observers on every label -> 0
            [[NAN, NAN], [1, 0], [NAN, NAN]],
        ]
    )
    # doc scores: (2/3 + 0) / 2 = 1/3; 1 (only label 0 counts); (1.4/3 + 0) / 2 = 0.7/3; 0
    np.testing.assert_allclose(disagreement_scores(votes), [1 / 3, 1.0, 0.7 / 3, 0.0])


def test_disagreement_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    votes = rng.random((30, 5, 3))
    votes[rng.random(votes.shape) < 0.3] = NAN
    expected = np.zeros(30)
    for n in range(30):
        per_label = []
        for k in range(3):
            seen = votes[n, :, k][~np.isnan(votes[n, :, k])]
            if seen.size >= 2:
                pairs = list(itertools.combinations(seen, 2))
                per_label.append(np.mean([abs(a - b) for a, b in pairs]))
        expected[n] = np.mean(per_label) if per_label else 0.0
    np.testing.assert_allclose(disagreement_scores(votes), expected, atol=1e-12)


def test_disagreement_rejects() -> None:
    with pytest.raises(ValueError, match="ndim=2"):
        disagreement_scores(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"2\.0"):
        disagreement_scores(np.full((1, 2, 1), 2.0))


# ---------------------------------------------------------------- label issues

# Class 0: p = [0.9, 0.3, 0.1, 0.8], labels = [1, 1, 0, 0]
#   t1 = (0.9 + 0.3) / 2 = 0.6;  t0 = mean(1 - p | label 0) = (0.9 + 0.2) / 2 = 0.55
#   d0 (1): 0.9 >= 0.6 -> score 0, not an issue
#   d1 (1): deficit (0.6 - 0.3) / 0.6 = 0.5; issue: 0.3 < 0.6 and 1 - 0.3 = 0.7 >= 0.55
#   d2 (0): confidence 0.9 >= 0.55 -> score 0, not an issue
#   d3 (0): deficit (0.55 - 0.2) / 0.55 = 7/11; issue: 0.2 < 0.55 and 0.8 >= 0.6
# Class 1: p = [1, 1, 1, 0.2], every label 1 -> t1 = 3.2 / 4 = 0.8, t0 defaults to 0.5
#   d3 (1): deficit (0.8 - 0.2) / 0.8 = 0.75; issue: 0.2 < 0.8 and 0.8 >= 0.5 (the default)
# Documents: max over labels -> [0, 0.5, 0, max(7/11, 0.75) = 0.75]
ISSUE_P = np.array([[0.9, 1.0], [0.3, 1.0], [0.1, 1.0], [0.8, 0.2]])
ISSUE_Y = np.array([[1, 1], [1, 1], [0, 1], [0, 1]])


def test_label_issue_scores_by_hand() -> None:
    np.testing.assert_allclose(label_issue_scores(ISSUE_P, ISSUE_Y), [0.0, 0.5, 0.0, 0.75])
    # class 0 alone: d3's cell score 7/11 is visible
    np.testing.assert_allclose(
        label_issue_scores(ISSUE_P[:, :1], ISSUE_Y[:, :1]), [0.0, 0.5, 0.0, 7 / 11]
    )


def test_label_issue_cells_by_hand() -> None:
    expected = np.array([[False, False], [True, False], [False, False], [True, True]])
    np.testing.assert_array_equal(label_issue_cells(ISSUE_P, ISSUE_Y), expected)


def test_label_issue_zero_threshold_gives_zero() -> None:
    # every positive has p = 0 -> t1 = 0: no deficit possible, no division by zero
    out = label_issue_scores(np.zeros((3, 1)), np.ones((3, 1)))
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0])


def test_label_issue_rejects() -> None:
    with pytest.raises(ValueError, match=r"\(4, 2\), got \(4, 1\)"):
        label_issue_scores(ISSUE_P, ISSUE_Y[:, :1])
    with pytest.raises(ValueError, match=r"0\.5"):
        label_issue_cells(ISSUE_P, np.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        label_issue_scores(np.array([[NAN], [0.5]]), np.array([[1], [0]]))


# ---------------------------------------------------------------- out-of-fold probabilities


def separable_problem(n_docs: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n_docs, 5))
    y = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0, np.zeros(n_docs, bool)], axis=1)
    return x, y.astype(int)


def test_out_of_fold_separable_and_constant_class() -> None:
    x, y = separable_problem()
    oof = out_of_fold_probs(x, y, n_folds=5, seed=0)
    assert oof.shape == (200, 3) and np.all((oof >= 0) & (oof <= 1))
    assert roc_auc_score(y[:, 0], oof[:, 0]) > 0.95
    assert roc_auc_score(y[:, 1], oof[:, 1]) > 0.95
    # class 2 is all 0: each fold trains on 160 rows -> (0 + 1) / (160 + 2)
    np.testing.assert_allclose(oof[:, 2], 1 / 162)


def test_out_of_fold_never_sees_the_row() -> None:
    # one-hot identity features: a row's own coordinate is 0 in every other row, so its
    # out-of-fold prediction cannot depend on its label (every row of a test fold gets the same
    # intercept-only value), while an in-sample fit memorizes the labels.
    n_docs = 20
    x = np.eye(n_docs)
    y = (np.arange(n_docs) % 2).reshape(-1, 1)
    oof = out_of_fold_probs(x, y, n_folds=5, seed=3, C=100.0)
    for _, test in KFold(n_splits=5, shuffle=True, random_state=3).split(x):
        assert np.ptp(oof[test, 0]) < 1e-12
    assert np.all(np.abs(oof[:, 0] - 0.5) < 0.3)
    in_sample = LogisticRegression(C=100.0, max_iter=200).fit(x, y[:, 0]).predict_proba(x)[:, 1]
    assert np.all(np.abs(in_sample - y[:, 0]) < 0.2)


def test_flipped_label_is_flagged() -> None:
    x, y = separable_problem()
    # a point far on the positive side of class 0, labeled negative
    flip = int(np.argmax(x[:, 0]))
    y[flip, 0] = 0
    oof = out_of_fold_probs(x, y, n_folds=5, seed=0)
    scores = label_issue_scores(oof[:, :2], y[:, :2])
    assert scores[flip] > 0.9
    assert flip in np.argsort(-scores)[:3]
    assert label_issue_cells(oof[:, :2], y[:, :2])[flip, 0]


def test_out_of_fold_rejects() -> None:
    x, y = separable_problem(10)
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        out_of_fold_probs(x[:, 0], y)
    bad = x.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="inf"):
        out_of_fold_probs(bad, y)
    with pytest.raises(ValueError, match=r"10 rows like features, got \(9, 3\)"):
        out_of_fold_probs(x, y[:9])
    with pytest.raises(ValueError, match="n_folds must be an integer >= 2, got 1"):
        out_of_fold_probs(x, y, n_folds=1)
    with pytest.raises(ValueError, match=r"got 2\.5"):
        out_of_fold_probs(x, y, n_folds=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_folds must be <= N=10, got 11"):
        out_of_fold_probs(x, y, n_folds=11)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        out_of_fold_probs(x, y, seed=-1)
    with pytest.raises(ValueError, match=r"C must be a finite number > 0, got 0\.0"):
        out_of_fold_probs(x, y, C=0.0)


# ---------------------------------------------------------------- priority


def test_priority_rank_normalized_by_hand() -> None:
    u = np.array([0.9, 0.1, 0.5])  # ranks [2, 0, 1] / 2 -> [1, 0, 0.5]
    d = np.array([0.3, 0.3, 0.0])  # 0.0 rank 0; 0.3 ties share (1 + 2) / 2 = 1.5 -> [.75, .75, 0]
    lab = np.array([0.2, 0.2, 0.2])  # constant -> contributes 0
    # weights (1, 2, 3): [1 + 1.5 + 0, 0 + 1.5 + 0, 0.5 + 0 + 0]
    np.testing.assert_allclose(priority_scores(u, d, lab, (1.0, 2.0, 3.0)), [2.5, 1.5, 0.5])
    # only ranks matter: rescaling a component changes nothing
    np.testing.assert_allclose(priority_scores(u * 1000, d, lab, (1.0, 2.0, 3.0)), [2.5, 1.5, 0.5])
    np.testing.assert_array_equal(priority_scores(u[:1], d[:1], lab[:1], (1, 1, 1)), [0.0])


def test_priority_rejects() -> None:
    u = np.array([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"\(2,\)"):
        priority_scores(u, u[:2], u, (1, 1, 1))
    with pytest.raises(ValueError, match=r"got shape \(3, 1\)"):
        priority_scores(u, u[:, None], u, (1, 1, 1))
    with pytest.raises(ValueError, match="nan"):
        priority_scores(u, u, np.array([0.1, NAN, 0.3]), (1, 1, 1))
    with pytest.raises(ValueError, match=r"\(1.0, -1.0, 0.0\)"):
        priority_scores(u, u, u, (1.0, -1.0, 0.0))
    with pytest.raises(ValueError, match=r"\(0.0, 0.0, 0.0\)"):
        priority_scores(u, u, u, (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"got shape \(2,\)"):
        priority_scores(u, u, u, (1.0, 1.0))  # type: ignore[arg-type]


# ---------------------------------------------------------------- selection


def test_select_diverse_skips_near_duplicate() -> None:
    priority = np.array([1.0, 0.95, 0.5, 0.1])
    # doc 1 is a near-duplicate of doc 0; doc 3 is at 45 degrees to both
    emb = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.7, 0.7]])
    np.testing.assert_array_equal(select_diverse(priority, emb, 2, diversity=0.0), [0, 1])
    np.testing.assert_array_equal(select_diverse(priority, None, 2, diversity=1.0), [0, 1])
    # after doc 0: doc 1 -> 0.95 - 1 * ~1 = ~-0.05; doc 2 -> 0.5 - 0 = 0.5; doc 3 -> 0.1 - 0.707
    np.testing.assert_array_equal(select_diverse(priority, emb, 2, diversity=1.0), [0, 2])


def test_select_diverse_zero_rows_ties_and_clipping() -> None:
    priority = np.array([1.0, 0.5, 0.9])
    emb = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0]])  # doc 1 has a zero embedding
    # top-k would be [0, 2, 1]; with diversity 1 doc 2 -> 0.9 - 1 = -0.1 < doc 1 -> 0.5 - 0
    np.testing.assert_array_equal(select_diverse(priority, emb, 3, diversity=1.0), [0, 1, 2])
    np.testing.assert_array_equal(select_diverse(priority, emb, 3, diversity=0.0), [0, 2, 1])
    np.testing.assert_array_equal(select_diverse(np.ones(4), None, 2, 0.0), [0, 1])  # stable
    assert sorted(select_diverse(priority, emb, 10, 0.5).tolist()) == [0, 1, 2]
    assert select_diverse(priority, emb, 0, 0.5).shape == (0,)


def test_select_diverse_matches_brute_force() -> None:
    rng = np.random.default_rng(4)
    priority = rng.random(40)
    emb = rng.standard_normal((40, 5))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit.T
    chosen: list[int] = []
    for _ in range(15):
        penalty = sim[:, chosen].max(axis=1) if chosen else np.zeros(40)
        score = priority - 0.7 * penalty
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))
    np.testing.assert_array_equal(select_diverse(priority, emb, 15, 0.7), chosen)


def test_select_diverse_rejects() -> None:
    priority = np.array([1.0, 0.5])
    emb = np.eye(2)
    with pytest.raises(ValueError, match="k must be an integer >= 0, got -1"):
        select_diverse(priority, emb, -1, 0.5)
    with pytest.raises(ValueError, match=r"got -0\.5"):
        select_diverse(priority, emb, 1, -0.5)
    with pytest.raises(ValueError, match=r"\(2, D\), got \(3, 2\)"):
        select_diverse(priority, np.eye(3, 2), 1, 0.5)
    with pytest.raises(ValueError, match="inf"):
        select_diverse(priority, np.array([[1.0, np.inf], [0.0, 1.0]]), 1, 0.5)
    with pytest.raises(ValueError, match="nan"):
        select_diverse(np.array([NAN, 1.0]), emb, 1, 0.5)


def test_select_random_distinct_and_reproducible() -> None:
    a = select_random(100, 30, seed=7)
    assert a.shape == (30,) and len(set(a.tolist())) == 30
    assert np.all((a >= 0) & (a < 100))
    np.testing.assert_array_equal(a, select_random(100, 30, seed=7))
    assert not np.array_equal(a, select_random(100, 30, seed=8))
    assert sorted(select_random(5, 10, seed=0).tolist()) == [0, 1, 2, 3, 4]  # k clipped
    assert select_random(0, 3, seed=0).shape == (0,)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, 2, 0), "n_docs must be an integer >= 0, got -1"),
        ((10, -2, 0), "k must be an integer >= 0, got -2"),
        ((10, 1.5, 0), r"k must be an integer >= 0, got 1\.5"),
        ((10, 2, -3), "seed must be an integer >= 0, got -3"),
    ],
)
def test_select_random_rejects(args: tuple[int, int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select_random(*args)
