"""Tests for labelmill.embedding: pooling, cosine scores, the prior rule, Platt, lineage hash."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labelmill.embedding import (
    ScoreCalibrator,
    ScoreMoments,
    cosine_scores,
    embedding_prompt_hash,
    id_digest,
    l2_normalize,
    label_texts,
    mean_pool,
    prior_z_threshold,
    resolve_calibration,
)


def test_label_texts_styles_and_errors() -> None:
    names, descriptions = ["a::x", "b"], ["Does x.", "Does b."]
    assert label_texts(names, descriptions, "description") == ["Does x.", "Does b."]
    assert label_texts(names, descriptions, "name_and_description") == [
        "a::x: Does x.",
        "b: Does b.",
    ]
    with pytest.raises(ValueError, match="'title'"):
        label_texts(names, descriptions, "title")
    with pytest.raises(ValueError, match="2 label names but 1 descriptions"):
        label_texts(names, descriptions[:1], "description")


def test_mean_pool_ignores_masked_tokens() -> None:
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 1.0], [0.0, 0.0], [9, 9]]])
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(mean_pool(hidden, mask), [[2.0, 3.0], [5.0, 1.0]])
    np.testing.assert_allclose(mean_pool(hidden, np.zeros((2, 3))), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3, 2\) and \(2, 2\)"):
        mean_pool(hidden, mask[:, :2])


def test_cosine_scores_by_hand() -> None:
    docs = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    labels = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    r = 1 / math.sqrt(2)
    expected = [
        [0.6, 0.8, -(3 * r + 4 * r) / 5],
        [1.0, 0.0, -r],
        [0.0, 0.0, 0.0],  # a zero vector is similar to nothing
    ]
    np.testing.assert_allclose(cosine_scores(docs, labels), expected, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(docs[:2]), axis=1), [1.0, 1.0])
    with pytest.raises(ValueError, match="dimension 2 but labels 3"):
        cosine_scores(docs, np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"shape \(N, D\), got \(3,\)"):
        l2_normalize(np.ones(3))


def test_prior_threshold_and_rule_by_hand() -> None:
    z_star = prior_z_threshold(0.16)
    assert z_star == pytest.approx(0.994458, abs=1e-5)  # Phi^-1(0.84)
    assert prior_z_threshold(0.5) == pytest.approx(0.0, abs=1e-12)
    mean, std = np.array([0.2, 0.1]), np.array([0.05, 0.0])
    cal = ScoreCalibrator("prior", prior_rate=0.16, prior_slope=2.0).fit(mean, std)
    at_threshold = 0.2 + z_star * 0.05
    one_sd_above = at_threshold + 0.05
    probs = cal.predict_proba([[at_threshold, 0.7], [one_sd_above, 0.1], [0.2, -0.3]])
    assert probs[0, 0] == pytest.approx(0.5)
    assert probs[1, 0] == pytest.approx(1 / (1 + math.exp(-2.0)))  # slope 2 per sd
    assert probs[2, 0] == pytest.approx(1 / (1 + math.exp(2.0 * z_star)))
    # a label whose score never varies gets one constant probability: sigmoid(-slope * z*)
    np.testing.assert_allclose(probs[:, 1], 1 / (1 + math.exp(2.0 * z_star)))
    assert list(cal.method_) == ["prior", "prior"]
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(
            ValueError, match=f"prior_rate must lie strictly in \\(0, 1\\), got {bad}"
        ):
            prior_z_threshold(bad)


def test_prior_rule_marks_about_prior_rate_of_a_normal_corpus() -> None:
    scores = np.random.default_rng(0).normal(0.3, 0.07, size=(20000, 2))
    mean, std = ScoreMoments.of(scores).mean_std()
    cal = ScoreCalibrator("prior", prior_rate=0.16).fit(mean, std)
    share = (cal.predict_proba(scores) >= 0.5).mean(axis=0)
    np.testing.assert_allclose(share, [0.16, 0.16], atol=0.01)


def test_moments_merge_equals_whole() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(50, 3))
    merged = ScoreMoments.of(scores[:20]).merge(ScoreMoments.of(scores[20:]))
    mean, std = merged.mean_std()
    np.testing.assert_allclose(mean, scores.mean(axis=0))
    np.testing.assert_allclose(std, scores.std(axis=0))
    assert ScoreMoments.of(np.zeros((0, 3))).merge(merged).count == 50
    with pytest.raises(ValueError, match="count=0"):
        ScoreMoments.of(np.zeros((0, 3))).mean_std()
    with pytest.raises(ValueError, match=r"cannot merge moments of \(3,\) and \(2,\)"):
        merged.merge(ScoreMoments.of(np.zeros((1, 2))))


def test_platt_recovers_a_known_logistic_curve_and_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    scores = rng.normal(0.0, 1.0, size=(20000, 1))
    truth = rng.random(20000) < 1 / (1 + np.exp(-(2.5 * scores[:, 0] - 1.0)))
    cal = ScoreCalibrator("platt", C=1.0).fit([0.0], [1.0], scores, truth[:, None])
    assert cal.coef_[0] == pytest.approx(2.5, abs=0.1)
    assert cal.intercept_[0] == pytest.approx(-1.0, abs=0.1)
    direct = LogisticRegression(C=1.0).fit(scores, truth)
    np.testing.assert_allclose(
        cal.predict_proba(scores)[:, 0], direct.predict_proba(scores)[:, 1], atol=1e-6
    )
    assert list(cal.method_) == ["platt"]


def test_platt_standardises_with_corpus_statistics() -> None:
    rng = np.random.default_rng(3)
    raw = rng.normal(0.25, 0.05, size=(4000, 1))
    truth = (raw[:, 0] + rng.normal(0, 0.02, 4000)) > 0.3
    cal = ScoreCalibrator("platt").fit([0.25], [0.05], raw, truth[:, None])
    direct = LogisticRegression().fit((raw - 0.25) / 0.05, truth)
    np.testing.assert_allclose(cal.coef_, direct.coef_[0])
    assert cal.predict_proba([[0.2], [0.4]])[:, 0].tolist() == pytest.approx(
        direct.predict_proba([[-1.0], [3.0]])[:, 1].tolist()
    )


def test_one_class_label_falls_back_to_prior_and_auto_resolves() -> None:
    scores = np.array([[0.1, 0.5], [0.4, 0.2], [0.3, 0.3], [0.6, 0.1]])
    gold = np.array([[0, 0], [1, 0], [0, 0], [1, 0]])  # label 1 has no positive
    cal = ScoreCalibrator("auto", prior_rate=0.16, prior_slope=2.0).fit(
        [0.3, 0.3], [0.1, 0.1], scores, gold
    )
    assert list(cal.method_) == ["platt", "prior"]
    assert cal.coef_[1] == 2.0
    assert cal.intercept_[1] == pytest.approx(-2.0 * prior_z_threshold(0.16))
    assert list(ScoreCalibrator("auto").fit([0.3], [0.1]).method_) == ["prior"]
    assert resolve_calibration("auto", 3) == "platt"
    assert resolve_calibration("auto", 0) == "prior"
    assert resolve_calibration("prior", 3) == "prior"
    with pytest.raises(ValueError, match="'isotonic'"):
        resolve_calibration("isotonic", 3)


def test_calibrator_round_trips_through_a_dict() -> None:
    cal = ScoreCalibrator("platt").fit(
        [0.3], [0.1], [[0.1], [0.2], [0.5], [0.6]], [[0], [0], [1], [1]]
    )
    back = ScoreCalibrator.from_dict(cal.to_dict())
    grid = np.linspace(-1, 1, 7)[:, None]
    np.testing.assert_allclose(back.predict_proba(grid), cal.predict_proba(grid))
    assert list(back.method_) == ["platt"]
    with pytest.raises(ValueError, match="not a calibration record"):
        ScoreCalibrator.from_dict({"settings": {}})


def test_calibrator_error_paths() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        ScoreCalibrator().predict_proba([[0.1]])
    with pytest.raises(ValueError, match=r"calibration must be one of .* got 'sigmoid'"):
        ScoreCalibrator("sigmoid").fit([0.0], [1.0])
    with pytest.raises(ValueError, match="'platt' needs gold seed rows"):
        ScoreCalibrator("platt").fit([0.0], [1.0])
    with pytest.raises(ValueError, match="given together"):
        ScoreCalibrator().fit([0.0], [1.0], seed_scores=[[0.1]])
    with pytest.raises(ValueError, match=r"seed_scores must be finite with shape \(M, 1\)"):
        ScoreCalibrator().fit([0.0], [1.0], [[0.1, 0.2]], [[0, 1]])
    with pytest.raises(ValueError, match=r"seed_gold must contain only 0/1 values, got 0\.5"):
        ScoreCalibrator().fit([0.0], [1.0], [[0.1]], [[0.5]])
    with pytest.raises(ValueError, match="std >= 0"):
        ScoreCalibrator().fit([0.0], [-1.0])
    with pytest.raises(ValueError, match="prior_slope must be > 0, got 0"):
        ScoreCalibrator(prior_slope=0).fit([0.0], [1.0])
    fitted = ScoreCalibrator().fit([0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"scores must have shape \(N, 2\), got \(1, 3\)"):
        fitted.predict_proba([[0.1, 0.2, 0.3]])


def test_prompt_hash_follows_model_calibration_texts_and_source() -> None:
    base = {"calibration": "auto", "prior_rate": 0.16, "prior_slope": 2.0}
    args = ("all-minilm-l6-v2", 256, ["Edits text.", "Plays music."], base, "corpus:1")
    reference = embedding_prompt_hash(*args)
    assert len(reference) == 16 and reference == embedding_prompt_hash(*args)
    variants = [
        ("other-encoder", 256, args[2], base, "corpus:1"),
        (args[0], 128, args[2], base, "corpus:1"),
        (args[0], 256, ["edits text.", "Plays music."], base, "corpus:1"),
        (args[0], 256, args[2], {**base, "calibration": "prior"}, "corpus:1"),
        (args[0], 256, args[2], {**base, "prior_rate": 0.2}, "corpus:1"),
        (args[0], 256, args[2], base, "corpus:2"),
    ]
    hashes = {embedding_prompt_hash(*v) for v in variants}
    assert len(hashes) == len(variants) and reference not in hashes


def test_id_digest_is_order_free_and_additive() -> None:
    ids = ["a", "b", "c", "d"]
    assert id_digest(ids) == id_digest(list(reversed(ids)))
    assert (id_digest(ids[:2]) + id_digest(ids[2:])) % 2**64 == id_digest(ids)
    assert id_digest(ids) != id_digest(ids[:3]) and id_digest([]) == 0
