"""Tests for labelmill.aggregation: Dawid-Skene and the voting aggregators (numpy, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from labelmill.aggregation import (
    DawidSkene,
    DSParams,
    MajorityVote,
    SuffStats,
    WeightedVote,
    agreement,
    dawid_skene_e_step,
    dawid_skene_init_posteriors,
    dawid_skene_m_step,
    dawid_skene_seed_stats,
    dawid_skene_shard_stats,
    dawid_skene_suff_stats,
    fit_em,
    majority_vote,
    n_teachers,
    reliability_table,
    score_teachers_of,
    threshold_probs,
    weighted_vote,
)

NAN = np.nan


def synth_votes(
    rng: np.random.Generator, n_docs: int, sens: list[float], spec: list[float], prior: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Hard votes (N, T, K) from independent teachers with the given rates, and truth (N, K)."""
    truth = rng.random((n_docs, len(prior))) < np.asarray(prior)
    u = rng.random((n_docs, len(sens), len(prior)))
    s = np.asarray(sens)[None, :, None]
    p = np.asarray(spec)[None, :, None]
    votes = np.where(truth[:, None, :], u < s, u >= p).astype(np.float64)
    return votes, truth.astype(np.float64)


# ---------------------------------------------------------------- Dawid-Skene: hand computed


def test_dawid_skene_one_iteration_by_hand() -> None:
    # docs x teachers, K=1:   t0 t1 t2   majority fraction (= init posterior q)
    #   d0                     1  1  1    1
    #   d1                     1  1  0    2/3
    #   d2                     1  0  0    1/3
    #   d3                     0  1  0    1/3
    votes = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=float)[:, :, None]
    model = DawidSkene(max_iter=1, smoothing=0.0).fit(votes)
    # M-step from q = [1, 2/3, 1/3, 1/3]: sum q = 7/3, sum (1 - q) = [0, 1/3, 2/3, 2/3] -> 5/3.
    # prior = (7/3) / 4 = 7/12
    # t0 votes [1,1,1,0]: sens = (1 + 2/3 + 1/3) / (7/3) = 6/7; spec = (2/3) / (5/3) = 2/5
    # t1 votes [1,1,0,1]: sens = (1 + 2/3 + 1/3) / (7/3) = 6/7; spec = (2/3) / (5/3) = 2/5
    # t2 votes [1,0,0,0]: sens = 1 / (7/3) = 3/7;  spec = (1/3 + 2/3 + 2/3) / (5/3) = 1
    np.testing.assert_allclose(model.prior_, [7 / 12])
    np.testing.assert_allclose(model.sensitivity_[:, 0], [6 / 7, 6 / 7, 3 / 7])
    np.testing.assert_allclose(model.specificity_[:, 0], [2 / 5, 2 / 5, 1.0])
    # E-step, joint weights a = P(y=1, votes) and b = P(y=0, votes):
    # d0: t2 voted 1 but 1 - spec_2 = 0  -> b = 0 -> posterior 1
    # d1 [1,1,0]: a = 7/12 * 6/7 * 6/7 * 4/7 = 12/49; b = 5/12 * 3/5 * 3/5 * 1 = 3/20
    #             posterior = (12/49) / (12/49 + 3/20) = 240 / (240 + 147) = 80/129
    # d2 [1,0,0]: a = 7/12 * 6/7 * 1/7 * 4/7 = 2/49;   b = 5/12 * 3/5 * 2/5 * 1 = 1/10
    #             posterior = (2/49) / (2/49 + 1/10) = 20 / (20 + 49) = 20/69
    # d3 [0,1,0]: same as d2 by the t0/t1 symmetry -> 20/69
    np.testing.assert_allclose(model.posteriors_[:, 0], [1.0, 80 / 129, 20 / 69, 20 / 69])
    # log-likelihood = sum_n log(a_n + b_n); d0: a = 7/12 * 6/7 * 6/7 * 3/7 = 9/49, b = 0
    expected_ll = np.log(9 / 49) + np.log(12 / 49 + 3 / 20) + 2 * np.log(2 / 49 + 1 / 10)
    assert model.n_iter_ == 1
    assert model.log_likelihood_ == pytest.approx([expected_ll])
    assert not model.converged_


