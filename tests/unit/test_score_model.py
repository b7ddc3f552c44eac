"""The score observation model of Dawid-Skene: hand-computed cases and the four properties that
say it keeps a calibrated teacher's signal (numpy only, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labelmill.aggregation import (
    DawidSkene,
    DSParams,
    MajorityVote,
    choose_thresholds,
    dawid_skene_e_step,
    threshold_probs,
    threshold_stats,
)
from labelmill.aggregation.score_model import (
    fit_score_model,
    logit,
    seed_histograms,
    sigmoid,
)
from labelmill.metrics import precision_recall_f1


def test_e_step_by_hand_with_a_score_and_a_hard_teacher() -> None:
    # 1 label, prior 0.2. Teacher 0 (score): slope 2, bias 0.5, base logit(0.25).
    # Teacher 1 (hard): sens 0.8, spec 0.9.
    params = DSParams(
        sensitivity=[[0.5], [0.8]],
        specificity=[[0.5], [0.9]],
        prior=[0.2],
        score_teacher=[True, False],
        score_slope=[[2.0], [1.0]],
        score_bias=[[0.5], [0.0]],
        score_base=[[np.log(0.25 / 0.75)], [0.0]],
    )
    votes = np.array([[[0.5], [1.0]], [[0.5], [np.nan]], [[np.nan], [0.0]]])
    post, _ = dawid_skene_e_step(votes, params)
    llr_score = 2 * 0.0 + 0.5 - np.log(1 / 3)  # s = logit(0.5) = 0 -> 1.5986
    prior = np.log(0.2 / 0.8)
    expected = [
        sigmoid(prior + llr_score + np.log(0.8 / 0.1)),  # hard yes: log(sens / (1 - spec))
        sigmoid(prior + llr_score),  # the hard teacher abstained
        sigmoid(prior + np.log(0.2 / 0.9)),  # hard no: log((1 - sens) / spec)
    ]
    np.testing.assert_allclose(post[:, 0], expected, rtol=1e-12)
    assert post[1, 0] == pytest.approx(0.5529, abs=1e-4)  # logit 0.2123


def test_fit_score_model_matches_logistic_regression() -> None:
    rng = np.random.default_rng(3)
    s = rng.normal(0.3, 2.0, 3000)
    y = (rng.random(3000) < sigmoid(0.6 * s - 1.0)).astype(float)  # under-confident teacher
    pos, neg = seed_histograms(sigmoid(s)[:, None], np.ones((3000, 1), bool), y[:, None],
                               np.ones(3000, bool))  # fmt: skip
    slope, bias = fit_score_model(pos, neg, np.array([0.0]), strength=1e-6)
    reference = LogisticRegression(C=1e8).fit(logit(sigmoid(s))[:, None], y)
    assert slope[0] == pytest.approx(reference.coef_[0, 0], abs=0.01)
    assert bias[0] == pytest.approx(reference.intercept_[0], abs=0.01)


def test_fit_score_model_stays_finite_on_a_separable_seed_and_empty_cells() -> None:
    pos, neg = np.zeros((2, 185)), np.zeros((2, 185))
    pos[0, 150], neg[0, 30] = 3, 3  # perfectly separated by the teacher
    slope, bias = fit_score_model(pos, neg, np.array([0.0, -1.0]), strength=1.0)
    assert np.all(np.isfinite(slope)) and slope[0] > 1.0
    # no seed documents at all: the penalty's centre, the calibrated teacher
    assert slope[1] == pytest.approx(1.0) and bias[1] == pytest.approx(0.0)


# ------------------------------------------------------------------------- the four properties


def calibrated_corpus(seed: int, n: int = 3000, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A teacher calibrated by construction: y ~ Bernoulli(p). -> (probs (N, K), gold (N, K))"""
    rng = np.random.default_rng(seed)
    s = rng.normal(-1.5, 1.6, (n, k)) + np.array([0.0, -1.0, 0.8])[:k]
    p = sigmoid(s)
    return p, (rng.random((n, k)) < p).astype(float)


def seed_mask(n: int, fraction: float = 0.2) -> np.ndarray:
    return np.arange(n) < int(fraction * n)


