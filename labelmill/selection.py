"""Scoring and picking documents for a budgeted relabeling campaign.

A campaign sends a limited number of documents to a stronger, pricier teacher. Which documents
are worth the money? Three signals, each a per-document score in [0, 1] (higher = relabel first):

* **Uncertainty** (:func:`uncertainty_scores`, :func:`margin_scores`): the student is unsure.
  The mean binary entropy over labels, or how close the label nearest its decision threshold is.
* **Disagreement** (:func:`disagreement_scores`): the current teachers contradict each other.
  The mean absolute difference between pairs of non-abstaining teachers, averaged over labels.
* **Label issue** (:func:`label_issue_scores`, :func:`label_issue_cells`): the current
  (aggregate) label looks wrong to a model that never saw it. Confident-learning style, one-vs-
  rest per label, on out-of-fold probabilities (:func:`out_of_fold_probs`).

:func:`priority_scores` combines them as a weighted sum after *rank-normalizing* each
component: the raw scales are not comparable (entropy bunches near 1 for a hedging student,
label-issue scores are mostly 0), so each component is replaced by its rank / (N - 1) and the
weights then say how much each ordering counts. A constant component carries no ordering and
contributes 0.

:func:`select_diverse` picks greedily by priority minus ``diversity`` times the largest cosine
similarity to an already picked document, so a cluster of near-duplicates is not bought many
times over. :func:`select_random` is the baseline every campaign should be compared against.

Pure numpy + scikit-learn: no Ray, torch, transformers or vLLM.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from labelmill._validation import (
    as_float_array,
    check_binary,
    check_finite,
    check_probs,
    check_votes,
)

__all__ = [
    "disagreement_scores",
    "issue_thresholds",
    "label_issue_cells",
    "label_issue_scores",
    "margin_scores",
    "out_of_fold_probs",
    "priority_scores",
    "select_diverse",
    "select_random",
    "uncertainty_scores",
]


def _check_finite_probs(probs: np.ndarray, name: str) -> np.ndarray:
    """check_probs without NaN and with at least one label: (N, K) -> float (N, K)."""
    arr = check_probs(probs, name)
    if arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least one label, got shape {arr.shape}")
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} must not contain NaN, got shape {arr.shape} with NaN")
    return arr


def _check_int(value: object, name: str, minimum: int) -> int:
    """An integer (not bool) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_scores(x: np.ndarray, name: str) -> np.ndarray:
    """A finite score vector: (N,) -> float (N,)."""
    return check_finite(x, name, "N")


def uncertainty_scores(probs: np.ndarray) -> np.ndarray:
    """Mean binary entropy (bits) over labels.

    probs: (N, K) in [0, 1] -> (N,) in [0, 1]

    ``H(p) = -p log2 p - (1 - p) log2(1 - p)``: 0 at p in {0, 1}, 1 at p = 0.5.
    """
    p = _check_finite_probs(probs, "probs").astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0.0))
    return np.clip(h.mean(axis=1), 0.0, 1.0)