# ---------------------------------------------------------------- Dawid-Skene: statistics


SENS = [0.9, 0.7, 0.6]
SPEC = [0.8, 0.95, 0.6]
PRIOR = [0.3, 0.5, 0.4, 0.6]


def test_dawid_skene_recovers_teacher_error_rates() -> None:
    votes, _ = synth_votes(np.random.default_rng(0), 5000, SENS, SPEC, PRIOR)
    model = DawidSkene(max_iter=1000, tol=1e-7).fit(votes)
    assert model.converged_
    # With T=3 binary teachers the model is just identified, so a single (t, k) estimate from
    # N=5000 has a standard error of ~0.02-0.03; the 0.03 bound is checked on the rates pooled
    # over the K=4 labels (same true rates), and a looser bound per (t, k).
    np.testing.assert_allclose(model.sensitivity_.mean(axis=1), SENS, atol=0.03)
    np.testing.assert_allclose(model.specificity_.mean(axis=1), SPEC, atol=0.03)
    np.testing.assert_allclose(model.prior_, PRIOR, atol=0.06)
    np.testing.assert_allclose(model.sensitivity_, np.tile(np.c_[SENS], (1, 4)), atol=0.1)
    np.testing.assert_allclose(model.specificity_, np.tile(np.c_[SPEC], (1, 4)), atol=0.1)
    assert np.all(np.diff(model.log_likelihood_) > -1e-6)  # EM never decreases it


def test_dawid_skene_beats_majority_with_bad_teachers() -> None:
    rng = np.random.default_rng(1)
    votes, truth = synth_votes(rng, 3000, [0.95, 0.6, 0.55], [0.95, 0.6, 0.55], [0.4, 0.5])
    model = DawidSkene(max_iter=500).fit(votes)
    acc_ds = np.mean((model.posteriors_ >= 0.5) == truth)
    acc_mv = np.mean((majority_vote(votes) >= 0.5) == truth)
    assert acc_ds >= acc_mv + 0.05
    assert acc_ds > 0.9


def test_soft_vote_mixture_likelihood_and_latent_votes() -> None:
    params = DSParams(np.array([[0.8], [0.6]]), np.array([[0.7], [0.9]]), np.array([0.3]))
    votes = np.array([[[0.25], [1.0]], [[0.25], [NAN]]])
    post, ll = dawid_skene_e_step(votes, params)
    # d0: t0 says yes with prob 0.25, t1 says yes. Given y=1: t0 0.25*0.8 + 0.75*0.2 = 0.35,
    # t1 0.6. Given y=0: t0 0.25*0.3 + 0.75*0.7 = 0.6, t1 1 - 0.9 = 0.1.
    a0, b0 = 0.3 * 0.35 * 0.6, 0.7 * 0.6 * 0.1
    a1, b1 = 0.3 * 0.35, 0.7 * 0.6  # d1: t1 abstains
    np.testing.assert_allclose(post[:, 0], [a0 / (a0 + b0), a1 / (a1 + b1)])
    assert ll == pytest.approx(np.log(a0 + b0) + np.log(a1 + b1))
    q0, q1 = post[0, 0], post[1, 0]
    stats = dawid_skene_suff_stats(votes, post, params)
    # Latent hard vote of t0: P(v=1 | y=1, p=0.25) = 0.25*0.8 / 0.35 = 4/7,
    #                         P(v=0 | y=0, p=0.25) = 0.75*0.7 / 0.6 = 7/8. t1's vote is hard.
    np.testing.assert_allclose(stats.pos_vote[:, 0], [4 / 7 * (q0 + q1), q0])
    np.testing.assert_allclose(stats.pos_weight[:, 0], [q0 + q1, q0])
    np.testing.assert_allclose(stats.neg_novote[:, 0], [7 / 8 * (2 - q0 - q1), 0.0])
    np.testing.assert_allclose(stats.neg_weight[:, 0], [2 - q0 - q1, 1 - q0])
    # Without params (initialization) a soft vote p counts as p hard votes.
    init = dawid_skene_suff_stats(votes, post)
    np.testing.assert_allclose(init.pos_vote[:, 0], [0.25 * (q0 + q1), q0])
    np.testing.assert_allclose(init.neg_novote[:, 0], [0.75 * (2 - q0 - q1), 0.0])
    # A vote of exactly 0.5 carries no information under the mixture model.
    half, _ = dawid_skene_e_step(np.full((1, 2, 1), 0.5), params)
    np.testing.assert_allclose(half, [[0.3]])


