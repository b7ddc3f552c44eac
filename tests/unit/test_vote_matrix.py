"""Tests for labelmill.vote_matrix (pure numpy / pyarrow, no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from labelmill.aggregation import DSParams, param_change
from labelmill.taxonomy import multi_hot
from labelmill.vote_matrix import (
    confusion_counts,
    hard_reference,
    label_index,
    matrix_to_cells,
    smoothed_rates,
    vector_to_cell,
    vote_matrix,
    vote_vector,
    votes_from_teacher_probs,
)

NAN = np.nan
INDEX = label_index(["a", "b", "c"])


def test_label_index_and_duplicates() -> None:
    assert INDEX == {"a": 0, "b": 1, "c": 2}
    with pytest.raises(ValueError, match=r"unique, got \['a', 'a'\]"):
        label_index(["a", "a"])


def test_vote_vector_labels_are_multi_hot() -> None:
    np.testing.assert_array_equal(vote_vector(["c", "a"], None, None, INDEX), [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(vote_vector([], None, None, INDEX), [0.0, 0.0, 0.0])


def test_vote_vector_probs_win_over_labels_and_null_entries_are_nan() -> None:
    vec = vote_vector(["a"], [0.25, None, 0.75], None, INDEX)
    np.testing.assert_array_equal(vec, [0.25, NAN, 0.75])


def test_vote_vector_error_is_an_abstention() -> None:
    vec = vote_vector(["a"], [0.9, 0.1, 0.2], "engine error: boom", INDEX)
    assert np.isnan(vec).all() and vec.shape == (3,)
    # even an unknown label does not matter once the vote errored
    assert np.isnan(vote_vector(["zzz"], None, "cut", INDEX)).all()


def test_vote_vector_errors() -> None:
    with pytest.raises(ValueError, match="vote label 'zzz' is not in the taxonomy"):
        vote_vector(["a", "zzz"], None, None, INDEX)
    with pytest.raises(ValueError, match=r"probs must have 3 entries, got 2"):
        vote_vector(None, [0.1, 0.2], None, INDEX)
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\] or be null, got \[1.5"):
        vote_vector(None, [1.5, 0.2, None], None, INDEX)
    with pytest.raises(ValueError, match="needs probs or labels, got neither"):
        vote_vector(None, None, None, INDEX)


def test_vector_to_cell() -> None:
    assert vector_to_cell(None) is None
    assert vector_to_cell(np.array([NAN, NAN])) is None
    assert vector_to_cell(np.array([1.0, NAN, 0.0])) == [1.0, None, 0.0]


def test_votes_from_teacher_probs_handles_abstentions_and_null_entries() -> None:
    column = pa.chunked_array(
        [
            [[[1.0, 0.0, 1.0], None], [None, None]],
            [[[0.5, None, 0.25], [0.0, 1.0, 0.0]]],
        ],
        pa.list_(pa.list_(pa.float64())),
    )
    votes = votes_from_teacher_probs(column, 2, 3)
    expected = np.array(
        [
            [[1.0, 0.0, 1.0], [NAN, NAN, NAN]],
            [[NAN, NAN, NAN], [NAN, NAN, NAN]],
            [[0.5, NAN, 0.25], [0.0, 1.0, 0.0]],
        ]
    )
    np.testing.assert_array_equal(votes, expected)
    assert votes_from_teacher_probs(column.slice(0, 0), 2, 3).shape == (0, 2, 3)


def test_votes_from_teacher_probs_errors() -> None:
    typ = pa.list_(pa.list_(pa.float64()))
    with pytest.raises(ValueError, match="must have 2 entries, got lengths \\[1\\]"):
        votes_from_teacher_probs(pa.array([[[1.0, 0.0, 1.0]]], typ), 2, 3)
    with pytest.raises(ValueError, match="must have 3 values, got lengths \\[2\\]"):
        votes_from_teacher_probs(pa.array([[[1.0, 0.0], None]], typ), 2, 3)
    with pytest.raises(ValueError, match="1 null cells"):
        votes_from_teacher_probs(pa.array([None], typ), 2, 3)
    with pytest.raises(ValueError, match="list<list<double>> column, got double"):
        votes_from_teacher_probs(pa.array([1.0]), 2, 3)
    with pytest.raises(ValueError, match="n_teachers >= 1 and n_labels >= 1, got 0, 3"):
        votes_from_teacher_probs(pa.array([], typ), 0, 3)
    with pytest.raises(ValueError, match=r"teacher_probs values must lie in \[0, 1\]"):
        votes_from_teacher_probs(pa.array([[[2.0, 0.0, 0.0]]], typ), 1, 3)


def test_multi_hot() -> None:
    gold, has = multi_hot([["b"], None, []], INDEX)
    np.testing.assert_array_equal(gold, [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(has, [True, False, True])
    with pytest.raises(ValueError, match=r"gold label 'q' is not in the taxonomy \(row 1\)"):
        multi_hot([["a"], ["q"]], INDEX, what="gold label")
    with pytest.raises(ValueError, match=r"labels\[0\] must be a list of label names, got 'a'"):
        multi_hot(["a"], INDEX)


def test_hard_reference() -> None:
    ref = hard_reference(np.array([[0.5, 0.49, NAN]]), 0.5)
    np.testing.assert_array_equal(ref, [[1.0, 0.0, NAN]])
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\], got 1.5"):
        hard_reference(np.zeros((1, 1)), 1.5)


def test_confusion_counts_by_hand() -> None:
    # 3 docs, 2 teachers, 1 label; reference [1, 0, NaN]
    votes = np.array([[[0.9], [0.0]], [[1.0], [NAN]], [[1.0], [1.0]]])
    counts = confusion_counts(votes, np.array([[1.0], [0.0], [NAN]]))
    # teacher 0: doc0 tp, doc1 fp (doc2 has no reference); teacher 1: doc0 fn (doc1 abstained)
    np.testing.assert_array_equal(counts[:, :, 0], [[1, 0], [0, 1], [1, 0], [0, 0]])
    with pytest.raises(ValueError, match=r"reference must have shape \(3, 1\), got \(2, 1\)"):
        confusion_counts(votes, np.zeros((2, 1)))
    with pytest.raises(ValueError, match="only 0/1 or NaN"):
        confusion_counts(votes, np.full((3, 1), 0.5))


def test_smoothed_rates_by_hand() -> None:
    counts = np.array([3.0, 1.0, 0.0, 4.0]).reshape(4, 1, 1)  # tp, fn, fp, tn
    accuracy, sensitivity, specificity = smoothed_rates(counts)
    assert accuracy[0, 0] == pytest.approx(8 / 10)
    assert sensitivity[0, 0] == pytest.approx(4 / 6)
    assert specificity[0, 0] == pytest.approx(5 / 6)
    assert smoothed_rates(np.zeros((4, 2, 2)))[1].tolist() == [[0.5, 0.5], [0.5, 0.5]]
    with pytest.raises(ValueError, match=r"shape \(4, T, K\), got \(3, 1\)"):
        smoothed_rates(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="non-negative"):
        smoothed_rates(-np.ones((4, 1, 1)))


def test_param_change() -> None:
    old = DSParams(np.full((2, 1), 0.8), np.full((2, 1), 0.7), np.array([0.3]))
    new = DSParams(np.array([[0.8], [0.75]]), np.full((2, 1), 0.6), np.array([0.31]))
    assert param_change(old, new) == pytest.approx(0.1)
    other = DSParams(np.full((1, 1), 0.8), np.full((1, 1), 0.7), np.array([0.3]))
    with pytest.raises(ValueError, match=r"different shapes: \(2, 1\) vs \(1, 1\)"):
        param_change(old, other)


def test_vote_matrix_reads_records_like_vote_vector() -> None:
    labels = pa.array(
        [["c", "a"], [], ["a"], ["zzz"], ["a", None], None, None, None, ["b"], None, ["a"]],
        pa.list_(pa.string()),
    )
    probs = pa.array(
        [None, None, [0.9, 0.1, 0.2], None, None, None, [0.25, None, 0.75], [0.1, 0.2],
         None, [1.5, 0.2, None], None],
        pa.list_(pa.float64()),
    )  # fmt: skip
    error = pa.array([None, None, "boom", None, None, None, None, None, None, None, None])
    got = vote_matrix(labels, probs, error, ["a", "b", "c"])
    expected = [
        [1.0, 0.0, 1.0],  # labels -> multi-hot
        [0.0, 0.0, 0.0],  # an empty label set: "no label applies"
        [NAN] * 3,  # errored: abstention even with probs
        [NAN] * 3,  # a label outside the taxonomy: unreadable
        [NAN] * 3,  # a null label name: unreadable
        [NAN] * 3,  # neither probs nor labels: unreadable
        [0.25, NAN, 0.75],  # probs as is, a null entry NaN
        [NAN] * 3,  # probs of the wrong length
        [0.0, 1.0, 0.0],
        [NAN] * 3,  # a prob outside [0, 1]
        [1.0, 0.0, 0.0],
    ]
    np.testing.assert_array_equal(got, np.array(expected))
    # chunked columns, sliced arrays and no rows
    sliced = vote_matrix(
        pa.chunked_array([labels.slice(6, 3)]),
        probs.slice(6, 3),
        error.slice(6, 3),
        ["a", "b", "c"],
    )
    np.testing.assert_array_equal(sliced, np.array(expected[6:9]))
    assert vote_matrix(labels[:0], probs[:0], error[:0], ["a"]).shape == (0, 1)
    with pytest.raises(ValueError, match="one entry per record, got 11, 11, 2"):
        vote_matrix(labels, probs, error[:2], ["a", "b", "c"])
    with pytest.raises(ValueError, match="expected a list column, got string"):
        vote_matrix(error, probs, error, ["a", "b", "c"])
    with pytest.raises(ValueError, match="unique"):
        vote_matrix(labels, probs, error, ["a", "a"])


def test_matrix_to_cells_nulls_for_nan() -> None:
    cells = matrix_to_cells(np.array([[1.0, NAN, 0.0], [NAN, NAN, NAN], [0.5, 0.5, 0.5]]))
    assert cells.type == pa.list_(pa.float64())
    assert cells.to_pylist() == [[1.0, None, 0.0], None, [0.5, 0.5, 0.5]]
    assert matrix_to_cells(np.zeros((0, 2))).to_pylist() == []
    with pytest.raises(ValueError, match=r"shape \(N, K\), got \(3,\)"):
        matrix_to_cells(np.zeros(3))