def margin_scores(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How close the label nearest its decision threshold is.

    probs: (N, K) in [0, 1], thresholds: (K,) in [0, 1] -> (N,) in [0, 1]

    ``1 - min_k |p_k - t_k| / max(t_k, 1 - t_k)``: 1 when some label sits exactly on its
    threshold, 0 when every label is as far from its threshold as it can be.
    """
    p = _check_finite_probs(probs, "probs").astype(np.float64)
    t = as_float_array(thresholds, "thresholds").astype(np.float64)
    if t.shape != (p.shape[1],):
        raise ValueError(f"thresholds must have shape ({p.shape[1]},), got {t.shape}")
    if np.any(np.isnan(t)) or np.any((t < 0.0) | (t > 1.0)):
        raise ValueError(f"thresholds must lie in [0, 1], got {t.min()!r}..{t.max()!r}")
    distance = np.abs(p - t) / np.maximum(t, 1.0 - t)
    return np.clip(1.0 - distance.min(axis=1), 0.0, 1.0)


def disagreement_scores(teacher_probs: np.ndarray) -> np.ndarray:
    """Mean pairwise disagreement between non-abstaining teachers.

    teacher_probs: (N, T, K) in [0, 1], NaN = abstained -> (N,) in [0, 1]

    For each (document, label) with at least 2 observing teachers, ``d`` is the mean over
    unordered teacher pairs of ``|p_a - p_b|`` (for hard votes: the fraction of disagreeing
    pairs). The document score is the mean of ``d`` over the labels with >= 2 observers; a
    document with fewer than 2 observers on every label scores 0.
    """
    arr = check_votes(teacher_probs, "teacher_probs")
    n_teach = arr.shape[1]
    # Sum of |x_i - x_j| over pairs = sum_i (2i - n + 1) x_(i) for the n observed values sorted
    # ascending (x_(i) is smaller than i values and larger than n - 1 - i). NaN sorts last.
    ordered = np.sort(arr, axis=1)  # (N, T, K)
    observed = (~np.isnan(arr)).sum(axis=1, keepdims=True)  # (N, 1, K)
    rank = np.arange(n_teach, dtype=np.float64)[None, :, None]  # (1, T, 1)
    coef = np.where(rank < observed, 2.0 * rank - observed + 1.0, 0.0)
    pair_sum = (coef * np.nan_to_num(ordered, nan=0.0)).sum(axis=1)  # (N, K)
    n_obs = observed[:, 0, :].astype(np.float64)  # (N, K)
    n_pairs = n_obs * (n_obs - 1.0) / 2.0
    scored = n_obs >= 2
    d = np.divide(pair_sum, n_pairs, out=np.zeros_like(pair_sum), where=scored)
    n_scored = scored.sum(axis=1)
    total = np.where(scored, d, 0.0).sum(axis=1)
    out = np.divide(total, n_scored, out=np.zeros(arr.shape[0]), where=n_scored > 0)
    return np.clip(out, 0.0, 1.0)


def _issue_inputs(
    oof_probs: np.ndarray,
    labels: np.ndarray,
    thresholds: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated (p, y, t1, t0): p, y (N, K); per-class thresholds t1, t0 (K,) (given, or
    from these rows)."""
    p = _check_finite_probs(oof_probs, "oof_probs").astype(np.float64)
    y = check_binary(labels, "labels", shape=p.shape).astype(bool)
    if thresholds is not None:
        t1, t0 = (np.asarray(t, dtype=np.float64) for t in thresholds)
        if t1.shape != (p.shape[1],) or t0.shape != (p.shape[1],):
            raise ValueError(f"thresholds must be two ({p.shape[1]},) arrays, got {t1.shape}")
        return p, y, t1, t0
    n_pos, n_neg = y.sum(axis=0), (~y).sum(axis=0)
    sum_pos = np.where(y, p, 0.0).sum(axis=0)
    sum_neg = np.where(~y, 1.0 - p, 0.0).sum(axis=0)
    t1 = np.divide(sum_pos, n_pos, out=np.full(p.shape[1], 0.5), where=n_pos > 0)
    t0 = np.divide(sum_neg, n_neg, out=np.full(p.shape[1], 0.5), where=n_neg > 0)
    return p, y, t1, t0


def issue_thresholds(oof_probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-class thresholds (t1, t0) of :func:`label_issue_scores`: (N, K), (N, K) -> 2x (K,).

    Computed on a sample, they let :func:`label_issue_scores` score any other rows alike.
    """
    _, _, t1, t0 = _issue_inputs(oof_probs, labels)
    return t1, t0


def label_issue_scores(
    oof_probs: np.ndarray,
    labels: np.ndarray,
    thresholds: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Confident-learning self-confidence deficit, one-vs-rest per label.

    oof_probs: (N, K) in [0, 1] out-of-fold, labels: (N, K) 0/1 -> (N,) in [0, 1];
    ``thresholds``: (t1, t0) of :func:`issue_thresholds` (default: from these rows)

    Per class k the thresholds are the average self-confidence of each given side:
    ``t1_k = mean(p[:, k] | labels[:, k] == 1)`` and ``t0_k = mean(1 - p[:, k] | labels[:, k]
    == 0)`` (0.5 when a side is empty). A cell labeled 1 scores ``max(0, t1_k - p) / t1_k``,
    a cell labeled 0 scores ``max(0, t0_k - (1 - p)) / t0_k`` (0 when the threshold is 0):
    how far the model's confidence in the given label falls short of what that label usually
    gets. The document score is the max over labels, so one suspicious label ranks it high.
    """
    p, y, t1, t0 = _issue_inputs(oof_probs, labels, thresholds)
    conf = np.where(y, p, 1.0 - p)  # self-confidence in the given label
    thresh = np.where(y, t1, t0)  # (N, K) via broadcasting of (K,)
    deficit = np.maximum(thresh - conf, 0.0)
    cell = np.divide(deficit, thresh, out=np.zeros_like(deficit), where=thresh > 0)
    return np.clip(cell.max(axis=1), 0.0, 1.0)


def label_issue_cells(oof_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Off-diagonal cells of the per-label confident joint.

    oof_probs: (N, K) in [0, 1] out-of-fold, labels: (N, K) 0/1 -> (N, K) bool

    With ``t1_k``, ``t0_k`` as in :func:`label_issue_scores`: a cell labeled 1 is an issue when
    ``p < t1_k`` and ``1 - p >= t0_k`` (confidently negative); a cell labeled 0 is an issue when
    ``1 - p < t0_k`` and ``p >= t1_k`` (confidently positive).
    """
    p, y, t1, t0 = _issue_inputs(oof_probs, labels)
    looks_negative = (p < t1) & (1.0 - p >= t0)
    looks_positive = (1.0 - p < t0) & (p >= t1)
    return np.where(y, looks_negative, looks_positive)


def out_of_fold_probs(
    features: np.ndarray, labels: np.ndarray, n_folds: int = 5, seed: int = 0, C: float = 1.0
) -> np.ndarray:
    """Out-of-fold one-vs-rest logistic-regression probabilities.

    features: (N, D) float, labels: (N, K) 0/1 -> (N, K) in [0, 1]

    Rows are split by a shuffled ``KFold(n_folds, random_state=seed)``; each fold's rows are
    predicted by models fit on the other folds only (``LogisticRegression(C=C, max_iter=200)``
    per label). A label constant on the training rows is not fit: it predicts the smoothed rate
    ``(positives + 1) / (n_train + 2)``.
    """
    x = as_float_array(features, "features")
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"features must be finite, got {float(x[~np.isfinite(x)][0])!r}")
    y = check_binary(labels, "labels")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have {x.shape[0]} rows like features, got {y.shape}")
    n_docs = x.shape[0]
    n_folds = _check_int(n_folds, "n_folds", 2)
    if n_folds > n_docs:
        raise ValueError(f"n_folds must be <= N={n_docs}, got {n_folds}")
    seed = _check_int(seed, "seed", 0)
    if not (isinstance(C, numbers.Real) and np.isfinite(C) and C > 0):
        raise ValueError(f"C must be a finite number > 0, got {C!r}")
    out = np.empty(y.shape)
    for train, test in KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x):
        for k in range(y.shape[1]):
            y_train = y[train, k]
            positives = y_train.sum()
            if positives == 0 or positives == len(train):
                out[test, k] = (positives + 1.0) / (len(train) + 2.0)
                continue
            model = LogisticRegression(C=float(C), max_iter=200).fit(x[train], y_train)
            out[test, k] = model.predict_proba(x[test])[:, 1]
    return out


def _rank_normalize(x: np.ndarray) -> np.ndarray:
    """Average rank / (N - 1); 0 everywhere when x is constant. (N,) -> (N,) in [0, 1]."""
    if x.size == 0 or np.all(x == x[0]):
        return np.zeros(x.shape)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts  # 0-based rank of each distinct value's first copy
    avg_rank = start + (counts - 1) / 2.0
    return avg_rank[inverse] / (x.size - 1)


def priority_scores(
    uncertainty: np.ndarray,
    disagreement: np.ndarray,
    label_issue: np.ndarray,
    weights: tuple[float, float, float],
) -> np.ndarray:
    """Weighted sum of rank-normalized components.

    uncertainty, disagreement, label_issue: (N,) each, weights: 3 floats >= 0 -> (N,)

    Each component becomes ``average_rank / (N - 1)`` in [0, 1] (ties share their average
    0-based rank; a constant component becomes all 0), then
    ``w_u * u + w_d * d + w_l * l``. The result is in [0, sum(weights)].
    """
    parts = [
        _check_scores(uncertainty, "uncertainty"),
        _check_scores(disagreement, "disagreement"),
        _check_scores(label_issue, "label_issue"),
    ]
    shapes = {part.shape for part in parts}
    if len(shapes) != 1:
        raise ValueError(f"components must share one shape (N,), got {sorted(shapes)}")
    w = as_float_array(weights, "weights")
    if w.shape != (3,):
        raise ValueError(f"weights must be 3 numbers, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {tuple(w.tolist())}")
    total = np.zeros(parts[0].shape)
    for wi, part in zip(w, parts, strict=True):
        total += wi * _rank_normalize(part)
    return total


def select_diverse(
    priority: np.ndarray, embeddings: np.ndarray | None, k: int, diversity: float
) -> np.ndarray:
    """Greedy priority-minus-redundancy selection.

    priority: (N,), embeddings: (N, D) or None -> (min(k, N),) int indices in selection order

    Each step picks the unpicked document maximizing ``priority - diversity * s``, where ``s``
    is its largest cosine similarity to the documents already picked (0 before the first pick;
    an all-zero embedding row has similarity 0 to everything). Ties go to the lower index.
    With ``embeddings=None`` or ``diversity=0`` this is the top-k by priority. Cost: one
    (N, D) matrix-vector product per pick (similarities in float32), no (N, N) matrix.
    """
    prio = _check_scores(priority, "priority").astype(np.float64)
    k = min(_check_int(k, "k", 0), prio.size)
    if not (isinstance(diversity, numbers.Real) and np.isfinite(diversity) and diversity >= 0):
        raise ValueError(f"diversity must be a finite number >= 0, got {diversity!r}")
    emb = None
    if embeddings is not None:
        emb = as_float_array(embeddings, "embeddings")
        if emb.ndim != 2 or emb.shape[0] != prio.size:
            raise ValueError(f"embeddings must have shape ({prio.size}, D), got {emb.shape}")
        if not np.all(np.isfinite(emb)):
            raise ValueError(f"embeddings must be finite, got {float(emb[~np.isfinite(emb)][0])!r}")
    if emb is None or diversity == 0:
        return np.argsort(-prio, kind="stable")[:k].astype(np.int64)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = np.divide(emb, norms, out=np.zeros(emb.shape), where=norms > 0).astype(np.float32)
    max_sim = np.zeros(prio.size)  # overwritten by the first pick's similarities
    remaining = prio.copy()  # picked documents are set to -inf
    score = np.empty(prio.size)
    sim = np.empty(prio.size, dtype=np.float32)
    picked = np.empty(k, dtype=np.int64)
    for step in range(k):
        np.multiply(max_sim, -diversity, out=score)
        score += remaining
        best = int(np.argmax(score))  # first index among ties
        picked[step] = best
        remaining[best] = -np.inf
        np.matmul(unit, unit[best], out=sim)
        if step == 0:
            max_sim[:] = sim
        else:
            np.maximum(max_sim, sim, out=max_sim)
    return picked


def select_random(n_docs: int, k: int, seed: int) -> np.ndarray:
    """The random baseline: ``min(k, n_docs)`` distinct indices from ``default_rng(seed)``.

    -> (min(k, n_docs),) int
    """
    n_docs = _check_int(n_docs, "n_docs", 0)
    k = min(_check_int(k, "k", 0), n_docs)
    seed = _check_int(seed, "seed", 0)
    rng = np.random.default_rng(seed)
    return rng.choice(n_docs, size=k, replace=False).astype(np.int64)