def test_soft_vote_fractional_likelihood() -> None:
    params = DSParams(np.array([[0.8], [0.6]]), np.array([[0.7], [0.9]]), np.array([0.3]))
    votes = np.array([[[0.25], [1.0]]])
    post, _ = dawid_skene_e_step(votes, params, soft_votes="fractional")
    a = 0.3 * 0.8**0.25 * 0.2**0.75 * 0.6  # sens^p (1 - sens)^(1 - p) per teacher
    b = 0.7 * 0.3**0.25 * 0.7**0.75 * 0.1  # (1 - spec)^p spec^(1 - p)
    np.testing.assert_allclose(post[0, 0], a / (a + b))
    stats = dawid_skene_suff_stats(votes, post, params, soft_votes="fractional")
    np.testing.assert_allclose(stats.pos_vote[:, 0], [0.25 * post[0, 0], post[0, 0]])


def test_soft_votes_fit() -> None:
    votes, truth = synth_votes(np.random.default_rng(2), 2000, SENS, SPEC, PRIOR[:2])
    hard = DawidSkene(max_iter=300).fit(votes)
    frac = DawidSkene(max_iter=300, soft_votes="fractional").fit(votes.astype(np.float32))
    np.testing.assert_allclose(hard.posteriors_, frac.posteriors_, atol=1e-5)  # same on 0/1
    acc_hard = np.mean((hard.posteriors_ >= 0.5) == truth)
    soft = votes * 0.8 + 0.1  # hard votes shrunk to 0.1 / 0.9
    model = DawidSkene(max_iter=300).fit(soft)
    assert np.mean((model.posteriors_ >= 0.5) == truth) >= acc_hard - 0.01
    # The mixture recovers the rates of the hard votes behind the soft ones.
    np.testing.assert_allclose(model.sensitivity_[0], SENS[0], atol=0.1)
    assert np.all((model.sensitivity_ > 0.5) & (model.specificity_ > 0.5))


def test_abstentions_are_skipped() -> None:
    votes, _ = synth_votes(np.random.default_rng(3), 50, SENS, SPEC, PRIOR[:2])
    votes[::3, 1, :] = NAN  # teacher 1 abstains on every third document
    model = DawidSkene(max_iter=5).fit(votes)
    params = model.params_
    sub = DSParams(params.sensitivity[[0, 2]], params.specificity[[0, 2]], params.prior)
    post_sub, _ = dawid_skene_e_step(votes[::3][:, [0, 2], :], sub)
    np.testing.assert_allclose(model.posteriors_[::3], post_sub)
    stats = dawid_skene_suff_stats(votes, model.posteriors_)
    observed = len(range(0, 50)) - len(range(0, 50, 3))
    np.testing.assert_allclose(stats.pos_weight[1] + stats.neg_weight[1], observed)
    np.testing.assert_array_equal(n_teachers(votes)[:4], [2, 3, 3, 2])


