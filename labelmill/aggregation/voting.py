"""Aggregation of multi-teacher votes into per-label probabilities.

Data model: ``votes`` is a float array of shape (N, T, K) -- N documents, T teachers, K labels --
holding hard votes (0/1) or probabilities in [0, 1], with NaN where a teacher abstained or
errored. NaN is handled per cell, although normally a whole (n, t, :) slice is NaN. A row in
which every teacher is NaN is an "all-error row"; the simple aggregators return NaN for it.

The :class:`DawidSkene` estimator is defined here; its map/reduce EM core (E-step, sufficient
statistics, M-step) lives in :mod:`labelmill.dawid_skene` and is re-exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelmill._validation import as_float_array, check_binary, check_probs, check_votes
from labelmill.dawid_skene import (
    _check_gold,
    _check_rate,
    _check_soft,
    _e_step,
    _hard_counts,
    _shard_stats,
    dawid_skene_e_step,
    dawid_skene_init_posteriors,
    dawid_skene_m_step,
    dawid_skene_seed_stats,
    dawid_skene_shard_stats,
    dawid_skene_suff_stats,
)
from labelmill.ds_types import DSParams, SuffStats

__all__ = [
    "DSParams",
    "DawidSkene",
    "SuffStats",
    "agreement",
    "dawid_skene_e_step",
    "dawid_skene_init_posteriors",
    "dawid_skene_m_step",
    "dawid_skene_seed_stats",
    "dawid_skene_shard_stats",
    "dawid_skene_suff_stats",
    "majority_vote",
    "n_teachers",
    "reliability_table",
    "threshold_probs",
    "tune_thresholds",
    "weighted_vote",
]


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


def _check_thresholds(thresholds: Any, n_labels: int) -> np.ndarray:
    """Scalar or (K,) thresholds in [0, 1] -> (K,) float."""
    thr = as_float_array(thresholds, "thresholds")
    if thr.ndim == 0:
        thr = np.full(n_labels, float(thr))
    if thr.shape != (n_labels,):
        raise ValueError(f"thresholds must be a scalar or shape ({n_labels},), got {thr.shape}")
    if np.any(np.isnan(thr)) or np.any((thr < 0.0) | (thr > 1.0)):
        raise ValueError(f"thresholds must lie in [0, 1], got {thr.tolist()!r}")
    return thr


def threshold_probs(probs: Any, thresholds: Any) -> np.ndarray:
    """Binarize probabilities with per-label thresholds (``probs >= threshold``).

    probs: (N, K), thresholds: scalar or (K,) -> (N, K) bool. NaN probabilities give False.
    """
    arr = check_probs(probs)
    thr = _check_thresholds(thresholds, arr.shape[1])
    return arr >= thr[None, :]


def tune_thresholds(probs: Any, targets: Any, grid: Any = None) -> np.ndarray:
    """Per-label threshold maximizing F1 of ``probs >= t`` against ``targets`` on a dev split.

    probs: (N, K), targets: (N, K) 0/1, grid: (G,) or None -> (K,)

    ``grid`` defaults to 0.05, 0.10, ..., 0.95. Rows of ``probs`` containing NaN are excluded.
    Ties in F1 are broken towards the threshold closest to 0.5 (then the smaller one).
    Labels without any positive target keep 0.5.
    """
    p = check_probs(probs)
    y = check_binary(targets, "targets", shape=p.shape)
    if grid is None:
        grid_arr = np.round(np.arange(1, 20) * 0.05, 10)
    else:
        grid_arr = as_float_array(grid, "grid")
        if grid_arr.ndim != 1 or grid_arr.size == 0:
            raise ValueError(f"grid must be a non-empty 1-D array, got shape {grid_arr.shape}")
        if np.any(np.isnan(grid_arr)) or np.any((grid_arr < 0.0) | (grid_arr > 1.0)):
            raise ValueError(f"grid values must lie in [0, 1], got {grid_arr.tolist()!r}")
    keep = ~np.isnan(p).any(axis=1)
    p, y = p[keep], y[keep]
    n_pos = y.sum(axis=0)  # (K,)
    # Visit candidates closest to 0.5 first so that strict improvement keeps the tie-break.
    order = np.lexsort((grid_arr, np.round(np.abs(grid_arr - 0.5), 9)))
    best_f1 = np.full(p.shape[1], -1.0)
    best_thr = np.full(p.shape[1], 0.5)
    for thr in grid_arr[order]:
        pred = p >= thr
        tp = (pred & (y == 1.0)).sum(axis=0)
        denom = pred.sum(axis=0) + n_pos  # 2tp + fp + fn
        f1 = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)
        better = f1 > best_f1
        best_f1 = np.where(better, f1, best_f1)
        best_thr = np.where(better, thr, best_thr)
    return np.where(n_pos > 0, best_thr, 0.5)


class DawidSkene:
    """Binary-per-label Dawid-Skene estimator fitted by EM (sklearn-style).

    Parameters: ``max_iter`` (>= 1 EM iterations), ``tol`` (stop when the largest absolute
    change of any sensitivity/specificity/prior between iterations is <= tol), ``smoothing``
    (Beta pseudo-count, see :func:`dawid_skene_m_step`), ``init`` ("majority" only),
    ``soft_votes`` ("mixture" or "fractional", see :mod:`labelmill.dawid_skene`), ``anchor``
    ("clamp": EM over all documents with the gold rows' posteriors clamped to gold; "rates":
    each teacher's rates and the prior are estimated on the gold rows alone, without EM, then
    one E-step labels every document. Only matters when gold is given.)

    Fitted attributes: ``sensitivity_`` (T, K), ``specificity_`` (T, K), ``prior_`` (K,),
    ``params_`` (DSParams), ``posteriors_`` (N, K), ``n_iter_`` (number of M-steps),
    ``converged_`` and ``log_likelihood_`` (one value per iteration, for the parameters of that
    iteration's M-step; non-decreasing up to floating error).
    """

    def __init__(
        self,
        max_iter: int = 100,
        tol: float = 1e-5,
        smoothing: float = 1.0,
        init: str = "majority",
        soft_votes: str = "mixture",
        anchor: str = "clamp",
    ) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.smoothing = smoothing
        self.init = init
        self.soft_votes = soft_votes
        self.anchor = anchor

    def _check_hyperparams(self) -> None:
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int | np.integer):
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        _check_rate(self.tol, "tol")
        _check_rate(self.smoothing, "smoothing")
        if self.init != "majority":
            raise ValueError(f"init must be 'majority', got {self.init!r}")
        _check_soft(self.soft_votes)
        if self.anchor not in ("clamp", "rates"):
            raise ValueError(f"anchor must be 'clamp' or 'rates', got {self.anchor!r}")

    def fit(self, votes: Any, gold: Any = None, gold_mask: Any = None) -> DawidSkene:
        """Run EM on one in-memory shard.

        votes: (N, T, K), gold: (N, K) 0/1 | None, gold_mask: (N,) bool | None -> self

        Gold rows (``gold_mask``; all rows if only ``gold`` is given) have their posterior
        clamped to gold at initialization and at every E-step.
        """
        self._check_hyperparams()
        arr = check_votes(votes)
        if arr.shape[0] < 1:
            raise ValueError(f"votes must contain at least one document, got shape {arr.shape}")
        g, mask = _check_gold(gold, gold_mask, arr.shape[0], arr.shape[2])
        anchored = self.anchor == "rates" and mask is not None and bool(mask.any())
        # Iteration 1: majority-init posteriors (or the seed alone) -> M-step. Later (EM only):
        # E-step -> stats -> M-step.
        first = (
            dawid_skene_seed_stats(arr, g, mask, self.soft_votes)
            if anchored
            else _shard_stats(arr, None, g, mask, self.soft_votes)
        )
        params = dawid_skene_m_step(first, self.smoothing)
        history: list[float] = []
        converged = anchored
        n_iter = 1
        while n_iter < self.max_iter and not converged:
            stats = _shard_stats(arr, params, g, mask, self.soft_votes)
            history.append(stats.log_likelihood)  # log-likelihood of iteration n_iter's params
            new_params = dawid_skene_m_step(stats, self.smoothing)
            converged = _max_change(params, new_params) <= self.tol
            params = new_params
            n_iter += 1
        posteriors, log_likelihood = _e_step(arr, params, g, mask, self.soft_votes)
        history.append(log_likelihood)
        self.params_ = params
        self.sensitivity_ = params.sensitivity
        self.specificity_ = params.specificity
        self.prior_ = params.prior
        self.posteriors_ = posteriors
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.log_likelihood_ = history
        return self

    def predict_proba(self, votes: Any) -> np.ndarray:
        """Posterior ``P(y = 1)`` under the fitted parameters; all-error rows get ``prior_``.

        votes: (N, T, K) -> (N, K)
        """
        params = getattr(self, "params_", None)
        if params is None:
            raise ValueError("this DawidSkene instance is not fitted yet; call fit() first")
        arr = check_votes(votes)
        if arr.shape[1:] != params.sensitivity.shape:
            raise ValueError(
                f"votes must have shape (N, {params.sensitivity.shape[0]}, "
                f"{params.sensitivity.shape[1]}), got {arr.shape}"
            )
        return _e_step(arr, params, None, None, self.soft_votes)[0]


def _max_change(old: DSParams, new: DSParams) -> float:
    """Largest absolute parameter change between two EM iterations."""
    return float(
        max(
            np.max(np.abs(new.sensitivity - old.sensitivity)),
            np.max(np.abs(new.specificity - old.specificity)),
            np.max(np.abs(new.prior - old.prior)),
        )
    )


def reliability_table(
    model: DawidSkene, label_names: Sequence[str], teacher_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Flatten a fitted Dawid-Skene model into one record per (teacher, label).

    model.sensitivity_ / specificity_: (T, K) -> list of T * K dicts with keys
    ``teacher``, ``label``, ``sensitivity``, ``specificity`` (teacher-major order).
    """
    sens = getattr(model, "sensitivity_", None)
    spec = getattr(model, "specificity_", None)
    if sens is None or spec is None:
        raise ValueError(f"model must be a fitted DawidSkene, got {type(model).__name__}")
    n_teach, n_labels = sens.shape
    if len(teacher_names) != n_teach:
        raise ValueError(f"expected {n_teach} teacher_names, got {len(teacher_names)}")
    if len(label_names) != n_labels:
        raise ValueError(f"expected {n_labels} label_names, got {len(label_names)}")
    return [
        {
            "teacher": str(teacher),
            "label": str(label),
            "sensitivity": float(sens[t, k]),
            "specificity": float(spec[t, k]),
        }
        for t, teacher in enumerate(teacher_names)
        for k, label in enumerate(label_names)
    ]
