"""Voting aggregators: majority and weighted (naive-Bayes log-odds) votes, and agreement.

votes: (N, T, K) floats -- N documents, T teachers, K labels -- hard votes (0/1) or
probabilities in [0, 1], NaN where a teacher abstained or errored. A row in which every teacher
is NaN is an "all-error row"; these aggregators return NaN for it.

:class:`MajorityVote` and :class:`WeightedVote` wrap the functions in the estimator shape that
:class:`labelmill.aggregation.DawidSkene` has (``fit`` -> self, ``predict_proba``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelmill._validation import as_float_array, check_votes


def _hard_counts(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive-vote and observed counts per cell. votes: (N, T, K) -> ((N, K), (N, K))."""
    observed = ~np.isnan(votes)
    positive = votes >= 0.5  # NaN compares False
    return positive.sum(axis=1, dtype=np.float64), observed.sum(axis=1, dtype=np.float64)


def majority_vote(votes: Any) -> np.ndarray:
    """Fraction of non-abstaining teachers voting for each label.

    votes: (N, T, K) -> (N, K)

    Each vote is first hardened (``vote >= 0.5`` counts as 1), then averaged over the
    non-NaN teachers. The result is the fraction of positive votes, so an exact tie gives 0.5
    and ``probs >= 0.5`` is "at least half the teachers". Cells with no observing teacher
    (e.g. all-error rows) are NaN.
    """
    arr = check_votes(votes)
    positive, observed = _hard_counts(arr)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(observed > 0, positive / np.maximum(observed, 1.0), np.nan)


def weighted_vote(votes: Any, weights: Any) -> np.ndarray:
    """Naive-Bayes log-odds combination of soft votes with per-teacher reliabilities.

    votes: (N, T, K), weights: (T,) or (T, K) -> (N, K)

    ``weights[t]`` (or ``weights[t, k]``) is teacher t's accuracy, strictly in (0, 1): 0.5 is
    uninformative, < 0.5 is adversarial. Each non-NaN vote p contributes
    ``log(w / (1 - w)) * (2p - 1)`` to the label log-odds (for hard votes this is the exact
    posterior under symmetric noise and a uniform prior); the result is ``sigmoid(sum)``.
    Cells with no observing teacher are NaN.
    """
    arr = check_votes(votes)
    n_teach, n_labels = arr.shape[1], arr.shape[2]
    w = as_float_array(weights, "weights")
    if w.shape == (n_teach,):
        w = np.broadcast_to(w[:, None], (n_teach, n_labels))
    elif w.shape != (n_teach, n_labels):
        raise ValueError(
            f"weights must have shape ({n_teach},) or ({n_teach}, {n_labels}), got {w.shape}"
        )
    if np.any(np.isnan(w)) or np.any((w <= 0.0) | (w >= 1.0)):
        raise ValueError(f"weights must lie strictly inside (0, 1), got {w.min()!r}..{w.max()!r}")
    log_odds_w = np.log(w) - np.log1p(-w)  # (T, K)
    score = np.zeros((arr.shape[0], n_labels))
    any_observed = np.zeros((arr.shape[0], n_labels), dtype=bool)
    for t in range(n_teach):  # loop over the (small) teacher axis to avoid (N, T, K) temporaries
        x = arr[:, t, :]
        observed = ~np.isnan(x)
        score += np.where(observed, 2.0 * x - 1.0, 0.0) * log_odds_w[t]
        any_observed |= observed
    probs = 0.5 * (1.0 + np.tanh(0.5 * score))  # numerically stable sigmoid
    return np.where(any_observed, probs, np.nan)


def n_teachers(votes: Any) -> np.ndarray:
    """Number of teachers with at least one non-NaN value per document.

    votes: (N, T, K) -> (N,) int
    """
    arr = check_votes(votes)
    return (~np.isnan(arr)).any(axis=2).sum(axis=1)


def agreement(votes: Any) -> np.ndarray:
    """Fraction of non-abstaining (teacher, label) cells agreeing with the per-label majority.

    votes: (N, T, K) -> (N,)

    Votes are hardened at 0.5. For each label the majority side has ``max(n_pos, n_neg)``
    agreeing cells; on an exact tie either side is the majority, giving half the cells.
    The row value is ``sum_k agreeing_k / sum_k observed_k``: 1.0 means unanimous, 0.5 means a
    tie on every label. A single observing teacher gives 1.0; all-error rows give NaN.
    """
    arr = check_votes(votes)
    positive, observed = _hard_counts(arr)
    agreeing = np.maximum(positive, observed - positive).sum(axis=1)
    total = observed.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, agreeing / np.maximum(total, 1.0), np.nan)


class MajorityVote:
    """Majority vote as an estimator: nothing to fit. ``predict_proba``: :func:`majority_vote`."""

    def fit(self, votes: Any, gold: Any = None, gold_mask: Any = None) -> MajorityVote:
        """votes: (N, T, K) -> self (checks the votes; majority vote has no parameters)."""
        self.n_teachers_ = check_votes(votes).shape[1]
        return self

    def predict_proba(self, votes: Any) -> np.ndarray:
        """votes: (N, T, K) -> (N, K)"""
        return majority_vote(votes)


class WeightedVote:
    """Naive-Bayes weighted vote; ``weights`` (T,) or (T, K) accuracies, or None: estimated.

    ``fit(votes, gold, gold_mask)`` estimates Laplace-smoothed per-teacher, per-label accuracies
    against the gold rows when there are any, else against the majority's hard labels
    (``weights_source_`` says which). Fitted: ``weights_`` (T, K), clipped to [0.01, 0.99].
    """

    def __init__(self, weights: Any = None) -> None:
        self.weights = weights

    def fit(self, votes: Any, gold: Any = None, gold_mask: Any = None) -> WeightedVote:
        """votes: (N, T, K), gold: (N, K) | None, gold_mask: (N,) | None -> self"""
        from labelmill.vote_matrix import confusion_counts, hard_reference, smoothed_rates

        arr = check_votes(votes)
        n_teach, n_labels = arr.shape[1], arr.shape[2]
        if self.weights is not None:
            w = as_float_array(self.weights, "weights")
            self.weights_ = np.broadcast_to(w.reshape(n_teach, -1), (n_teach, n_labels)).copy()
            self.weights_source_ = "given"
            return self
        if gold is not None:
            mask = np.ones(arr.shape[0], bool) if gold_mask is None else np.asarray(gold_mask)
            reference = np.where(mask[:, None], np.asarray(gold, dtype=np.float64), np.nan)
            self.weights_source_ = "gold_seed"
        else:
            reference = hard_reference(majority_vote(arr), 0.5)
            self.weights_source_ = "majority"
        accuracy = smoothed_rates(confusion_counts(arr, reference))[0]
        self.weights_ = np.clip(accuracy, 0.01, 0.99)
        return self

    def predict_proba(self, votes: Any) -> np.ndarray:
        """votes: (N, T, K) -> (N, K) by :func:`weighted_vote` with the fitted weights."""
        if not hasattr(self, "weights_"):
            raise ValueError("this WeightedVote instance is not fitted yet; call fit() first")
        return weighted_vote(votes, self.weights_)