def test_all_error_rows_get_the_prior() -> None:
    votes, _ = synth_votes(np.random.default_rng(4), 300, SENS, SPEC, PRIOR[:2])
    votes[:10] = NAN
    model = DawidSkene(max_iter=20).fit(votes)
    np.testing.assert_allclose(model.posteriors_[:10], np.tile(model.prior_, (10, 1)))
    np.testing.assert_allclose(model.predict_proba(votes[:3]), np.tile(model.prior_, (3, 1)))
    # All-error rows carry no information, so they do not move any estimate.
    rest = DawidSkene(max_iter=20).fit(votes[10:])
    np.testing.assert_allclose(model.prior_, rest.prior_)
    np.testing.assert_allclose(model.sensitivity_, rest.sensitivity_)
    assert np.all(np.isnan(majority_vote(votes)[:10]))
    assert np.all(np.isnan(agreement(votes)[:10]))
    np.testing.assert_array_equal(n_teachers(votes)[:10], 0)


def test_predict_proba_matches_training_posteriors() -> None:
    votes, _ = synth_votes(np.random.default_rng(5), 400, SENS, SPEC, PRIOR)
    model = DawidSkene(max_iter=30).fit(votes)
    np.testing.assert_allclose(model.predict_proba(votes), model.posteriors_)


def test_gold_anchoring_moves_estimates_in_expected_direction() -> None:
    rng = np.random.default_rng(6)
    votes, _ = synth_votes(rng, 2000, [0.85, 0.8, 0.75], [0.85, 0.8, 0.75], [0.5])
    # Gold says "negative" on 100 documents where all three teachers voted "positive":
    # with anchoring these become false positives, so every specificity and the prior drop,
    # and the sensitivities rise (those rows no longer count as true positives).
    unanimous = np.flatnonzero(np.all(votes[:, :, 0] == 1.0, axis=1))[:100]
    gold = np.zeros((2000, 1))
    gold_mask = np.zeros(2000, dtype=bool)
    gold_mask[unanimous] = True
    free = DawidSkene(max_iter=300).fit(votes)
    anchored = DawidSkene(max_iter=300).fit(votes, gold=gold, gold_mask=gold_mask)
    np.testing.assert_array_equal(anchored.posteriors_[gold_mask], 0.0)
    assert np.all(free.posteriors_[unanimous] > 0.95)
    assert np.all(anchored.specificity_ < free.specificity_ - 0.02)
    assert np.all(anchored.sensitivity_ > free.sensitivity_)
    assert anchored.prior_[0] < free.prior_[0] - 0.02
    init = dawid_skene_init_posteriors(votes, gold, gold_mask)
    np.testing.assert_array_equal(init[unanimous], 0.0)
    np.testing.assert_array_equal(init[~gold_mask], majority_vote(votes)[~gold_mask])


def test_rates_anchor_by_hand() -> None:
    # 4 docs, 2 teachers, 1 label; docs 0 and 1 are the seed with gold 1 and 0.
    votes = np.array([[[1.0], [0.0]], [[0.0], [1.0]], [[1.0], [0.0]], [[0.0], [0.0]]])
    gold = np.array([[1.0], [0.0], [0.0], [0.0]])
    mask = np.array([True, True, False, False])
    model = DawidSkene(smoothing=1.0, anchor="rates").fit(votes, gold, mask)
    # Both teachers vote yes on 1 of the 2 seed docs: vote rate r = 1/2, so 2 pseudo-votes
    # add 1 hit and 1 miss. teacher 0 is right on both: sens (1 + 1)/(1 + 2), spec (1 + 1)/3;
    # teacher 1 is wrong on both: sens (0 + 1)/3, spec (0 + 1)/3.
    assert np.allclose(model.sensitivity_[:, 0], [2 / 3, 1 / 3])
    assert np.allclose(model.specificity_[:, 0], [2 / 3, 1 / 3])
    assert np.allclose(model.prior_, [0.5])  # (1 + 1) / (2 + 2)
    assert model.n_iter_ == 1 and model.converged_
    # doc 2 (t0 yes, t1 no): 0.5*(2/3)*(2/3) = 2/9 vs 0.5*(1/3)*(1/3) = 1/18 -> 4/5
    # doc 3 (both no): 0.5*(1/3)*(2/3) vs 0.5*(2/3)*(1/3) -> 1/2
    assert np.allclose(model.posteriors_[:, 0], [1.0, 0.0, 4 / 5, 1 / 2])
    # the seed statistics of two shards add up to those of the whole
    whole = dawid_skene_seed_stats(votes, gold, mask)
    parts = dawid_skene_seed_stats(votes[:1], gold[:1], mask[:1]) + dawid_skene_seed_stats(
        votes[1:], gold[1:], mask[1:]
    )
    assert np.allclose(whole.pos_vote, parts.pos_vote)
    assert np.allclose(whole.neg_novote, parts.neg_novote)


