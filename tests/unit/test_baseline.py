"""The ``seed-only`` baseline: the per-label logistic regression, its out-of-fold thresholds, the
verdict sentence, and the evaluate glue over a stand-in encoder (no Ray, no model)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from scipy.optimize import minimize
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from labelmill.baseline import (
    BASELINE_NAME,
    NO_SEED_POSITIVE,
    SeedBaseline,
    loop_verdict,
    out_of_fold_proba,
    seed_thresholds,
    train_seed_baseline,
)
from labelmill.config import parse_config
from labelmill.errors import InputError
from labelmill.evaluation import add_lift, build_metrics_document, gold_matrix, score_system

# Two points: label "a" is on at POS and off at NEG, so each regression is symmetric.
POS, NEG = [1.0, 0.0], [0.0, 1.0]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def two_point_logit(n_pos: int, n_neg: int, C: float = 1.0) -> tuple[float, float]:
    """By hand: sklearn's L2 objective ``0.5 |w|^2 + C * sum log-loss`` on n_pos rows at POS and
    n_neg at NEG, in the logits u = w1 + b (at POS) and v = w2 + b (at NEG). The intercept is
    not penalised, so the best b = (u + v) / 2 leaves the penalty 0.25 (u - v)^2."""

    def objective(uv: np.ndarray) -> float:
        u, v = uv
        loss = n_pos * np.log1p(np.exp(-u)) + n_neg * np.log1p(np.exp(v))
        return 0.25 * (u - v) ** 2 + C * loss

    u, v = minimize(objective, [0.0, 0.0], method="BFGS", options={"gtol": 1e-10}).x
    return float(u), float(v)


def test_symmetric_fit_matches_the_hand_derived_optimum() -> None:
    # n positives at POS, n negatives at NEG: v = -u, and u solves u = C n (1 - sigmoid(u)).
    x = np.array([POS] * 4 + [NEG] * 4)
    gold = np.array([[1.0]] * 4 + [[0.0]] * 4)
    lo, hi = 0.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid - 4.0 * (1.0 - _sigmoid(mid)) < 0 else (lo, mid)
    model = SeedBaseline().fit(x, gold)
    probs = model.predict_proba(np.array([POS, NEG]))
    assert probs[:, 0] == pytest.approx([_sigmoid(lo), 1.0 - _sigmoid(lo)], abs=1e-4)
    assert _sigmoid(lo) == pytest.approx(0.73935, abs=1e-5)  # C=1 shrinks: not 0.99
    weaker = SeedBaseline(C=0.1).fit(x, gold).predict_proba(np.array([POS]))[0, 0]
    assert 0.5 < weaker < probs[0, 0]  # a smaller C shrinks further towards the prior


def test_one_class_labels_predict_their_class_and_fitted_attributes() -> None:
    x = np.array([POS, POS, NEG, NEG])
    gold = np.array([[1, 0, 1], [1, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=float)
    model = SeedBaseline(C=2.0, random_state=7).fit(x, gold)
    assert model.n_features_in_ == 2 and model.n_labels_ == 3
    assert [m is None for m in model.estimators_] == [False, True, True]
    assert model.estimators_[0].C == 2.0 and model.estimators_[0].class_weight is None
    assert model.estimators_[0].random_state == 7
    np.testing.assert_array_equal(model.constant_[1:], [0.0, 1.0])
    assert math.isnan(model.constant_[0])
    probs = model.predict_proba(np.array([POS, NEG, [0.5, 0.5]]))
    assert probs.shape == (3, 3)
    np.testing.assert_array_equal(probs[:, 1], 0.0)  # no positive in the seed: never
    np.testing.assert_array_equal(probs[:, 2], 1.0)  # every seed row has it
    assert model.predict_proba(np.empty((0, 2))).shape == (0, 3)
    # sklearn-shaped: parameters round-trip through clone, fitted state does not
    copy = clone(model)
    assert copy.get_params() == {"C": 2.0, "max_iter": 1000, "random_state": 7}
    assert not hasattr(copy, "estimators_")
    again = SeedBaseline(C=2.0, random_state=7).fit(x, gold).predict_proba(x)
    np.testing.assert_array_equal(again, model.predict_proba(x))  # deterministic


def test_out_of_fold_probabilities_never_see_their_own_row() -> None:
    # Three positives at POS, three negatives at NEG; n_folds >= N is leave-one-out, so a held-out
    # positive is predicted by a model of 2 positives and 3 negatives.
    x = np.array([POS] * 3 + [NEG] * 3)
    gold = np.array([[1.0, 1.0, 0.0]] + [[1.0, 0.0, 0.0]] * 2 + [[0.0, 0.0, 0.0]] * 3)
    oof = out_of_fold_proba(SeedBaseline(), x, gold, n_folds=10)
    u, v = two_point_logit(n_pos=2, n_neg=3)
    assert u == pytest.approx(0.47135, abs=1e-4) and v == pytest.approx(-1.06583, abs=1e-4)
    assert oof[:3, 0] == pytest.approx([_sigmoid(u)] * 3, abs=1e-4)  # 0.6157, in-sample 0.7392
    assert oof[3:, 0] == pytest.approx([1.0 - _sigmoid(u)] * 3, abs=1e-4)  # mirror image
    # label 1's only positive is row 0: its fold trained on no positive and says 0
    assert oof[0, 1] == 0.0 and np.all((oof[1:, 1] > 0.0) & (oof[1:, 1] < 1.0))
    np.testing.assert_array_equal(oof[:, 2], 0.0)  # no positive anywhere
    again = out_of_fold_proba(SeedBaseline(), x, gold, n_folds=10)
    np.testing.assert_array_equal(again, oof)


def test_two_rows_is_the_smallest_seed() -> None:
    x, gold = np.array([POS, NEG]), np.array([[1.0], [0.0]])
    # each fold trains on one row, one class: it predicts that class for the other row
    np.testing.assert_array_equal(out_of_fold_proba(SeedBaseline(), x, gold), [[0.0], [1.0]])


def test_thresholds_seed_f1_no_positive_and_fixed() -> None:
    # label 0: ten positives at 0.8 and ten negatives at 0.3 -> seed F1 1 between them;
    # label 1: no positive -> threshold 1; label 2: two positives -> expected F1.
    oof = np.array([[0.8, 0.0, 0.9]] * 10 + [[0.3, 0.0, 0.1]] * 10)
    gold = np.array([[1, 0, 1]] * 2 + [[1, 0, 0]] * 8 + [[0, 0, 0]] * 10, dtype=float)
    choice = seed_thresholds(oof, gold)
    assert choice.sources == ("gold_seed", NO_SEED_POSITIVE, "expected_f1")
    assert 0.3 < choice.thresholds[0] <= 0.8 and choice.criterion[0] == 1.0
    assert choice.thresholds[1] == 1.0 and math.isnan(choice.criterion[1])
    assert not np.any(oof[:, 1] >= choice.thresholds[1])  # never predicted
    fixed = seed_thresholds(oof, gold, fixed=0.4)
    np.testing.assert_array_equal(fixed.thresholds, [0.4, 0.4, 0.4])
    assert fixed.sources == ("fixed",) * 3


def test_train_seed_baseline_fits_the_whole_seed_and_tunes_out_of_fold() -> None:
    x = np.array([POS] * 12 + [NEG] * 12)
    gold = np.array([[1.0, 0.0]] * 12 + [[0.0, 0.0]] * 12)
    fit = train_seed_baseline(x, gold, Cs=(1.0,))
    assert fit.C == 1.0 and list(fit.log_loss) == [1.0]
    full = SeedBaseline().fit(x, gold).predict_proba(np.array([POS, NEG]))
    np.testing.assert_array_equal(fit.model.predict_proba(np.array([POS, NEG])), full)
    # the chosen C's out-of-fold probabilities are what the thresholds were tuned on
    oof = out_of_fold_proba(SeedBaseline(), x, gold)
    np.testing.assert_array_equal(fit.thresholds.thresholds, seed_thresholds(oof, gold).thresholds)
    assert fit.thresholds.sources == ("gold_seed", NO_SEED_POSITIVE)
    p_pos, p_neg = full[:, 0]
    assert p_neg < fit.thresholds.thresholds[0] <= p_pos  # the held-out rows are cut right
    predicted = fit.model.predict_proba(np.array([POS, NEG])) >= fit.thresholds.thresholds
    assert predicted.tolist() == [[True, False], [False, False]]


def test_c_is_chosen_by_out_of_fold_log_loss_on_the_seed() -> None:
    # Separable: a weaker prior is surer of every held-out row, so the largest C wins.
    x = np.array([POS] * 3 + [NEG] * 3)
    gold = np.array([[1.0]] * 3 + [[0.0]] * 3)
    fit = train_seed_baseline(x, gold, n_folds=10, Cs=(100.0, 0.1, 1.0, 100.0))
    assert list(fit.log_loss) == [0.1, 1.0, 100.0] and fit.C == 100.0
    assert fit.model.C == 100.0 and fit.model.estimators_[0].C == 100.0
    # by hand at C=1, leave-one-out: every row's out-of-fold probability is sigmoid(u) of a
    # model of 2 rows of its class and 3 of the other -> log-loss -log(sigmoid(u))
    u, _ = two_point_logit(n_pos=2, n_neg=3)
    assert fit.log_loss[1.0] == pytest.approx(-math.log(_sigmoid(u)), abs=1e-4)
    assert fit.log_loss[0.1] > fit.log_loss[1.0] > fit.log_loss[100.0]
    # No signal: both points hold the label half the time. Leaving a positive out makes its
    # point look negative, so trusting the data (a large C) only hurts: the smallest C wins.
    noise = np.array([[1.0], [1.0], [0.0], [0.0]] * 2)
    fit = train_seed_baseline(np.array([POS] * 4 + [NEG] * 4), noise, n_folds=8, Cs=(0.1, 100.0))
    assert fit.C == 0.1 and fit.log_loss[0.1] < fit.log_loss[100.0]


def test_error_paths() -> None:
    x, gold = np.array([POS, NEG]), np.array([[1.0], [0.0]])
    for bad in (0.0, -1.0, math.inf, True, "1"):
        with pytest.raises(ValueError, match=r"C must be a finite number > 0, got"):
            SeedBaseline(C=bad).fit(x, gold)
    with pytest.raises(ValueError, match=r"max_iter must be an int >= 1, got 0"):
        SeedBaseline(max_iter=0).fit(x, gold)
    with pytest.raises(ValueError, match=r"max_iter must be an int >= 1, got 2.5"):
        SeedBaseline(max_iter=2.5).fit(x, gold)
    with pytest.raises(ValueError, match=r"embeddings must have shape \(N, H\), got shape \(2,\)"):
        SeedBaseline().fit(np.array([1.0, 2.0]), gold)
    with pytest.raises(ValueError, match=r"embeddings must be finite, got nan"):
        SeedBaseline().fit(np.array([POS, [np.nan, 0.0]]), gold)
    with pytest.raises(ValueError, match=r"gold must contain only 0/1 values, got 0.5"):
        SeedBaseline().fit(x, np.array([[1.0], [0.5]]))
    with pytest.raises(ValueError, match=r"gold must have 2 rows like embeddings, got \(3, 1\)"):
        SeedBaseline().fit(x, np.array([[1.0], [0.0], [1.0]]))
    with pytest.raises(InputError, match=r"at least one row and one label, got gold \(0, 1\)"):
        SeedBaseline().fit(np.empty((0, 2)), np.empty((0, 1)))
    with pytest.raises(NotFittedError, match=r"not fitted yet"):
        SeedBaseline().predict_proba(x)
    with pytest.raises(ValueError, match=r"embeddings have 3 features, the model was fitted on 2"):
        SeedBaseline().fit(x, gold).predict_proba(np.ones((1, 3)))
    with pytest.raises(InputError, match=r"need at least 2 seed rows, got 1"):
        out_of_fold_proba(SeedBaseline(), x[:1], gold[:1])
    with pytest.raises(ValueError, match=r"n_folds must be an int >= 2, got 1"):
        out_of_fold_proba(SeedBaseline(), x, gold, n_folds=1)
    with pytest.raises(ValueError, match=r"gold must contain only 0/1 values"):
        seed_thresholds(np.array([[0.5]]), np.array([[2.0]]))
    for grid in ((), (0.0,), (1.0, math.nan), (True,)):
        with pytest.raises(ValueError, match=r"Cs must be a non-empty sequence of finite numbers"):
            train_seed_baseline(x, gold, Cs=grid)


def verdict_document(micro: dict[str, float | None], best: str | None = "t1") -> dict:
    systems = {name: {"micro_f1": value} for name, value in micro.items()}
    return {"systems": systems, "best_teacher": best}


def test_verdict_sentence_beat_neither_both_and_one() -> None:
    doc = verdict_document({"t1": 0.481, BASELINE_NAME: 0.47, "aggregate": 0.479, "student": 0.515})
    assert loop_verdict(doc) == (
        "The loop (its student, micro-F1 0.515) beat both seed-only (0.470) and the best "
        "teacher, t1 (0.481)."
    )
    doc["systems"]["student"]["micro_f1"] = 0.4
    assert loop_verdict(doc) == (
        "The loop (its student, micro-F1 0.400) beat neither seed-only (0.470) nor the best "
        "teacher, t1 (0.481)."
    )
    doc["systems"]["student"]["micro_f1"] = 0.475
    assert loop_verdict(doc) == (
        "The loop (its student, micro-F1 0.475) beat seed-only (0.470) but not the best "
        "teacher, t1 (0.481)."
    )
    doc["systems"][BASELINE_NAME]["micro_f1"] = 0.6
    doc["systems"]["student"]["micro_f1"] = 0.5
    assert loop_verdict(doc) == (
        "The loop (its student, micro-F1 0.500) beat the best teacher, t1 (0.481) but not "
        "seed-only (0.600)."
    )


def test_verdict_falls_back_to_the_aggregate_and_counts_a_shown_tie_as_no_win() -> None:
    no_student = verdict_document({"t1": 0.4812, BASELINE_NAME: 0.3, "aggregate": 0.4814})
    assert loop_verdict(no_student) == (
        "The loop (its aggregate, no student, micro-F1 0.481) beat seed-only (0.300) but not "
        "the best teacher, t1 (0.481)."
    )
    nan_student = verdict_document({"aggregate": 0.5, "student": math.nan}, best=None)
    nan_student["systems"][BASELINE_NAME] = {"micro_f1": 0.4}
    assert loop_verdict(nan_student) == (
        "The loop (its aggregate, no student, micro-F1 0.500) beat seed-only (0.400)."
    )
    only_teacher = verdict_document({"t1": 0.7, "student": 0.6})
    assert loop_verdict(only_teacher) == (
        "The loop (its student, micro-F1 0.600) did not beat the best teacher, t1 (0.700)."
    )
    assert loop_verdict(verdict_document({"student": 0.6}, best=None)) is None
    assert loop_verdict(verdict_document({"t1": 0.6, BASELINE_NAME: 0.5})) is None


def test_a_baseline_is_never_the_best_teacher() -> None:
    names = ["a", "b"]
    y = gold_matrix([["a"], ["b"], ["a", "b"], []], names)
    exact = y.copy()  # the baseline is perfect, the teacher is not
    noisy = np.array([[0.9, 0.45], [0.6, 0.4], [0.8, 0.7], [0.1, 0.2]])
    systems = {
        "t1": score_system("teacher", y, noisy, 0.5, names),
        BASELINE_NAME: score_system("baseline", y, exact, 0.5, names),
    }
    doc = add_lift(build_metrics_document(names, "v1", 4, systems, {}, "t"))
    assert doc["best_teacher"] == "t1"
    teacher_f1 = systems["t1"]["micro_f1"]  # a: tp 2 fp 1; b: tp 1 fn 1 -> 6 / 8
    assert teacher_f1 == pytest.approx(0.75)
    assert doc["systems"][BASELINE_NAME]["lift"]["micro_f1"] == pytest.approx(1.0 - 0.75)


# The evaluate glue (labelmill.pipelines.baseline) over a stand-in encoder: "editor" texts
# embed at POS, others at NEG.


class KeywordEncoder:
    model = SimpleNamespace(config=SimpleNamespace(hidden_size=2))

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[int], list[bool]]:
        self.calls.append(list(texts))
        vectors = np.array([POS if "editor" in t else NEG for t in texts])
        return vectors, [1] * len(texts), [False] * len(texts)


def glue_config(seed_fraction: float = 0.2, **evaluate: object) -> object:
    return parse_config(
        {
            "corpus": {"uri": "docs.parquet", "gold_column": "tags"},
            "taxonomy": {
                "labels": [{"name": "a", "description": "A."}, {"name": "b", "description": "B."}]
            },
            "output_uri": "run/",
            "gold": {"seed_fraction": seed_fraction},
            "evaluate": evaluate,
        }
    )


def seed_table(n_editor: int, n_other: int, extra: list[tuple] = ()) -> pa.Table:
    rows = [(f"e{i}", f"an editor {i}", ["a"]) for i in range(n_editor)]
    rows += [(f"o{i}", f"a player {i}", []) for i in range(n_other)]
    rows += list(extra)
    ids, texts, gold = zip(*rows, strict=True)
    return pa.table({"id": list(ids), "text": list(texts), "gold": list(gold)})


def test_glue_scores_seed_only_on_the_held_out_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from labelmill.pipelines import baseline as glue

    encoder = KeywordEncoder()
    monkeypatch.setattr(glue, "load_encoder", lambda config: (encoder, "/models/fake"))
    config = glue_config()
    assert glue.wants_seed_baseline(config)
    seed = seed_table(6, 6, [("bad", "   ", ["a"])])  # whitespace: not embedded, not trained on
    texts = ["the editor", "a player", None, "another editor"]
    y = gold_matrix([["a"], [], ["a"], ["a"]], ["a", "b"])
    result = glue.score_seed_baseline(config, seed, texts, y, ["a", "b"])
    assert result.note is None and encoder.calls[1] == ["the editor", "a player", "another editor"]
    entry = result.entry
    assert entry["kind"] == "baseline" and entry["n_scored"] == 3  # the null text is unscored
    assert entry["per_label"]["a"]["f1"] == 1.0 and entry["micro_f1"] == 1.0
    assert entry["thresholds"][1] == 1.0  # "b": no seed positive
    assert result.sources == ["expected_f1", NO_SEED_POSITIVE]
    assert {k: result.lineage[k] for k in ("backbone", "C", "seed_rows", "threshold_folds")} == {
        "backbone": "all-minilm-l6-v2",
        "C": 100.0,  # separable seed: the weakest prior has the lowest out-of-fold log-loss
        "seed_rows": 12,
        "threshold_folds": 5,
    }
    assert list(result.lineage["C_log_loss"]) == ["0.1", "1.0", "10.0", "100.0"]
    assert result.lineage["seed_rows_unusable_text"] == 1
    assert result.lineage["seed_positives"] == {"a": 6, "b": 0}


def test_glue_skips_with_a_note_when_there_is_no_usable_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from labelmill.pipelines import baseline as glue

    monkeypatch.setattr(glue, "load_encoder", lambda config: (KeywordEncoder(), "/models/fake"))
    config, y, names = glue_config(), np.zeros((1, 2)), ["a", "b"]
    none = glue.score_seed_baseline(config, None, ["x"], y, names)
    assert none.entry is None and none.note.startswith("no gold-seed rows in the aggregate")
    one = glue.score_seed_baseline(config, seed_table(1, 0, [("n", None, [])]), ["x"], y, names)
    assert one.entry is None
    assert one.note == "1 gold-seed row(s) with usable text, seed-only needs 2; not scored"
    assert glue_config().evaluate.seed_baseline  # on by default
    assert not glue.wants_seed_baseline(glue_config(seed_baseline=False))
    assert not glue.wants_seed_baseline(glue_config(seed_fraction=0.0))


def test_select_seed_keeps_seed_rows_with_gold() -> None:
    from labelmill.pipelines.baseline import select_seed

    batch = pa.table(
        {
            "id": ["a", "b", "c", "d", "e"],
            "text": ["t"] * 5,
            "gold": pa.array([["x"], None, [], ["y"], ["y"]], pa.list_(pa.string())),
            "gold_seed": pa.array([True, True, True, None, False]),
            "probs": [[0.5]] * 5,
        }
    )
    out = select_seed(batch)  # no gold, a null seed flag and held-out rows dropped; [] is gold
    assert out.column_names == ["id", "text", "gold"] and out["id"].to_pylist() == ["a", "c"]
