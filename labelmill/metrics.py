"""Multi-label evaluation metrics in pure numpy (no scikit-learn at runtime).

All functions take ``y_true`` of shape (N, K) with 0/1 values (bool/int/float, no NaN) and a
prediction/probability/score matrix of the same shape. Rows of the prediction matrix that
contain any NaN (all-error rows of an aggregator) are excluded from every metric before
computing it; they are not counted as errors.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from labelmill._validation import as_float_array, check_binary, check_probs, nan_rows


class ReliabilityCurve(NamedTuple):
    """Per-bin calibration data, each of shape (n_bins,); empty bins hold NaN acc/conf."""

    centers: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    counts: np.ndarray


def _pair(y_true: Any, other: Any, name: str, unit_interval: bool) -> tuple[np.ndarray, ...]:
    """Validate (y_true, other) and drop rows where ``other`` has NaN. -> ((M, K), (M, K))."""
    if unit_interval:
        arr = check_probs(other, name)
    else:
        arr = as_float_array(other, name)
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must have shape (N, K), got ndim={arr.ndim} shape={arr.shape}"
            )
        if np.any(np.isinf(arr)):
            raise ValueError(f"{name} must be finite or NaN, got an infinite value")
    y = check_binary(y_true, "y_true")
    if y.shape != arr.shape:
        raise ValueError(f"y_true shape {y.shape} does not match {name} shape {arr.shape}")
    keep = ~nan_rows(arr)
    return y[keep], arr[keep]


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise num / den with 0.0 where den == 0 (scikit-learn ``zero_division=0``)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def precision_recall_f1(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Micro/macro and per-label precision, recall and F1.

    y_true: (N, K) 0/1, y_pred: (N, K) 0/1 (NaN rows excluded) -> dict with floats
    ``micro_precision``, ``micro_recall``, ``micro_f1``, ``macro_precision``, ``macro_recall``,
    ``macro_f1`` and (K,) arrays ``precision``, ``recall``, ``f1``, ``support``.

    Any 0/0 gives 0.0, matching scikit-learn with ``zero_division=0``; macro averages are
    unweighted means over all K labels, including labels without support.
    """
    y, pred = _pair(y_true, y_pred, "y_pred", unit_interval=True)
    bad = ~((pred == 0.0) | (pred == 1.0))
    if np.any(bad):
        raise ValueError(f"y_pred must contain only 0/1 values, got {float(pred[bad][0])!r}")
    tp = (y * pred).sum(axis=0)
    fp = ((1.0 - y) * pred).sum(axis=0)
    fn = (y * (1.0 - pred)).sum(axis=0)
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    f1 = _safe_div(2.0 * tp, 2.0 * tp + fp + fn)
    tp_all, fp_all, fn_all = tp.sum(), fp.sum(), fn.sum()
    return {
        "micro_precision": float(_safe_div(tp_all, tp_all + fp_all)),
        "micro_recall": float(_safe_div(tp_all, tp_all + fn_all)),
        "micro_f1": float(_safe_div(2.0 * tp_all, 2.0 * tp_all + fp_all + fn_all)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": (tp + fn).astype(np.int64),
    }


def _check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")


def reliability_curve(y_true: Any, probs: Any, n_bins: int = 10) -> ReliabilityCurve:
    """Calibration curve over all (n, k) cells with equal-width bins on [0, 1].

    y_true: (N, K) 0/1, probs: (N, K) -> ReliabilityCurve of four (n_bins,) arrays.

    Bin b covers ``[b / n_bins, (b + 1) / n_bins)``; the last bin also includes 1.0.
    ``accuracy`` is the mean target and ``confidence`` the mean probability in each bin (NaN for
    empty bins); ``counts`` the number of cells. Rows of ``probs`` with NaN are excluded.
    """
    _check_n_bins(n_bins)
    y, p = _pair(y_true, probs, "probs", unit_interval=True)
    y, p = y.ravel(), p.ravel()
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(np.int64)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, sum_y / np.maximum(counts, 1), np.nan)
        confidence = np.where(counts > 0, sum_p / np.maximum(counts, 1), np.nan)
    centers = (np.arange(n_bins) + 0.5) / n_bins
    return ReliabilityCurve(centers, accuracy, confidence, counts)


def expected_calibration_error(y_true: Any, probs: Any, n_bins: int = 10) -> float:
    """Expected calibration error over all (n, k) cells.

    y_true: (N, K) 0/1, probs: (N, K) -> float

    ``sum_b (count_b / total) * |accuracy_b - confidence_b|`` with the bins of
    :func:`reliability_curve`. Rows of ``probs`` with NaN are excluded; NaN if nothing is left.
    """
    curve = reliability_curve(y_true, probs, n_bins)
    total = curve.counts.sum()
    if total == 0:
        return float("nan")
    filled = curve.counts > 0
    gaps = np.abs(curve.accuracy[filled] - curve.confidence[filled])
    return float((curve.counts[filled] * gaps).sum() / total)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank. x: (M,) -> (M,)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse]


def roc_auc_per_label(y_true: Any, scores: Any) -> np.ndarray:
    """Per-label ROC AUC via the Mann-Whitney rank statistic (ties count one half).

    y_true: (N, K) 0/1, scores: (N, K) real -> (K,)

    Labels whose (remaining) targets contain only one class get NaN. Rows of ``scores`` with
    NaN are excluded.
    """
    y, s = _pair(y_true, scores, "scores", unit_interval=False)
    n_labels = y.shape[1]
    auc = np.full(n_labels, np.nan)
    n_pos = y.sum(axis=0)
    n_neg = y.shape[0] - n_pos
    for k in range(n_labels):
        if n_pos[k] == 0 or n_neg[k] == 0:
            continue
        ranks = _average_ranks(s[:, k])
        rank_sum = ranks[y[:, k] == 1.0].sum()
        auc[k] = (rank_sum - n_pos[k] * (n_pos[k] + 1) / 2.0) / (n_pos[k] * n_neg[k])
    return auc
