"""Student training helpers: row weights, row selection, dev split, early stopping, thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labelmill.config import StudentConfig
from labelmill.layout import is_dev
from labelmill.student.losses import asymmetric_loss, soft_bce_loss
from labelmill.student.training import (
    MIN_TRUST_ROWS,
    EarlyStopping,
    decisions_f1,
    dev_mask,
    gold_targets,
    loss_function,
    lr_multiplier,
    parameter_groups,
    row_weights,
    student_thresholds,
    training_schedule,
    trust_note,
    untrusted_warning,
    usable_rows,
)

NAMES = ["a", "b"]
ONE = [[0.1, 0.2]]


# --- row weights ---------------------------------------------------------------------------


def test_row_weights_by_hand() -> None:
    probs = [[1.0, 0.0], [0.5, 0.5], [0.9, 0.3], [0.55, 0.5]]
    # mean |2p - 1|: 1.0, 0.0 -> floor 0.1, (0.8 + 0.4) / 2 = 0.6, (0.1 + 0.0) / 2 = 0.05 -> 0.1
    got = row_weights(probs, confidence_weighting=True, min_row_weight=0.1)
    np.testing.assert_allclose(got, [1.0, 0.1, 0.6, 0.1], rtol=1e-6)
    assert got.dtype == np.float32


def test_row_weights_off_is_one_and_empty_is_empty() -> None:
    np.testing.assert_array_equal(row_weights([[0.5, 0.5]], False, 0.1), [1.0])
    assert row_weights(np.zeros((0, 2)), True, 0.1).shape == (0,)


@pytest.mark.parametrize(
    ("probs", "floor", "match"),
    [
        ([[0.2, 0.3]], 0.0, r"min_row_weight must lie in \(0, 1\], got 0.0"),
        ([[0.2, 0.3]], 1.5, "min_row_weight must lie in"),
        ([[0.2, float("nan")]], 0.1, "must not contain NaN"),
        ([[0.2, 1.3]], 0.1, r"values must lie in \[0, 1\]"),
        ([0.2, 0.3], 0.1, r"shape \(N, K\)"),
    ],
)
def test_row_weights_errors(probs: list, floor: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        row_weights(probs, True, floor)


# --- row selection -------------------------------------------------------------------------


def test_usable_rows_rule() -> None:
    texts = ["ok", None, "error", "no probs", "eval gold", "seed gold", "nan", "plain"]
    probs = [[0.1, 0.9], [0.1, 0.9], [0.1, 0.9], None, [0.2, 0.8], [0.2, 0.8], [math.nan, 0.1]]
    probs.append([0.0, 1.0])
    errors = [None, None, "boom", None, None, None, None, None]
    has_gold = [False, False, False, False, True, True, False, False]
    seed = [None, None, None, None, False, True, None, False]
    keep = usable_rows(texts, probs, errors, has_gold, seed, 2, exclude_eval_gold=True)
    assert keep.tolist() == [True, False, False, False, False, True, False, True]
    keep_all_gold = usable_rows(texts, probs, errors, has_gold, seed, 2, exclude_eval_gold=False)
    assert keep_all_gold.tolist() == [True, False, False, False, True, True, False, True]


def test_usable_rows_errors() -> None:
    with pytest.raises(ValueError, match=r"probs must have 2 values .* got 3"):
        usable_rows(["x"], [[0.1, 0.2, 0.3]], [None], [False], [None], 2, True)
    with pytest.raises(ValueError, match="errors has 2 rows, texts has 1"):
        usable_rows(["x"], [[0.1, 0.2]], [None, None], [False], [None], 2, True)
    with pytest.raises(ValueError, match="num_labels must be an int >= 1, got 0"):
        usable_rows(["x"], [[0.1, 0.2]], [None], [False], [None], 0, True)


def test_dev_mask_follows_layout_hash() -> None:
    ids = [f"doc-{i}" for i in range(200)]
    mask = dev_mask(ids, 0.25)
    assert mask.tolist() == [is_dev(i, 0.25) for i in ids]
    assert 20 < mask.sum() < 80
    with pytest.raises(ValueError, match=r"dev_fraction must lie in \(0, 1\), got 0.0"):
        dev_mask(ids, 0.0)


# --- early stopping ------------------------------------------------------------------------


def test_early_stopping_tracks_best_and_patience() -> None:
    tracker = EarlyStopping(patience=2)
    assert tracker.update(1.0) is True
    assert tracker.update(0.8) is True
    assert tracker.update(0.8) is False  # equal is not better
    assert not tracker.should_stop
    assert tracker.update(0.9) is False
    assert tracker.should_stop
    assert (tracker.best_loss, tracker.best_epoch, tracker.epochs_run) == (0.8, 2, 4)


def test_early_stopping_improvement_resets_and_min_delta() -> None:
    tracker = EarlyStopping(patience=1, min_delta=0.1)
    tracker.update(1.0)
    assert tracker.update(0.95) is False and tracker.should_stop  # not better by 0.1
    tracker = EarlyStopping(patience=2)
    tracker.update(1.0)
    tracker.update(1.1)
    tracker.update(0.5)
    assert tracker.bad_epochs == 0 and not tracker.should_stop


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patience": 0}, "patience must be an int >= 1, got 0"),
        ({"patience": True}, "patience must be an int >= 1, got True"),
        ({"patience": 1, "min_delta": -1.0}, "min_delta must be a number >= 0, got -1.0"),
    ],
)
def test_early_stopping_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


def test_early_stopping_rejects_non_finite_loss() -> None:
    with pytest.raises(ValueError, match="dev loss must be a finite number, got nan"):
        EarlyStopping(2).update(float("nan"))


# --- gold targets, student thresholds, schedule ----------------------------------------------


def test_gold_targets_override_and_ignore_unknown_labels() -> None:
    assert gold_targets(["b", "unknown"], NAMES) == [0.0, 1.0]
    assert gold_targets([], NAMES) == [0.0, 0.0]
    assert gold_targets(None, NAMES) is None


def test_student_thresholds_use_gold_dev_rows_with_enough_positives() -> None:
    # Label a: 10 gold-seed positives at 0.3, 10 negatives at 0.1 -> tuned between them on
    # the seed. Label b: no positive in the seed -> the prevalence rule on the corpus sample.
    probs = np.array([[0.3, 0.9]] * 10 + [[0.1, 0.05]] * 10)
    gold = [["a"]] * 10 + [[]] * 10
    # corpus sample: b's targets expect 2 positives in 8 rows (mean 0.25): the cut lies between
    # the student's 2nd and 3rd largest probabilities of b, (0.6 + 0.4) / 2, whatever its
    # calibration
    corpus = np.array([[0.5, p] for p in (0.9, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01)])
    targets = np.array([[0.0, t] for t in (0.5, 0.5, 0.25, 0.25, 0.5, 0.0, 0.0, 0.0)])
    scores = student_thresholds(probs, gold, [True] * 20, NAMES, corpus, targets)
    assert scores.sources == ("gold_seed", "prevalence")
    assert 0.1 < scores.thresholds[0] <= 0.3
    assert scores.thresholds[1] == pytest.approx(0.5)
    assert scores.source == "gold_seed:1,prevalence:1" and scores.gold_rows == 20
    # dev seed rows: a perfect; b predicted on the ten 0.9 rows whose gold lacks b: 10 FP
    assert scores.micro_f1 == pytest.approx(2 * 10 / (2 * 10 + 10))


def test_student_thresholds_without_gold_rows_report_nan_f1() -> None:
    probs = [[0.9, 0.1], [0.1, 0.2]]
    scores = student_thresholds(probs, [None, None], [False, False], NAMES, probs, probs)
    assert scores.sources == ("prevalence", "prevalence") and scores.gold_rows == 0
    # expected counts round(0.5 * 2) = 1 and round(0.15 * 2) = 0: a cuts between its two
    # values, (0.9 + 0.1) / 2; b is never predicted
    np.testing.assert_allclose(scores.thresholds, [0.5, 1.0])
    assert math.isnan(scores.micro_f1)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([[0.1, 0.2]], [None], [False], ["a"]), "names has 1 labels, student_probs has 2"),
        (([[0.1, 0.2]], [], [False], NAMES), r"gold \(0\) and gold_seed \(1\) need 1 rows"),
        ((np.zeros((0, 2)), [], [], NAMES), "no dev rows to tune thresholds on"),
    ],
)
def test_student_thresholds_errors(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        student_thresholds(*args, [[0.1, 0.2]], [[0.0, 1.0]])


def test_student_thresholds_need_a_matching_corpus_sample() -> None:
    with pytest.raises(ValueError, match=r"corpus_probs \(1, 2\) and corpus_targets \(2, 2\)"):
        student_thresholds([[0.1, 0.2]], [None], [False], NAMES, [[0.1, 0.2]], [[0, 1], [1, 0]])


def test_decisions_f1_on_seed_rows_only() -> None:
    labels = [["a"], ["a", "b"], ["b"], None]
    gold = [["a"], ["a"], None, ["b"]]
    seed = [True, True, True, False]
    # rows 0, 1 count (row 2 has no gold, row 3 is not seed): tp 2, fp 1, fn 0 -> 4 / 5
    assert decisions_f1(labels, gold, seed, NAMES) == pytest.approx(0.8)
    assert math.isnan(decisions_f1(labels, gold, [False] * 4, NAMES))
    with pytest.raises(ValueError, match="need one length"):
        decisions_f1(labels, gold[:2], seed, NAMES)


def test_untrusted_warning_only_below_the_aggregate_on_enough_rows() -> None:
    assert untrusted_warning(0.5, 0.4, 30) is None and untrusted_warning(0.4, 0.4, 30) is None
    assert untrusted_warning(float("nan"), 0.4, 30) is None
    message = untrusted_warning(0.3, 0.45, 30)
    assert message is not None and "the 30 dev gold rows (micro-F1 0.300 vs 0.450)" in message
    # below MIN_TRUST_ROWS one document moves F1 too much to judge: no warning
    assert untrusted_warning(0.3, 0.45, MIN_TRUST_ROWS - 1) is None
    assert trust_note(0.3, 0.45, 4).startswith("  trust check: 4 dev gold row(s), 20 needed")
    assert trust_note(0.5, 0.45, 20) == (
        "  trust check: student 0.500 >= aggregate 0.450 micro-F1 on 20 dev gold rows"
    )
    assert trust_note(0.3, 0.45, 20) == untrusted_warning(0.3, 0.45, 20)


def test_early_stopping_baseline_is_epoch_zero() -> None:
    tracker = EarlyStopping(patience=1)
    tracker.record_baseline(0.5)
    assert (tracker.best_loss, tracker.best_epoch, tracker.epochs_run) == (0.5, 0, 0)
    assert tracker.update(0.6) is False and tracker.should_stop and tracker.best_epoch == 0
    with pytest.raises(ValueError, match="finite number"):
        tracker.record_baseline(float("inf"))


def test_lr_multiplier_warms_up_then_decays_to_zero() -> None:
    got = [lr_multiplier(step, 10, 2) for step in range(11)]
    assert got[:3] == [0.5, 1.0, 1.0]  # steps 0, 1 warm up; step 2 starts the decay at 8/8
    assert got[6] == pytest.approx(4 / 8) and got[10] == 0.0


def test_training_schedule_adds_epochs_on_small_splits() -> None:
    config = StudentConfig(batch_size=16, epochs=2, min_steps=100, max_epochs=30)
    # 179 rows -> 12 steps per epoch -> 9 epochs reach 108 >= 100 steps; 10% warm-up.
    assert training_schedule(179, config) == (9, 108, 11)
    big = StudentConfig(batch_size=16, epochs=2, min_steps=100, max_epochs=30)
    assert training_schedule(16_000, big) == (2, 2000, 200)
    capped = StudentConfig(batch_size=16, epochs=2, min_steps=10_000, max_epochs=5)
    assert training_schedule(16, capped)[0] == 5
    with pytest.raises(ValueError, match="rows must be >= 1"):
        training_schedule(0, config)


# --- loss choice ---------------------------------------------------------------------------


def test_loss_function_follows_config() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    targets = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
    weights = torch.tensor([1.0, 0.5])
    bce = loss_function(StudentConfig(loss="bce"))
    assert bce is soft_bce_loss
    asl = loss_function(StudentConfig(loss="asymmetric", asl_gamma_neg=2.0, asl_clip=0.1))
    expected = asymmetric_loss(logits, targets, weights, gamma_pos=0.0, gamma_neg=2.0, clip=0.1)
    assert float(asl(logits, targets, weights)) == pytest.approx(float(expected))


def test_parameter_groups_split_encoder_from_pooler_and_head() -> None:
    class Pooler(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = torch.nn.Linear(2, 2)

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Linear(2, 2)
            self.pooler = Pooler()
            self.classifier = torch.nn.Linear(2, 3)

    model = Tiny()
    config = StudentConfig(learning_rate=1e-4, head_learning_rate=3e-3, weight_decay=0.01)
    body, head = parameter_groups(model, config)
    assert (body["lr"], head["lr"]) == (1e-4, 3e-3)
    assert body["weight_decay"] == head["weight_decay"] == 0.01
    assert [id(p) for p in body["params"]] == [id(p) for p in model.encoder.parameters()]
    expected = [*model.pooler.parameters(), *model.classifier.parameters()]
    assert [id(p) for p in head["params"]] == [id(p) for p in expected]
    wrapped = torch.nn.Sequential()
    wrapped.add_module("module", model)  # DDP-style "module." prefix
    assert len(parameter_groups(wrapped, config)[1]["params"]) == 4


def test_parameter_groups_need_a_head() -> None:
    with pytest.raises(ValueError, match="no classification head parameters in Linear"):
        parameter_groups(torch.nn.Linear(2, 2), StudentConfig())


def test_training_rows_rules_hand_computed() -> None:
    from labelmill.student.training import training_rows

    settings = StudentConfig(dev_fraction=0.5, confidence_weighting=True)  # floor 0.1
    ids = ["a", "b", "c", "d", "e", "f"]
    rows = training_rows(
        ids,
        ["t", "t", "t", None, "t", "t"],
        [[0.9, 0.1], [0.5, 0.5], [0.9, 0.9], [0.9, 0.1], None, [0.2, 0.8]],
        [None, None, None, None, "boom", None],
        [None, None, None, None, ["y"], ["x"]],
        [False, False, False, False, True, False],
        ["v1", "v1", "v2", "v1", "v1", "v1"],
        "v1",
        2,
        ["x", "y"],
        settings,
    )
    # a: usable; b: usable, all-0.5 row at the 0.1 floor; c: other taxonomy version; d: no
    # text; e: gold seed, learns its gold (the error is the aggregate's); f: held-out gold
    assert rows.targets == [[0.9, 0.1], [0.5, 0.5], None, None, [0.0, 1.0], None]
    np.testing.assert_allclose(rows.weights, [0.8, 0.1, 0.0, 0.0, 1.0, 0.0], rtol=1e-6)
    for i in (0, 1, 4):
        assert rows.split[i] == ("dev" if is_dev(ids[i], 0.5) else "train")
    assert [rows.split[i] for i in (2, 3, 5)] == [None, None, None]
    # without names the seed keeps the aggregate's row, which is an error row
    plain = training_rows(
        ids[4:5], ["t"], [None], ["boom"], [["y"]], [True], ["v1"], "v1", 2, None, settings
    )
    assert plain.targets == [None] and plain.split == [None]


def test_training_rows_errors() -> None:
    from labelmill.student.training import training_rows

    settings = StudentConfig()
    with pytest.raises(ValueError, match="texts has 0 rows, ids has 1"):
        training_rows(["a"], [], [None], [None], [None], [False], ["v"], "v", 2, None, settings)
    with pytest.raises(ValueError, match=r"names must hold 2 labels, got \['x'\]"):
        training_rows(["a"], ["t"], [None], [None], [None], [False], ["v"], "v", 2, ["x"], settings)
    with pytest.raises(ValueError, match="probs must have 2 values"):
        training_rows(["a"], ["t"], [[0.5]], [None], [None], [False], ["v"], "v", 2, None, settings)
