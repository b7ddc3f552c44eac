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
    EarlyStopping,
    choose_threshold_targets,
    dev_mask,
    loss_function,
    parameter_groups,
    row_weights,
    tune_on_dev,
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


# --- threshold targets ---------------------------------------------------------------------


def test_threshold_targets_use_gold_seed_when_enough() -> None:
    agg = [[0.9, 0.1], [0.2, 0.7], [0.6, 0.6], [0.1, 0.1]]
    gold = [["a"], ["b", "unknown"], None, ["a", "b"]]
    seed = [True, True, False, False]
    chosen = choose_threshold_targets(agg, gold, seed, NAMES, 0.5, min_gold_rows=2)
    assert chosen.source == "gold_seed"
    assert chosen.rows.tolist() == [0, 1]
    np.testing.assert_array_equal(chosen.targets, [[1, 0], [0, 1]])


def test_threshold_targets_fall_back_to_aggregate() -> None:
    agg = [[0.9, 0.1], [0.2, 0.7], [math.nan, math.nan], [0.5, 0.49]]
    gold = [["a"], None, None, None]
    seed = [True, False, False, False]
    chosen = choose_threshold_targets(agg, gold, seed, NAMES, 0.5, min_gold_rows=2)
    assert chosen.source == "aggregate"
    assert chosen.rows.tolist() == [0, 1, 3]  # the NaN row is left out
    np.testing.assert_array_equal(chosen.targets, [[1, 0], [0, 1], [1, 0]])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([[0.1, 0.2]], [None], [False], ["a"], 0.5, 1), "names has 1 labels, agg_probs has 2"),
        (([[0.1, 0.2]], [], [False], NAMES, 0.5, 1), r"gold \(0\) and gold_seed \(1\) need 1 rows"),
        (
            ([[0.1, 0.2]], [None], [False], NAMES, 1.0, 1),
            r"threshold must lie in \(0, 1\), got 1.0",
        ),
        (
            ([[0.1, 0.2]], [None], [False], NAMES, 0.5, 0),
            "min_gold_rows must be an int >= 1, got 0",
        ),
    ],
)
def test_threshold_targets_errors(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        choose_threshold_targets(*args)


def test_tune_on_dev_scores_at_tuned_thresholds() -> None:
    # Student separates label a at 0.3 and label b at 0.7; aggregate targets are clean.
    student = np.array([[0.35, 0.8], [0.32, 0.1], [0.1, 0.75], [0.05, 0.2]])
    agg = np.array([[0.9, 0.9], [0.9, 0.1], [0.1, 0.9], [0.1, 0.1]])
    scores = tune_on_dev(student, agg, [None] * 4, [False] * 4, NAMES, 0.5, 20)
    assert scores.source == "aggregate" and scores.rows == 4
    assert 0.1 < scores.thresholds[0] <= 0.3 and 0.2 < scores.thresholds[1] <= 0.75
    assert scores.micro_f1 == pytest.approx(1.0) and scores.macro_f1 == pytest.approx(1.0)


def test_tune_on_dev_errors() -> None:
    with pytest.raises(ValueError, match=r"student_probs shape \(1, 2\) does not match"):
        tune_on_dev([[0.1, 0.2]], [[0.1, 0.2, 0.3]], [None], [False], NAMES, 0.5, 1)
    nan_rows = [[math.nan, math.nan]]
    with pytest.raises(ValueError, match="no dev rows to tune thresholds on"):
        tune_on_dev([[0.1, 0.2]], nan_rows, [None], [False], NAMES, 0.5, 1)


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
