"""Campaign selection without per-document state on the driver: the math of the distributed path.

:mod:`labelmill.selection` scores and ranks arrays that hold every candidate. At corpus scale
the campaign instead scores batches on the cluster and brings back only bounded summaries:

* **Id hashes** (:func:`id_hashes`): a stable 64-bit key per document id and salt. It decides
  the label-issue sample (:func:`sample_cutoff`), each sampled document's fold
  (:func:`hash_folds`) and the `random` strategy's order, so every worker reaches the same
  decision for a document without any list shipped from the driver.
* **Fold models** (:func:`fit_fold_models`, :func:`fold_model_probs`): the out-of-fold
  logistic regressions behind label-issue scores, fit on a bounded sample only. A sampled
  document is predicted by its own fold's model (out of fold, as in
  :func:`labelmill.selection.out_of_fold_probs`); any other document by the mean of the fold
  models' probabilities (it is out of sample for every one of them).
* **Rank sketches** (:func:`rank_histogram`, :func:`sketch_rank_normalize`): additive
  per-batch histograms of a [0, 1] component over ``RANK_BINS`` equal bins, summed on the
  driver. ``rank_norm(x)`` is then ``(below + (count - 1) / 2) / (N - 1)`` of ``x``'s bin:
  exactly :func:`labelmill.selection._rank_normalize` when distinct values fall in distinct
  bins (ties are averaged), and otherwise every value in a bin gets the bin's average rank
  (an error of at most ``count_in_bin / (N - 1)``). A component with one occupied bin is
  treated as constant (all 0).
* **Top-k** (:func:`top_rows`, :func:`merge_top`): each batch keeps its best ``m`` rows by
  priority (ties to the lower id), the driver folds them into one running best ``m``.

Pure numpy + scikit-learn: no Ray.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from labelmill._validation import as_float_array, check_binary

__all__ = [
    "RANK_BINS",
    "SELECT_OVERSAMPLE",
    "FoldModels",
    "fit_fold_models",
    "fold_model_probs",
    "hash_folds",
    "id_hashes",
    "merge_top",
    "rank_histogram",
    "sample_cutoff",
    "sketch_priority",
    "sketch_rank_normalize",
    "top_rows",
]

# 2^14 bins: 128 KiB of int64 per component, fine enough that scores a few 1e-4 apart still
# rank apart. Not tuned to any data: the components all live in [0, 1].
RANK_BINS = 1 << 14
# Candidates kept per pick before the diversity pass: the penalty (diversity x similarity) can
# push a document below others, so the greedy pass needs a pool larger than k to choose from.
SELECT_OVERSAMPLE = 4
_SPACE = float(2**64)


def id_hashes(ids: Sequence[str], salt: str) -> np.ndarray:
    """Stable 64-bit keys: (N,) str -> (N,) uint64 (blake2b of ``salt`` + id)."""
    prefix = salt.encode("utf-8") + b"\x1f"
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(prefix + i.encode("utf-8"), digest_size=8).digest())
            for i in ids
        ),
        dtype=np.uint64,
        count=len(ids),
    )


def hash_folds(ids: Sequence[str], n_folds: int, salt: str = "fold") -> np.ndarray:
    """Fold of each id: (N,) str -> (N,) int64 in [0, n_folds)."""
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds!r}")
    return (id_hashes(ids, salt) % np.uint64(n_folds)).astype(np.int64)


def sample_cutoff(hashes: np.ndarray, n_total: int, max_sample: int) -> tuple[int, float]:
    """The inclusive hash cutoff of a sample of at most ``max_sample`` of ``n_total`` ids.

    hashes: (M,) uint64 of the ids whose hash is below ``fraction * 2^64`` (the candidates the
    cluster sent back) -> (cutoff, fraction). ``fraction = min(1, max_sample / n_total)``; when
    more than ``max_sample`` came back, the cutoff is the ``max_sample``-th smallest hash, so the
    sample is exactly the ids with ``hash <= cutoff``.
    """
    if max_sample < 1 or n_total < 0:
        raise ValueError(f"need max_sample >= 1 and n_total >= 0, got {max_sample}, {n_total}")
    fraction = 1.0 if n_total <= max_sample else max_sample / n_total
    limit = 2**64 - 1 if fraction >= 1.0 else int(fraction * _SPACE) - 1
    h = np.asarray(hashes, dtype=np.uint64)
    if h.size > max_sample:
        limit = int(np.sort(h)[max_sample - 1])
    return limit, fraction


@dataclass
class FoldModels:
    """Per-fold one-vs-rest logistic models: weights (F, K, D), bias (F, K).

    A label constant on a fold's training rows has zero weights and bias ``logit(rate)`` with
    the smoothed rate ``(positives + 1) / (n_train + 2)``, so it predicts that rate.
    """

    weights: np.ndarray
    bias: np.ndarray

    @property
    def n_folds(self) -> int:
        return int(self.weights.shape[0])


def fit_fold_models(
    features: np.ndarray, labels: np.ndarray, folds: np.ndarray, n_folds: int, C: float = 1.0
) -> FoldModels:
    """Fit fold f's models on the rows whose fold is not f.

    features: (N, D), labels: (N, K) 0/1, folds: (N,) int in [0, n_folds) -> FoldModels
    (``LogisticRegression(C=C, max_iter=200)`` per label, as in ``out_of_fold_probs``).
    """
    x = as_float_array(features, "features")
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"features must be a finite (N, D) array, got shape {x.shape}")
    y = check_binary(labels, "labels")
    f = np.asarray(folds)
    if y.shape[0] != x.shape[0] or f.shape != (x.shape[0],):
        raise ValueError(
            f"labels (N, K) and folds (N,) must match features' N={x.shape[0]}, "
            f"got {y.shape} and {f.shape}"
        )
    if n_folds < 2 or (f.size and (f.min() < 0 or f.max() >= n_folds)):
        raise ValueError(f"folds must lie in [0, n_folds) with n_folds >= 2, got {n_folds!r}")
    weights = np.zeros((n_folds, y.shape[1], x.shape[1]))
    bias = np.zeros((n_folds, y.shape[1]))
    for fold in range(n_folds):
        train = f != fold
        for k in range(y.shape[1]):
            y_train = y[train, k]
            positives = float(y_train.sum())
            if positives == 0 or positives == train.sum():
                rate = (positives + 1.0) / (train.sum() + 2.0)
                bias[fold, k] = np.log(rate / (1.0 - rate))
                continue
            model = LogisticRegression(C=float(C), max_iter=200).fit(x[train], y_train)
            weights[fold, k] = model.coef_[0]
            bias[fold, k] = model.intercept_[0]
    return FoldModels(weights=weights, bias=bias)


def fold_model_probs(models: FoldModels, features: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Label probabilities: features (N, D), folds (N,) int (-1: not sampled) -> (N, K).

    A row with fold ``f >= 0`` gets ``sigmoid(x . w_fk + b_fk)`` of its own fold's models; a row
    with fold -1 the mean of that over all folds.
    """
    x = as_float_array(features, "features")
    f = np.asarray(folds, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != models.weights.shape[2] or f.shape != (x.shape[0],):
        raise ValueError(
            f"features must be (N, {models.weights.shape[2]}) with folds (N,), "
            f"got {x.shape} and {f.shape}"
        )
    if f.size and (f.min() < -1 or f.max() >= models.n_folds):
        raise ValueError(f"folds must lie in [-1, {models.n_folds}), got {f.min()}..{f.max()}")
    logits = np.einsum("nd,fkd->nfk", x, models.weights) + models.bias[None]  # (N, F, K)
    probs = 1.0 / (1.0 + np.exp(-logits))
    own = probs[np.arange(x.shape[0]), np.maximum(f, 0)]  # (N, K)
    return np.where((f >= 0)[:, None], own, probs.mean(axis=1))


def rank_histogram(x: np.ndarray, bins: int = RANK_BINS) -> np.ndarray:
    """Counts of [0, 1] values in ``bins`` equal bins: (N,) -> (bins,) int64 (1.0: last bin)."""
    arr = as_float_array(x, "x")
    if arr.ndim != 1 or np.any(~np.isfinite(arr)) or np.any((arr < 0) | (arr > 1)):
        raise ValueError(f"x must be (N,) values in [0, 1], got shape {arr.shape}")
    index = np.minimum((arr * bins).astype(np.int64), bins - 1)
    return np.bincount(index, minlength=bins).astype(np.int64)


def sketch_rank_normalize(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Approximate rank / (N - 1) of each value against the summed histogram ``counts``.

    x: (M,) in [0, 1], counts: (bins,) of all N values -> (M,) in [0, 1]; all 0 when the
    values occupy at most one bin (see the module docstring for the error bound).
    """
    c = np.asarray(counts, dtype=np.int64)
    n = int(c.sum())
    arr = as_float_array(x, "x")
    rank_histogram(arr, max(c.size, 1))  # validates x: (M,) in [0, 1]
    if n <= 1 or np.count_nonzero(c) <= 1:
        return np.zeros(arr.shape)
    b = np.minimum((arr * c.size).astype(np.int64), c.size - 1)
    below = np.cumsum(c) - c
    return (below[b] + np.maximum(c[b] - 1, 0) / 2.0) / (n - 1)


def sketch_priority(
    components: Sequence[np.ndarray], histograms: np.ndarray, weights: Sequence[float]
) -> np.ndarray:
    """Weighted sum of sketch-rank-normalized components.

    components: 3 arrays (M,), histograms: (3, bins), weights: 3 floats -> (M,)
    """
    h = np.asarray(histograms)
    if len(components) != 3 or h.ndim != 2 or h.shape[0] != 3 or len(weights) != 3:
        raise ValueError(f"need 3 components, (3, bins) histograms and 3 weights, got {h.shape}")
    total = np.zeros(np.shape(components[0]))
    for w, part, counts in zip(weights, components, h, strict=True):
        total += float(w) * sketch_rank_normalize(part, counts)
    return total


def top_rows(priority: np.ndarray, ids: Sequence[str], m: int) -> np.ndarray:
    """Positions of the best ``m`` rows, best first: by priority descending, ties to lower id.

    priority: (N,), ids: (N,) -> (min(m, N),) int64
    """
    p = as_float_array(priority, "priority")
    keys = np.asarray(ids, dtype=object)
    if p.shape != (keys.size,):
        raise ValueError(f"priority must have shape ({keys.size},), got {p.shape}")
    order = np.lexsort((keys.astype(str), -p)) if p.size else np.zeros(0, dtype=np.int64)
    return order[: max(0, int(m))].astype(np.int64)


def merge_top(
    kept: tuple[np.ndarray, list[str]], batch: tuple[np.ndarray, list[str]], m: int
) -> tuple[np.ndarray, list[str]]:
    """Fold a batch's winners into the running best ``m``: (priority (n,), ids) pairs -> same."""
    priority = np.concatenate([np.asarray(kept[0], float), np.asarray(batch[0], float)])
    ids = list(kept[1]) + list(batch[1])
    best = top_rows(priority, ids, m)
    return priority[best], [ids[i] for i in best]