def test_rates_anchor_resists_correlated_teachers() -> None:
    # Teacher 0 is good and independent; teachers 1 and 2 are weak and make the SAME errors.
    # EM over all documents takes the pair's agreement for the truth; rates from a gold seed
    # of 100 documents do not.
    rng = np.random.default_rng(0)
    n = 3000
    truth = rng.random((n, 1)) < 0.2
    good = np.where(rng.random((n, 1)) < np.where(truth, 0.8, 0.05), 1.0, 0.0)
    weak = np.where(rng.random((n, 1)) < np.where(truth, 0.55, 0.2), 1.0, 0.0)
    votes = np.stack([good, weak, weak], axis=1)
    gold = truth.astype(float)
    mask = np.zeros(n, dtype=bool)
    mask[:100] = True
    clamp = DawidSkene(max_iter=200).fit(votes, gold, mask)
    rates = DawidSkene(anchor="rates").fit(votes, gold, mask)
    assert abs(rates.sensitivity_[0, 0] - 0.8) < 0.1
    assert abs(rates.sensitivity_[1, 0] - 0.55) < 0.15
    held = ~mask

    def accuracy(model: DawidSkene) -> float:
        return float(((model.posteriors_[held] >= 0.5) == truth[held]).mean())

    majority = float(((majority_vote(votes)[held] >= 0.5) == truth[held]).mean())
    assert accuracy(rates) > accuracy(clamp) + 0.02
    assert accuracy(rates) > majority + 0.02


def test_gold_without_mask_anchors_every_row() -> None:
    votes = np.array([[[1.0], [1.0]], [[0.0], [1.0]]])
    gold = np.array([[0.0], [1.0]])
    model = DawidSkene(max_iter=3).fit(votes, gold=gold)
    np.testing.assert_array_equal(model.posteriors_, gold)


# ---------------------------------------------------------------- map/reduce


def test_suff_stats_of_two_shards_equal_one_shard() -> None:
    votes, _ = synth_votes(np.random.default_rng(7), 500, SENS, SPEC, PRIOR)
    votes[:, 1, :] = votes[:, 1, :] * 0.6 + 0.2  # teacher 1 gives soft votes
    votes[::7, 2, :] = NAN
    votes[::13] = NAN  # all-error rows, some of them gold rows
    gold_mask = np.arange(500) % 11 == 0
    model = DawidSkene(max_iter=3).fit(votes)
    post, params = model.posteriors_, model.params_
    full = dawid_skene_suff_stats(votes, post, params, 1.5, gold_mask)
    a = dawid_skene_suff_stats(votes[:200], post[:200], params, 1.0, gold_mask[:200])
    b = dawid_skene_suff_stats(votes[200:], post[200:], params, 0.5, gold_mask[200:])
    for total in (a + b, sum([a, b]), SuffStats.zeros(3, 4) + a + b):
        for name in ("pos_vote", "pos_weight", "neg_novote", "neg_weight", "prior_pos"):
            np.testing.assert_allclose(getattr(total, name), getattr(full, name))
        np.testing.assert_array_equal(total.prior_weight, full.prior_weight)
        assert total.log_likelihood == pytest.approx(1.5)
        assert total.n_rows == 500


