"""Tests for labelmill.selection_sketch (the distributed selection's math; no Ray)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labelmill.selection import _rank_normalize, issue_thresholds, label_issue_scores
from labelmill.selection_sketch import (
    FoldModels,
    fit_fold_models,
    fold_model_probs,
    hash_folds,
    id_hashes,
    merge_top,
    rank_histogram,
    sample_cutoff,
    sketch_priority,
    sketch_rank_normalize,
    top_rows,
)

# ---------------------------------------------------------------- hashes, folds, sample


def test_id_hashes_are_blake2b_of_salt_and_id() -> None:
    expected = int.from_bytes(hashlib.blake2b(b"s\x1fdoc-1", digest_size=8).digest())
    h = id_hashes(["doc-1", "doc-2"], "s")
    assert h.dtype == np.uint64 and int(h[0]) == expected
    assert int(h[1]) != expected
    assert int(id_hashes(["doc-1"], "other")[0]) != expected  # the salt changes the key
    assert id_hashes([], "s").shape == (0,)


def test_hash_folds_are_the_hash_mod_folds() -> None:
    ids = [f"d{i}" for i in range(200)]
    folds = hash_folds(ids, 5)
    np.testing.assert_array_equal(folds, (id_hashes(ids, "fold") % np.uint64(5)).astype(int))
    assert set(folds.tolist()) == {0, 1, 2, 3, 4}
    with pytest.raises(ValueError, match="n_folds must be >= 1, got 0"):
        hash_folds(ids, 0)


def test_sample_cutoff_keeps_everything_under_the_cap() -> None:
    cutoff, fraction = sample_cutoff(np.array([5, 1], np.uint64), n_total=10, max_sample=20)
    assert fraction == 1.0 and cutoff == 2**64 - 1


def test_sample_cutoff_truncates_an_overshoot_to_exactly_max_sample() -> None:
    # 100 documents, at most 10: fraction 0.1; 12 hashes came back below 0.1 * 2^64
    hashes = np.array([70, 10, 30, 20, 50, 40, 60, 90, 80, 100, 120, 110], np.uint64)
    cutoff, fraction = sample_cutoff(hashes, n_total=100, max_sample=10)
    assert fraction == pytest.approx(0.1)
    assert cutoff == 100  # the 10th smallest: 10, 20, ..., 100
    assert int((hashes <= np.uint64(cutoff)).sum()) == 10
    # no overshoot: the cutoff is the fraction's bound itself
    cutoff, _ = sample_cutoff(hashes[:3], n_total=100, max_sample=10)
    assert cutoff == int(0.1 * 2.0**64) - 1
    with pytest.raises(ValueError, match="need max_sample >= 1"):
        sample_cutoff(hashes, 100, 0)


# ---------------------------------------------------------------- fold models


def test_fold_models_match_sklearn_and_score_out_of_fold_or_by_mean() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = np.stack([(x[:, 0] > 0), np.zeros(40, bool)], axis=1).astype(float)  # label 2: constant
    folds = np.arange(40) % 2
    models = fit_fold_models(x, y, folds, 2)
    assert models.weights.shape == (2, 2, 3) and models.bias.shape == (2, 2)
    ref = LogisticRegression(C=1.0, max_iter=200).fit(x[folds != 0], y[folds != 0, 0])
    # a constant label: zero weights, bias logit((0 + 1) / (20 + 2))
    np.testing.assert_allclose(models.weights[:, 1], 0.0)
    np.testing.assert_allclose(models.bias[:, 1], np.log((1 / 22) / (21 / 22)))
    probs = fold_model_probs(models, x[:2], np.array([0, -1]))
    assert probs[0, 0] == pytest.approx(ref.predict_proba(x[:1])[0, 1])  # own fold's model
    ref1 = LogisticRegression(C=1.0, max_iter=200).fit(x[folds != 1], y[folds != 1, 0])
    mean = (ref.predict_proba(x[1:2])[0, 1] + ref1.predict_proba(x[1:2])[0, 1]) / 2
    assert probs[1, 0] == pytest.approx(mean)  # not sampled: mean of the fold models
    np.testing.assert_allclose(probs[:, 1], 1 / 22)


def test_fold_model_probs_by_hand() -> None:
    models = FoldModels(
        weights=np.array([[[1.0, 0.0]], [[0.0, 2.0]]]), bias=np.array([[0.0], [-1.0]])
    )
    x = np.array([[np.log(3.0), 0.0], [0.0, 0.5]])
    # row 0 in fold 0: sigmoid(log 3) = 0.75; row 1 unsampled: mean(sigmoid(0), sigmoid(0)) = 0.5
    np.testing.assert_allclose(fold_model_probs(models, x, np.array([0, -1])), [[0.75], [0.5]])
    with pytest.raises(ValueError, match=r"folds must lie in \[-1, 2\)"):
        fold_model_probs(models, x, np.array([0, 2]))
    with pytest.raises(ValueError, match=r"features must be \(N, 2\)"):
        fold_model_probs(models, np.zeros((2, 3)), np.array([0, 0]))


def test_fit_fold_models_rejects_bad_inputs() -> None:
    x, y = np.zeros((4, 2)), np.zeros((4, 1))
    with pytest.raises(ValueError, match="must match features' N=4"):
        fit_fold_models(x, y, np.zeros(3, int), 2)
    with pytest.raises(ValueError, match="folds must lie in"):
        fit_fold_models(x, y, np.array([0, 1, 2, 0]), 2)
    with pytest.raises(ValueError, match="features must be a finite"):
        fit_fold_models(np.full((4, 2), np.nan), y, np.zeros(4, int), 2)


def test_issue_thresholds_from_a_sample_score_other_rows() -> None:
    oof = np.array([[0.9], [0.7], [0.2], [0.4]])
    y = np.array([[1], [1], [0], [0]])
    t1, t0 = issue_thresholds(oof, y)
    np.testing.assert_allclose(t1, [0.8])  # mean p over positives
    np.testing.assert_allclose(t0, [0.7])  # mean 1 - p over negatives
    # other rows scored against the sample's thresholds: labeled 1 at p 0.4 -> (0.8-0.4)/0.8
    out = label_issue_scores(np.array([[0.4], [0.1]]), np.array([[1], [0]]), (t1, t0))
    np.testing.assert_allclose(out, [0.5, 0.0])
    np.testing.assert_allclose(label_issue_scores(oof, y, (t1, t0)), label_issue_scores(oof, y))
    with pytest.raises(ValueError, match=r"thresholds must be two \(1,\) arrays"):
        label_issue_scores(oof, y, (np.zeros(2), np.zeros(2)))


# ---------------------------------------------------------------- rank sketch


def test_rank_histogram_by_hand() -> None:
    np.testing.assert_array_equal(rank_histogram(np.array([0.0, 0.3, 0.26, 1.0]), 4), [1, 2, 0, 1])
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        rank_histogram(np.array([1.5]), 4)


def test_sketch_equals_exact_rank_when_values_fall_in_distinct_bins() -> None:
    x = np.array([0.9, 0.1, 0.5, 0.5, 0.3, 0.1, 0.75])  # ties averaged in both
    counts = rank_histogram(x, 16)
    np.testing.assert_allclose(sketch_rank_normalize(x, counts), _rank_normalize(x))
    np.testing.assert_allclose(sketch_rank_normalize(x, counts)[:2], [1.0, 0.5 / 6])
    # additive: histograms of two batches sum to the histogram of both
    np.testing.assert_array_equal(rank_histogram(x[:3], 16) + rank_histogram(x[3:], 16), counts)


def test_sketch_shares_a_bins_average_rank_and_treats_one_bin_as_constant() -> None:
    x = np.array([0.10, 0.11, 0.9])  # 0.10 and 0.11 share bin 0 of 4
    np.testing.assert_allclose(sketch_rank_normalize(x, rank_histogram(x, 4)), [0.25, 0.25, 1.0])
    same_bin = np.array([0.1, 0.12])
    np.testing.assert_allclose(sketch_rank_normalize(same_bin, rank_histogram(same_bin, 4)), 0.0)
    np.testing.assert_allclose(sketch_rank_normalize(np.array([0.5]), np.zeros(4, int)), 0.0)


def test_sketch_priority_is_the_weighted_sum() -> None:
    u, d, lab = np.array([0.1, 0.9]), np.array([0.5, 0.5]), np.array([0.8, 0.2])
    hists = np.stack([rank_histogram(v, 8) for v in (u, d, lab)])
    np.testing.assert_allclose(sketch_priority([u, d, lab], hists, (1.0, 1.0, 2.0)), [2.0, 1.0])
    with pytest.raises(ValueError, match="need 3 components"):
        sketch_priority([u, d], hists, (1.0, 1.0, 1.0))


# ---------------------------------------------------------------- top-k


def test_top_rows_orders_by_priority_then_id() -> None:
    priority = np.array([0.5, 0.9, 0.5, 0.1])
    np.testing.assert_array_equal(top_rows(priority, ["c", "x", "a", "b"], 3), [1, 2, 0])
    assert top_rows(np.zeros(0), [], 3).shape == (0,)
    with pytest.raises(ValueError, match=r"priority must have shape \(2,\)"):
        top_rows(np.zeros(3), ["a", "b"], 1)


def test_merge_top_equals_top_of_the_union() -> None:
    rng = np.random.default_rng(3)
    prio = rng.random(50).round(1)  # many ties
    ids = [f"d{i:02d}" for i in range(50)]
    kept: tuple[np.ndarray, list[str]] = (np.zeros(0), [])
    for start in range(0, 50, 7):
        sl = slice(start, start + 7)
        best = top_rows(prio[sl], ids[sl], 5)  # each batch keeps its own best 5
        kept = merge_top(kept, (prio[sl][best], [ids[sl][i] for i in best]), 5)
    expected = top_rows(prio, ids, 5)
    assert kept[1] == [ids[i] for i in expected]
    np.testing.assert_allclose(kept[0], prio[expected])
