"""From teacher-vote records to the (N, T, K) vote tensor of :mod:`labelmill.aggregate`, and back.

A vote record (see :mod:`labelmill.records`) becomes a (K,) vector in taxonomy order:

* ``probs`` non-null: the probabilities themselves (a null entry, an unreadable label, is NaN);
* else ``labels``: multi-hot, 1.0 for a named label and 0.0 for the others;
* ``error`` set: an ABSTENTION, all NaN. An errored vote is never read as "no label applies",
  even when part of its ``probs`` could be read: the teacher did not answer as asked.

The aggregate Parquet stores one ``teacher_probs`` cell per document: T entries, each a K-list
(null entries for unreadable labels) or null where the teacher abstained.
:func:`votes_from_teacher_probs` turns a column of such cells into the (N, T, K) tensor.

Also here: per-teacher confusion counts against a reference labeling (gold seed or a hard
aggregate) and Laplace-smoothed rates from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelmill._validation import check_probs, check_votes
from labelmill.taxonomy import multi_hot


def label_index(names: Sequence[str]) -> dict[str, int]:
    """Label name -> position in taxonomy order; duplicate names raise ``ValueError``."""
    index = {name: k for k, name in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"label names must be unique, got {list(names)!r}")
    return index


def vote_vector(
    labels: Sequence[str] | None,
    probs: Sequence[float | None] | None,
    error: str | None,
    index: Mapping[str, int],
) -> np.ndarray:
    """One vote record -> (K,) float vector in taxonomy order (NaN = no information).

    labels: names | None, probs: (K,) with None entries | None, error: str | None -> (K,)

    ``error`` set -> all NaN (abstention). ``probs`` given -> used as is, None entries NaN; it
    must have K entries in [0, 1]. Otherwise ``labels`` -> multi-hot; a name outside the
    taxonomy raises ``ValueError`` naming it. A record with neither probs nor labels (and no
    error) is malformed: ``ValueError``.
    """
    n_labels = len(index)
    if error is not None:
        return np.full(n_labels, np.nan)
    if probs is not None:
        if len(probs) != n_labels:
            raise ValueError(f"probs must have {n_labels} entries, got {len(probs)}: {probs!r}")
        vec = np.array([np.nan if p is None else float(p) for p in probs], dtype=np.float64)
        if np.any((vec < 0.0) | (vec > 1.0)):
            raise ValueError(f"probs must lie in [0, 1] or be null, got {list(probs)!r}")
        return vec
    if labels is None:
        raise ValueError("a vote without error needs probs or labels, got neither")
    return multi_hot([labels], index, what="vote label")[0][0]


def _list_rows(column: Any) -> pa.ListArray | pa.LargeListArray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not isinstance(arr, pa.ListArray | pa.LargeListArray):
        raise ValueError(f"expected a list column, got {arr.type}")
    return arr


def vote_matrix(labels: Any, probs: Any, error: Any, names: Sequence[str]) -> np.ndarray:
    """Vote records, column-wise -> their (K,) vectors, as :func:`vote_vector` reads one record,
    except that a record it would reject (a label outside the taxonomy or a null label, probs of
    the wrong length or outside [0, 1], neither probs nor labels) is an abstention here.

    labels: (N,) list<string>, probs: (N,) list<double>, error: (N,) string -> (N, K) float64,
    NaN = no information (an all-NaN row is an abstention). Vectorized over Arrow buffers.
    """
    index = label_index(names)
    n_labels = len(index)
    label_rows, prob_rows = _list_rows(labels), _list_rows(probs)
    err = error.combine_chunks() if isinstance(error, pa.ChunkedArray) else error
    n_rows = len(label_rows)
    if not len(prob_rows) == len(err) == n_rows:
        raise ValueError(
            f"labels, probs and error must have one entry per record, got {n_rows}, "
            f"{len(prob_rows)}, {len(err)}"
        )
    out = np.full((n_rows, n_labels), np.nan)
    answered = ~err.is_valid().to_numpy(zero_copy_only=False)
    has_probs = prob_rows.is_valid().to_numpy(zero_copy_only=False)
    # probability votes: K entries each, in [0, 1] or null (NaN)
    length = prob_rows.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(answered & has_probs & (length == n_labels))
    if rows.size:
        values = prob_rows.take(pa.array(rows)).flatten().cast(pa.float64()).fill_null(np.nan)
        vec = np.asarray(values.to_numpy(zero_copy_only=False), np.float64).reshape(-1, n_labels)
        bad = ((vec < 0.0) | (vec > 1.0)).any(axis=1)  # NaN compares False: kept as NaN
        out[rows[~bad]] = vec[~bad]
    # label-set votes: multi-hot; one unknown or null name makes the record unreadable
    rows = np.flatnonzero(answered & ~has_probs & label_rows.is_valid().to_numpy(False))
    if rows.size:
        picked = label_rows.take(pa.array(rows))
        flat = picked.flatten()
        position = pc.index_in(flat, value_set=pa.array(list(index), flat.type))
        parent = pc.list_parent_indices(picked).to_numpy(zero_copy_only=False)
        known = position.is_valid().to_numpy(zero_copy_only=False)
        readable = np.ones(rows.size, dtype=bool)
        readable[parent[~known]] = False
        hot = np.zeros((rows.size, n_labels))
        hot[parent[known], position.drop_null().to_numpy(zero_copy_only=False)] = 1.0
        out[rows[readable]] = hot[readable]
    return out


def matrix_to_cells(matrix: np.ndarray) -> pa.ListArray:
    """(N, K) vote vectors -> ``teacher_probs`` entries, as :func:`vector_to_cell` per row: a
    null cell for an all-NaN row (abstention), null values for NaN entries."""
    mat = np.asarray(matrix, dtype=np.float64)
    if mat.ndim != 2:
        raise ValueError(f"matrix must have shape (N, K), got {mat.shape}")
    n_rows, n_labels = mat.shape
    flat = mat.reshape(-1)
    values = pa.array(flat, pa.float64(), mask=np.isnan(flat))
    offsets = pa.array(np.arange(n_rows + 1, dtype=np.int32) * n_labels, pa.int32())
    abstained = np.isnan(mat).all(axis=1)
    return pa.ListArray.from_arrays(offsets, values, mask=pa.array(abstained))


def vector_to_cell(vec: np.ndarray | None) -> list[float | None] | None:
    """(K,) vector -> a ``teacher_probs`` entry: None for an abstention, NaN entries -> None."""
    if vec is None or bool(np.all(np.isnan(vec))):
        return None
    return [None if math.isnan(v) else float(v) for v in vec.tolist()]


def votes_from_teacher_probs(column: Any, n_teachers: int, n_labels: int) -> np.ndarray:
    """A ``teacher_probs`` column (list<list<double>>) -> the vote tensor.

    column: (N,) cells of T entries, each a K-list or null -> (N, T, K), NaN for null

    Vectorized over Arrow buffers. A cell that is null or not of length T, or an entry not of
    length K, raises ``ValueError``.
    """
    if n_teachers < 1 or n_labels < 1:
        raise ValueError(f"need n_teachers >= 1 and n_labels >= 1, got {n_teachers}, {n_labels}")
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not isinstance(arr, pa.ListArray | pa.LargeListArray):
        raise ValueError(f"teacher_probs must be a list<list<double>> column, got {arr.type}")
    n_docs = len(arr)
    if arr.null_count:
        raise ValueError(f"teacher_probs has {arr.null_count} null cells; expected T-lists")
    outer_len = arr.value_lengths().to_numpy(zero_copy_only=False)
    if n_docs and np.any(outer_len != n_teachers):
        raise ValueError(
            f"every teacher_probs cell must have {n_teachers} entries, got lengths "
            f"{sorted(set(outer_len.tolist()))}"
        )
    entries = arr.flatten()  # (N * T,) list<double> with nulls for abstentions
    present = entries.is_valid().to_numpy(zero_copy_only=False)
    inner_len = entries.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)[present]
    if np.any(inner_len != n_labels):
        raise ValueError(
            f"every teacher_probs entry must have {n_labels} values, got lengths "
            f"{sorted(set(inner_len.tolist()))}"
        )
    values = entries.flatten().fill_null(np.nan).to_numpy(zero_copy_only=False)
    out = np.full((n_docs * n_teachers, n_labels), np.nan)
    out[present] = np.asarray(values, dtype=np.float64).reshape(-1, n_labels)
    return check_votes(out.reshape(n_docs, n_teachers, n_labels), "teacher_probs")


def hard_reference(probs: Any, threshold: float) -> np.ndarray:
    """Soft labels -> hard reference labels, NaN kept (no reference there).

    probs: (N, K) -> (N, K) of 1.0 / 0.0 / NaN (``probs >= threshold``)
    """
    p = check_probs(probs)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
    return np.where(np.isnan(p), np.nan, (p >= threshold).astype(np.float64))


def confusion_counts(votes: Any, reference: Any) -> np.ndarray:
    """Per-teacher, per-label confusion counts of hardened votes against a reference.

    votes: (N, T, K), reference: (N, K) 0/1 or NaN (no reference) -> (4, T, K) counts of
    (true positive, false negative, false positive, true negative). Votes are hardened at 0.5;
    cells where the teacher abstained or the reference is NaN are skipped.
    """
    arr = check_votes(votes)
    ref = check_probs(reference, "reference")
    if ref.shape != (arr.shape[0], arr.shape[2]):
        raise ValueError(
            f"reference must have shape {(arr.shape[0], arr.shape[2])}, got {ref.shape}"
        )
    if np.any(~np.isnan(ref) & (ref != 0.0) & (ref != 1.0)):
        raise ValueError("reference must contain only 0/1 or NaN values")
    counted = ~np.isnan(arr) & ~np.isnan(ref)[:, None, :]
    vote_yes = arr >= 0.5
    ref_yes = (ref == 1.0)[:, None, :]
    return np.stack(
        [
            (counted & vote_yes & ref_yes).sum(axis=0),
            (counted & ~vote_yes & ref_yes).sum(axis=0),
            (counted & vote_yes & ~ref_yes).sum(axis=0),
            (counted & ~vote_yes & ~ref_yes).sum(axis=0),
        ]
    ).astype(np.float64)


def smoothed_rates(counts: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Laplace-smoothed accuracy, sensitivity and specificity from confusion counts.

    counts: (4, T, K) (tp, fn, fp, tn) -> ((T, K), (T, K), (T, K));
    ``rate = (hits + 1) / (cases + 2)``, so no evidence gives 0.5.
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 3 or c.shape[0] != 4:
        raise ValueError(f"counts must have shape (4, T, K), got {c.shape}")
    if np.any(np.isnan(c)) or np.any(c < 0):
        raise ValueError("counts must be non-negative numbers")
    tp, fn, fp, tn = c
    accuracy = (tp + tn + 1.0) / (tp + fn + fp + tn + 2.0)
    return accuracy, (tp + 1.0) / (tp + fn + 2.0), (tn + 1.0) / (tn + fp + 2.0)