@pytest.mark.parametrize("soft_votes", ["score", "mixture"])
def test_distributed_em_loop_equals_fit(soft_votes: str) -> None:
    votes, truth = synth_votes(np.random.default_rng(8), 600, SENS, SPEC, PRIOR)
    votes[:, 0, :] = votes[:, 0, :] * 0.5 + 0.3  # soft votes: score or mixture statistics
    gold_mask = np.arange(600) < 60
    shards = [slice(0, 250), slice(250, 251), slice(251, 251), slice(251, 600)]

    def stats(params: DSParams | None) -> SuffStats:
        return sum(
            dawid_skene_shard_stats(votes[s], params, truth[s], gold_mask[s], soft_votes)
            for s in shards
        )

    flags = score_teachers_of(votes)
    assert flags.tolist() == [True, False, False]
    fit = fit_em(stats, max_iter=6, tol=0.0, smoothing=1.0, score_teachers=flags)
    model = DawidSkene(max_iter=6, tol=0.0, soft_votes=soft_votes)
    model.fit(votes, gold=truth, gold_mask=gold_mask)
    for name in ("sensitivity", "specificity", "prior", "score_slope", "score_bias"):
        np.testing.assert_allclose(getattr(model.params_, name), getattr(fit.params, name))
    np.testing.assert_allclose(model.log_likelihood_[:-1], fit.log_likelihood, rtol=1e-12)
    assert model.n_iter_ == fit.n_iter == 6


def test_m_step_smoothing_and_empty_statistics() -> None:
    stats = SuffStats.zeros(2, 3)
    assert np.all(dawid_skene_m_step(stats, 0.0).sensitivity == 0.5)
    tk = np.zeros((2, 3))
    stats = stats + SuffStats(
        pos_vote=tk + 3.0, pos_weight=tk + 4.0, neg_novote=tk, neg_weight=tk + 2.0,
        prior_pos=np.full(3, 1.0), prior_weight=np.full(3, 4.0),
        seed_pos=stats.seed_pos, seed_neg=stats.seed_neg, vote_sum=tk + 5.0, vote_count=tk + 6.0,
        log_likelihood=0.0, n_rows=4,
    )  # fmt: skip
    params = dawid_skene_m_step(stats, 1.0)
    # vote rate r = 5/6: 2 pseudo-votes split 5/3 yes, 1/3 no
    np.testing.assert_allclose(params.sensitivity, 7 / 9)  # (3 + 5/3) / (4 + 2)
    np.testing.assert_allclose(params.specificity, 1 / 12)  # (0 + 1/3) / (2 + 2)
    np.testing.assert_allclose(params.prior, 2 / 6)  # (1 + 1) / (4 + 2)


# ---------------------------------------------------------------- simple aggregators


def test_majority_vote_ties_and_soft_votes() -> None:
    votes = np.array(
        [
            [[1, 0], [0, 0], [NAN, NAN], [1, 1]],  # label 0: 2 of 3 -> 2/3; label 1: 1/3
            [[1, 1], [0, 1], [NAN, NAN], [NAN, NAN]],  # tie on label 0 -> 0.5
            [[0.7, 0.2], [0.5, 0.49], [0.1, 0.9], [NAN, NAN]],  # hardened at >= 0.5
        ]
    )
    np.testing.assert_allclose(majority_vote(votes), [[2 / 3, 1 / 3], [0.5, 1.0], [2 / 3, 1 / 3]])
    np.testing.assert_allclose(agreement(votes), [4 / 6, 3 / 4, 4 / 6])
    np.testing.assert_array_equal(n_teachers(votes), [3, 2, 3])