@pytest.mark.parametrize("with_seed", [True, False])
def test_a_one_calibrated_teacher_passes_through(with_seed: bool) -> None:
    p, gold = calibrated_corpus(0)
    mask = seed_mask(len(p))
    model = DawidSkene(anchor="rates", max_iter=50, tol=1e-8)
    model.fit(p[:, None, :], gold, mask) if with_seed else model.fit(p[:, None, :])
    post = model.predict_proba(p[:, None, :])
    assert np.max(np.abs(post - p)) <= 0.05
    for k in range(p.shape[1]):  # the same ranking, exactly
        order = np.argsort(p[:, k], kind="stable")
        assert np.all(np.diff(post[order, k]) >= 0.0)


def f1_at_seed_thresholds(probs: np.ndarray, gold: np.ndarray, mask: np.ndarray) -> float:
    choice = choose_thresholds(threshold_stats(probs, gold, mask))
    pred = threshold_probs(probs[~mask], choice.thresholds).astype(float)
    return precision_recall_f1(gold[~mask], pred)["micro_f1"]


def test_b_a_teacher_without_signal_changes_nothing() -> None:
    p, gold = calibrated_corpus(1)
    mask = seed_mask(len(p))
    noise = np.random.default_rng(2).random(p.shape)  # "probabilities" unrelated to the truth
    alone = DawidSkene(anchor="rates").fit(p[:, None, :], gold, mask)
    both_votes = np.stack([p, noise], axis=1)
    both = DawidSkene(anchor="rates").fit(both_votes, gold, mask)
    post_alone = alone.predict_proba(p[:, None, :])
    post_both = both.predict_proba(both_votes)
    assert np.max(np.abs(post_both - post_alone)) <= 0.05
    assert abs(np.max(np.abs(both.params_.score_slope[1]))) < 0.15  # read as no signal
    f1_alone = f1_at_seed_thresholds(post_alone, gold, mask)
    f1_both = f1_at_seed_thresholds(post_both, gold, mask)
    assert abs(f1_both - f1_alone) <= 0.01


@pytest.mark.parametrize("with_seed", [True, False])
def test_c_independent_calibrated_teachers_add_their_log_odds(with_seed: bool) -> None:
    rng = np.random.default_rng(4)
    n, prior = 4000, np.array([0.15, 0.4])
    y = (rng.random((n, 2)) < prior).astype(float)
    # s | y ~ N(+-m/2, m): log-likelihood ratio exactly s, so p = sigmoid(logit(prior) + s)
    # is calibrated and two such teachers' posterior is sigmoid(logit p1 + logit p2 - logit prior).
    m = 2.0
    s = (2 * y[:, None, :] - 1) * m / 2 + rng.normal(0.0, np.sqrt(m), (n, 2, 2))
    p = sigmoid(logit(prior) + s)
    truth = sigmoid(logit(p[:, 0]) + logit(p[:, 1]) - logit(prior))
    mask = seed_mask(n, 0.25)
    model = DawidSkene(anchor="rates", max_iter=100, tol=1e-8)
    model.fit(p, y, mask) if with_seed else model.fit(p)
    post = model.predict_proba(p)
    assert np.mean(np.abs(post - truth)) < 0.02
    assert np.max(np.abs(post - truth)) < 0.12


def test_d_rates_anchor_beats_majority_on_a_correlated_pair() -> None:
    rng = np.random.default_rng(5)
    n, k = 3000, 4
    y = (rng.random((n, k)) < 0.2).astype(float)
    good = np.where(y == 1, rng.random((n, k)) < 0.8, rng.random((n, k)) < 0.05)
    shared = rng.random((n, k)) < 0.25  # the pair errs together a quarter of the time
    bad = np.where(shared, 1 - y, y)
    votes = np.stack([good, bad, bad], axis=1).astype(float)
    mask = seed_mask(n, 0.1)
    ds = DawidSkene(anchor="rates").fit(votes, y, mask).predict_proba(votes)
    maj = MajorityVote().fit(votes).predict_proba(votes)
    assert f1_at_seed_thresholds(ds, y, mask) > f1_at_seed_thresholds(maj, y, mask) + 0.02
