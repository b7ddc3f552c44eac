"""Per-label decision thresholds: seed-tuned F1 and the expected-F1 rule against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from labelmill.aggregation import (
    MIN_SEED_POSITIVES,
    ThresholdStats,
    choose_thresholds,
    threshold_probs,
    threshold_stats,
    tune_thresholds,
)
from labelmill.aggregation.thresholds import CANDIDATES, expected_f1_curve, seed_f1_curve

NAN = np.nan


def brute_f1(p: np.ndarray, y: np.ndarray, t: float) -> float:
    pred = p >= t
    tp = float((pred & (y == 1)).sum())
    denom = float(pred.sum() + (y == 1).sum())
    return 2 * tp / denom if denom else 0.0


def brute_expected_f1(p: np.ndarray, t: float) -> float:
    pred = p >= t
    denom = float(pred.sum() + p.sum())
    return 2 * float(p[pred].sum()) / denom if denom else 0.0


def test_threshold_probs() -> None:
    probs = np.array([[0.2, 0.5], [0.7, NAN]])
    np.testing.assert_array_equal(threshold_probs(probs, 0.5), [[False, True], [True, False]])
    np.testing.assert_array_equal(
        threshold_probs(probs, [0.1, 0.6]), [[True, False], [True, False]]
    )


def test_seed_tuned_threshold_by_hand() -> None:
    # 10 positives at 0.3, 5 negatives at 0.35, 20 negatives at 0.05: cutting below 0.3 and
    # above 0.05 gives tp 10, fp 5 -> F1 = 20 / 25 = 0.8; above 0.35 nothing; below 0.05 all.
    p = np.array([0.3] * 10 + [0.35] * 5 + [0.05] * 20)[:, None]
    y = np.array([1] * 10 + [0] * 25)[:, None]
    choice = tune_thresholds(p, y)
    assert choice.sources == ("gold_seed",)
    assert 0.05 < choice.thresholds[0] <= 0.3
    assert choice.criterion[0] == pytest.approx(0.8)


def test_seed_curve_equals_brute_force_at_every_candidate() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(0.5, 3.0, (400, 3))
    y = (rng.random((400, 3)) < p).astype(float)
    curve = seed_f1_curve(threshold_stats(p, y))
    for k in range(3):
        for j in range(0, len(CANDIDATES), 7):
            assert curve[k, j] == pytest.approx(brute_f1(p[:, k], y[:, k], CANDIDATES[j]))
    # the chosen threshold reaches the best F1 any candidate reaches, and within a hair the
    # best over every observed value
    choice = tune_thresholds(p, y)
    for k in range(3):
        best_grid = max(brute_f1(p[:, k], y[:, k], t) for t in CANDIDATES)
        best_any = max(brute_f1(p[:, k], y[:, k], t) for t in np.unique(p[:, k]))
        assert brute_f1(p[:, k], y[:, k], choice.thresholds[k]) == pytest.approx(best_grid)
        assert best_grid >= best_any - 0.01


def test_expected_f1_rule_equals_brute_force() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(0.3, 4.0, (500, 2))  # rare labels: the expected-F1 cut is far below 0.5
    curve = expected_f1_curve(threshold_stats(p))
    for k in range(2):
        for j in range(0, len(CANDIDATES), 11):
            assert curve[k, j] == pytest.approx(brute_expected_f1(p[:, k], CANDIDATES[j]))
    choice = tune_thresholds(p)
    assert choice.sources == ("expected_f1", "expected_f1")
    for k in range(2):
        best = max(brute_expected_f1(p[:, k], t) for t in CANDIDATES)
        assert brute_expected_f1(p[:, k], choice.thresholds[k]) == pytest.approx(best)
        assert choice.thresholds[k] < 0.5


def test_rule_uses_the_seed_only_with_enough_positives_and_keeps_nan_out() -> None:
    n = 60
    p = np.linspace(0.01, 0.99, n)[:, None].repeat(3, axis=1)
    y = np.zeros((n, 3))
    y[-MIN_SEED_POSITIVES:, 0] = 1  # exactly enough
    y[-(MIN_SEED_POSITIVES - 1) :, 1] = 1  # one short -> expected F1
    p[:, 2] = NAN  # never scored -> default
    choice = choose_thresholds(threshold_stats(p, y))
    assert choice.sources == ("gold_seed", "expected_f1", "default")
    assert choice.thresholds[2] == 0.5 and np.isnan(choice.criterion[2])
    fixed = choose_thresholds(threshold_stats(p, y), fixed=0.3)
    assert fixed.sources == ("fixed",) * 3 and np.all(fixed.thresholds == 0.3)
    record = choice.to_record(["a", "b", "c"])
    assert record["a"]["source"] == "gold_seed" and set(record) == {"a", "b", "c"}


def test_stats_of_shards_add_up_and_seed_mask_selects_rows() -> None:
    rng = np.random.default_rng(2)
    p, y = rng.random((50, 2)), (rng.random((50, 2)) < 0.3).astype(float)
    mask = np.arange(50) % 3 == 0
    whole = threshold_stats(p, y, mask)
    parts = sum(
        threshold_stats(p[s], y[s], mask[s]) for s in (slice(0, 20), slice(20, 20), slice(20, 50))
    )
    for name in ("seed_pos", "seed_neg", "count", "mass"):
        np.testing.assert_allclose(getattr(whole, name), getattr(parts, name))
    assert whole.seed_pos.sum() + whole.seed_neg.sum() == 2 * mask.sum()
    assert whole.count.sum() == 100


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: threshold_probs(np.zeros((2, 2)), [0.5, 0.5, 0.5]), r"shape \(2,\), got \(3,\)"),
        (lambda: threshold_probs(np.zeros((2, 2)), 1.2), r"thresholds must lie in \[0, 1\]"),
        (lambda: threshold_probs(np.zeros((2, 2, 1)), 0.5), "probs must have shape"),
        (lambda: threshold_stats(np.zeros((2, 2)), np.zeros((3, 2))), r"shape \(2, 2\)"),
        (lambda: threshold_stats(np.zeros((2, 2)), np.full((2, 2), 0.5)), "only 0/1"),
        (lambda: threshold_stats(np.zeros((2, 2)), None, np.ones(2, bool)), "without gold"),
        (lambda: threshold_stats(np.zeros((2, 2)), np.zeros((2, 2)), np.ones(2)), "seed_mask"),
        (lambda: choose_thresholds(ThresholdStats.zeros(2), min_positives=0), "min_positives"),
        (lambda: choose_thresholds(ThresholdStats.zeros(2), fixed=1.5), "thresholds must lie"),
        (lambda: ThresholdStats.zeros(2) + ThresholdStats.zeros(3), "cannot add"),
    ],
)
def test_value_errors(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


def test_prevalence_thresholds_hand_computed() -> None:
    from labelmill.aggregation import prevalence_thresholds

    probs = np.array([[0.9, 0.2], [0.7, 0.2], [0.4, 0.1], [0.1, 0.05]])
    # 0.5 of 4 rows: midway between the 2nd and 3rd largest: (0.7 + 0.4) / 2, (0.2 + 0.1) / 2
    got = prevalence_thresholds(probs, [0.5, 0.5])
    np.testing.assert_allclose(got, [0.55, 0.15])
    assert (probs >= got).sum(axis=0).tolist() == [2, 2]
    # 0.1 of 4 rounds to 0: never predicted; 1.0: every row (the smallest probability)
    np.testing.assert_array_equal(prevalence_thresholds(probs, [0.1, 1.0]), [1.0, 0.05])
    # ties at the n-th largest stay in: 0.25 of 4 -> n = 1, the two 0.2 rows are both in
    np.testing.assert_allclose(prevalence_thresholds(probs, [0.5, 0.25])[1], 0.2)


@pytest.mark.parametrize(
    ("probs", "rates", "match"),
    [
        ([[0.1, 0.2]], [0.5], r"rates must be \(2,\) values in \[0, 1\], got \[0.5\]"),
        ([[0.1, 0.2]], [0.5, 1.5], r"rates must be \(2,\) values in \[0, 1\]"),
        ([[np.nan, 0.2]], [0.5, 0.5], "must not contain NaN"),
        (np.zeros((0, 2)), [0.5, 0.5], "at least one row"),
    ],
)
def test_prevalence_thresholds_errors(probs: object, rates: object, match: str) -> None:
    from labelmill.aggregation import prevalence_thresholds

    with pytest.raises(ValueError, match=match):
        prevalence_thresholds(probs, rates)