def test_weighted_vote_by_hand() -> None:
    votes = np.array([[[1.0], [0.0], [NAN]], [[0.75], [1.0], [0.0]]])
    weights = np.array([0.8, 0.6, 0.9])
    lo = np.log([0.8 / 0.2, 0.6 / 0.4, 0.9 / 0.1])  # log-odds weights
    s0 = lo[0] * 1 + lo[1] * -1  # votes mapped to 2p - 1; NaN teacher contributes nothing
    s1 = lo[0] * 0.5 + lo[1] * 1 + lo[2] * -1
    expected = 1 / (1 + np.exp(-np.array([[s0], [s1]])))
    np.testing.assert_allclose(weighted_vote(votes, weights), expected)
    np.testing.assert_allclose(weighted_vote(votes, weights[:, None]), expected)
    assert np.isnan(weighted_vote(np.full((1, 3, 1), NAN), weights)).all()
    np.testing.assert_allclose(weighted_vote(votes[:, :2], [0.5, 0.5]), 0.5)


def test_threshold_probs() -> None:
    probs = np.array([[0.2, 0.5], [0.7, NAN]])
    np.testing.assert_array_equal(threshold_probs(probs, 0.5), [[False, True], [True, False]])
    np.testing.assert_array_equal(
        threshold_probs(probs, [0.1, 0.6]), [[True, False], [True, False]]
    )


def test_reliability_table() -> None:
    votes, _ = synth_votes(np.random.default_rng(9), 100, SENS, SPEC, PRIOR[:2])
    model = DawidSkene(max_iter=5).fit(votes)
    rows = reliability_table(model.params_, ["a", "b"], ["t0", "t1", "t2"])
    assert len(rows) == 6
    assert rows[1] == {
        "teacher": "t0",
        "label": "b",
        "model": "hard",
        "sensitivity": pytest.approx(model.sensitivity_[0, 1]),
        "specificity": pytest.approx(model.specificity_[0, 1]),
    }


# ---------------------------------------------------------------- validation


GOOD = np.zeros((4, 3, 2))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: majority_vote(np.zeros((4, 3))), r"ndim=2 shape=\(4, 3\)"),
        (lambda: majority_vote(np.full((2, 2, 2), 1.5)), r"\[0, 1\] or be NaN, got 1.5"),
        (lambda: agreement(np.full((2, 2, 2), -np.inf)), r"\[0, 1\]"),
        (lambda: n_teachers(np.array([[["a"]]])), "numeric"),
        (lambda: majority_vote(np.zeros((2, 0, 2))), "at least one teacher"),
        (lambda: weighted_vote(GOOD, np.ones(2) * 0.5), r"weights must have shape \(3,\)"),
        (lambda: weighted_vote(GOOD, [0.5, 1.0, 0.7]), r"strictly inside \(0, 1\)"),
        (lambda: threshold_probs(np.zeros((2, 2)), [0.5, 0.5, 0.5]), r"shape \(2,\), got \(3,\)"),
        (lambda: threshold_probs(np.zeros((2, 2)), 1.2), r"thresholds must lie in \[0, 1\]"),
        (lambda: threshold_probs(np.zeros((2, 2, 1)), 0.5), "probs must have shape"),
        (lambda: DawidSkene().fit(GOOD, gold=np.zeros((3, 2))), r"gold must have shape \(4, 2\)"),
        (lambda: DawidSkene().fit(GOOD, gold=np.full((4, 2), 0.5)), "only 0/1"),
        (lambda: DawidSkene().fit(GOOD, gold=np.zeros((4, 2)), gold_mask=np.ones(4)), "bool"),
        (lambda: DawidSkene().fit(GOOD, gold_mask=np.ones(4, bool)), "without gold"),
        (lambda: DawidSkene().fit(np.zeros((0, 3, 2))), "at least one document"),
        (lambda: DawidSkene(max_iter=0).fit(GOOD), "max_iter"),
        (lambda: DawidSkene(max_iter=2.5).fit(GOOD), "max_iter"),
        (lambda: DawidSkene(tol=-1.0).fit(GOOD), "tol"),
        (lambda: DawidSkene(smoothing=-0.1).fit(GOOD), "smoothing"),
        (lambda: DawidSkene(smoothing="1").fit(GOOD), "smoothing"),
        (lambda: DawidSkene(tol=np.inf).fit(GOOD), "tol"),
        (lambda: dawid_skene_suff_stats(GOOD, np.zeros((4, 2)), gold_mask=[1, 0]), "gold_mask"),
        (lambda: DawidSkene().fit(GOOD, gold=np.full((4, 2), NAN)), "got nan"),
        (lambda: DawidSkene(soft_votes="hard").fit(GOOD), "soft_votes must be"),
        (lambda: DawidSkene(anchor="gold").fit(GOOD), "anchor must be 'clamp' or 'rates', got"),
        (lambda: dawid_skene_seed_stats(GOOD, None, None), "needs gold and gold_mask"),
        (lambda: dawid_skene_shard_stats(GOOD, None, soft_votes="x"), "soft_votes must be"),
        (lambda: DawidSkene().predict_proba(GOOD), "not fitted"),
        (lambda: DawidSkene(max_iter=1).fit(GOOD).predict_proba(np.zeros((1, 2, 2))), r"\(N, 3"),
        (lambda: dawid_skene_m_step(SuffStats.zeros(3, 2), -1.0), "smoothing"),
        (lambda: dawid_skene_suff_stats(GOOD, np.zeros((4, 3))), "posteriors must"),
        (lambda: dawid_skene_suff_stats(GOOD, np.full((4, 2), NAN)), "posteriors must"),
        (lambda: SuffStats.zeros(3, 2) + SuffStats.zeros(2, 2), "cannot add"),
        (lambda: DSParams(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3)), "prior"),
        (lambda: DSParams(np.zeros((3, 2)), np.ones((3, 2)) * 2, np.zeros(2)), "specificity"),
        (
            lambda: dawid_skene_e_step(GOOD, DSParams(np.zeros((2, 2)), np.zeros((2, 2)), [0, 0])),
            r"\(T, K\)=\(2, 2\)",
        ),
        (
            lambda: reliability_table(DawidSkene(max_iter=1).fit(GOOD).params_, ["a", "b"], ["t0"]),
            "expected 3 teacher_names, got 1",
        ),
        (
            lambda: reliability_table(
                DawidSkene(max_iter=1).fit(GOOD).params_, ["a"], ["x", "y", "z"]
            ),
            "expected 2 label_names, got 1",
        ),
    ],
)
def test_value_errors(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


def test_voting_estimators_have_the_estimator_shape() -> None:
    votes, truth = synth_votes(np.random.default_rng(10), 200, SENS, SPEC, PRIOR)
    majority = MajorityVote()
    assert majority.fit(votes) is majority
    np.testing.assert_array_equal(majority.predict_proba(votes), majority_vote(votes))
    weighted = WeightedVote().fit(votes, truth)
    assert weighted.weights_source_ == "gold_seed" and weighted.weights_.shape == (3, len(PRIOR))
    # teacher 0 (sens 0.9, spec 0.8) is more accurate than teacher 2 (0.6, 0.6) on every label
    assert np.all(weighted.weights_[0] > weighted.weights_[2])
    np.testing.assert_allclose(
        weighted.predict_proba(votes), weighted_vote(votes, weighted.weights_)
    )
    assert WeightedVote().fit(votes).weights_source_ == "majority"
    given = WeightedVote(weights=[0.9, 0.7, 0.6]).fit(votes)
    assert given.weights_source_ == "given" and given.weights_[1, 2] == 0.7
    with pytest.raises(ValueError, match="not fitted"):
        WeightedVote().predict_proba(votes)
