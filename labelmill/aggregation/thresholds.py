"""Per-label decision thresholds: tuned for F1 on the gold seed, else by expected F1.

A calibrated probability of a rare label is almost never >= 0.5, yet the F1-optimal cut of a
calibrated probability sits near half the F1 it reaches (Lipton et al., 2014, "Thresholding
classifiers to maximize F1 score"), well below 0.5 for rare labels. So every label gets its
own threshold, by one rule used for every system (teachers, aggregate, student):

* ``gold_seed``: when the seed holds at least :data:`MIN_SEED_POSITIVES` positive and one
  negative document of the label, the threshold that maximises F1 on the seed;
* ``expected_f1``: otherwise, the threshold that maximises the plug-in expected F1 under the
  probabilities themselves (they are the calibrated belief): predicting ``p >= t`` gives
  ``E[F1](t) ~= 2 * sum_{p_i >= t} p_i / (#{p_i >= t} + sum_i p_i)`` (Nan et al., 2012,
  "Optimizing F-measures: a tale of two approaches"). No gold needed;
* ``default``: 0.5 for a label without any scored document.

A trained student's probabilities are not a calibrated belief (it may be confident or shy
by how it was trained), so its own fallback is ``prevalence`` instead of ``expected_f1``
(:func:`prevalence_thresholds`): the cut at which its share of positives on its own
documents equals the label's expected prevalence under its training targets (gold on the seed,
the aggregate's calibrated probabilities elsewhere). The student is trusted to rank, not to
be calibrated.

Everything is computed from additive histograms (:class:`ThresholdStats`, one per system),
so a Ray job sums per-batch statistics and nothing per document reaches the driver. Candidate
thresholds are the bin edges: :data:`THRESHOLD_BINS` bins, uniform in logit space over
probabilities 1e-4 .. 1 - 1e-4, so the rule ``p >= t`` is decided exactly by the bin of p.
On a plateau of equal F1 the middle candidate is taken.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from labelmill._validation import as_float_array, check_binary, check_probs
from labelmill.aggregation.score_model import logit, sigmoid
from labelmill.aggregation.types import LOGIT_CLIP

# Ten positives: below it a seed-tuned F1 cut moves by a whole document's worth of recall
# at every step, and the calibrated expected-F1 rule is the steadier choice.
MIN_SEED_POSITIVES = 10
THRESHOLD_BINS = 1000
_LOGIT_EDGES = np.linspace(-LOGIT_CLIP, LOGIT_CLIP, THRESHOLD_BINS + 1)
# Candidate j predicts "positive" for bins >= j; j = 0 is "every document" (threshold 0).
CANDIDATES = np.concatenate([[0.0], sigmoid(_LOGIT_EDGES[1:THRESHOLD_BINS])])
THRESHOLD_SOURCES = ("gold_seed", "expected_f1", "prevalence", "default", "fixed")


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


def probability_bin(probs: np.ndarray) -> np.ndarray:
    """Bin in [0, THRESHOLD_BINS) of each probability; ``p >= CANDIDATES[j]`` iff bin >= j."""
    index = np.searchsorted(_LOGIT_EDGES, logit(np.clip(probs, 0.0, 1.0)), side="right") - 1
    return np.clip(index, 0, THRESHOLD_BINS - 1)


@dataclass(frozen=True)
class ThresholdStats:
    """Additive per-label histograms over the probability bins, all (K, THRESHOLD_BINS).

    seed_pos / seed_neg: gold-seed documents with gold 1 / 0; count / mass: every scored
    document and the sum of its probabilities (the expected-F1 rule's statistics).
    """

    seed_pos: np.ndarray
    seed_neg: np.ndarray
    count: np.ndarray
    mass: np.ndarray

    @classmethod
    def zeros(cls, n_labels: int) -> ThresholdStats:
        """Neutral element of ``+`` for K labels."""
        return cls(*(np.zeros((n_labels, THRESHOLD_BINS)) for _ in range(4)))

    def __add__(self, other: ThresholdStats) -> ThresholdStats:
        if not isinstance(other, ThresholdStats):
            return NotImplemented
        if self.count.shape != other.count.shape:
            raise ValueError(f"cannot add stats of {self.count.shape} and {other.count.shape}")
        return ThresholdStats(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )

    def __radd__(self, other: Any) -> ThresholdStats:
        if isinstance(other, int) and other == 0:  # lets builtin sum() start from 0
            return self
        return NotImplemented


def _histogram(bins: np.ndarray, cells: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(N, K) bins, (N, K) bool cells, (N, K) weights -> (K, THRESHOLD_BINS) sums."""
    n_labels = bins.shape[1]
    k_index = np.broadcast_to(np.arange(n_labels), bins.shape)[cells]
    flat = k_index * THRESHOLD_BINS + bins[cells]
    out = np.bincount(flat, weights=weights[cells], minlength=n_labels * THRESHOLD_BINS)
    return out.reshape(n_labels, THRESHOLD_BINS)


def threshold_stats(probs: Any, gold: Any = None, seed_mask: Any = None) -> ThresholdStats:
    """Histograms of one system's probabilities on one shard.

    probs: (N, K) with NaN where unscored, gold: (N, K) 0/1 | None, seed_mask: (N,) bool | None
    (default: every row, when gold is given) -> ThresholdStats
    """
    p = check_probs(probs)
    scored = ~np.isnan(p)
    bins = probability_bin(np.where(scored, p, 0.0))
    count = _histogram(bins, scored, np.ones(p.shape))
    mass = _histogram(bins, scored, np.where(scored, p, 0.0))
    if gold is None:
        if seed_mask is not None:
            raise ValueError("seed_mask was given without gold")
        empty = np.zeros_like(count)
        return ThresholdStats(empty, empty.copy(), count, mass)
    y = check_binary(gold, "gold", shape=p.shape) if np.size(gold) else np.zeros(p.shape)
    mask = np.ones(p.shape[0], dtype=bool) if seed_mask is None else np.asarray(seed_mask)
    if mask.dtype != np.bool_ or mask.shape != (p.shape[0],):
        raise ValueError(f"seed_mask must be a bool array of shape ({p.shape[0]},)")
    seed = scored & mask[:, None]
    return ThresholdStats(
        _histogram(bins, seed & (y == 1.0), np.ones(p.shape)),
        _histogram(bins, seed & (y == 0.0), np.ones(p.shape)),
        count,
        mass,
    )


def _suffix(hist: np.ndarray) -> np.ndarray:
    """(K, B) -> (K, B) with [k, j] = sum of bins >= j."""
    return np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]


def _middle_of_best(score: np.ndarray) -> np.ndarray:
    """(K, B) criterion -> (K,) index of the middle maximiser (ties within 1e-12)."""
    best = score.max(axis=1, keepdims=True)
    ties = score >= best - 1e-12
    out = np.empty(score.shape[0], dtype=np.int64)
    for k in range(score.shape[0]):
        where = np.flatnonzero(ties[k])
        out[k] = where[len(where) // 2]
    return out


def seed_f1_curve(stats: ThresholdStats) -> np.ndarray:
    """F1 on the seed of predicting ``p >= CANDIDATES[j]``. -> (K, THRESHOLD_BINS)"""
    tp, predicted = _suffix(stats.seed_pos), _suffix(stats.seed_pos + stats.seed_neg)
    positives = stats.seed_pos.sum(axis=1, keepdims=True)
    denom = predicted + positives
    return np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1.0), 0.0)


def expected_f1_curve(stats: ThresholdStats) -> np.ndarray:
    """Plug-in expected F1 of predicting ``p >= CANDIDATES[j]``. -> (K, THRESHOLD_BINS)"""
    tp, predicted = _suffix(stats.mass), _suffix(stats.count)
    expected_pos = stats.mass.sum(axis=1, keepdims=True)
    denom = predicted + expected_pos
    return np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1.0), 0.0)


@dataclass(frozen=True)
class ThresholdChoice:
    """Per-label thresholds (K,), where each came from (K,) and its criterion value (K,)."""

    thresholds: np.ndarray
    sources: tuple[str, ...]
    criterion: np.ndarray

    def to_record(self, names: Any) -> dict[str, dict[str, Any]]:
        """{label: {threshold, source, criterion}} for summaries and exports."""
        return {
            str(name): {
                "threshold": float(self.thresholds[k]),
                "source": self.sources[k],
                "criterion": float(self.criterion[k]),
            }
            for k, name in enumerate(names)
        }


def choose_thresholds(
    stats: ThresholdStats, min_positives: int = MIN_SEED_POSITIVES, fixed: float | None = None
) -> ThresholdChoice:
    """The rule of the module doc, per label. ``fixed`` overrides it (source ``fixed``)."""
    if isinstance(min_positives, bool) or not isinstance(min_positives, int) or min_positives < 1:
        raise ValueError(f"min_positives must be an int >= 1, got {min_positives!r}")
    n_labels = stats.count.shape[0]
    if fixed is not None:
        thr = _check_thresholds(fixed, n_labels)
        return ThresholdChoice(thr, ("fixed",) * n_labels, np.full(n_labels, np.nan))
    seed_curve, free_curve = seed_f1_curve(stats), expected_f1_curve(stats)
    seed_j, free_j = _middle_of_best(seed_curve), _middle_of_best(free_curve)
    use_seed = (stats.seed_pos.sum(axis=1) >= min_positives) & (stats.seed_neg.sum(axis=1) > 0)
    scored = stats.count.sum(axis=1) > 0
    rows = np.arange(n_labels)
    thresholds = np.where(use_seed, CANDIDATES[seed_j], np.where(scored, CANDIDATES[free_j], 0.5))
    criterion = np.where(
        use_seed, seed_curve[rows, seed_j], np.where(scored, free_curve[rows, free_j], np.nan)
    )
    sources = tuple(
        "gold_seed" if use_seed[k] else ("expected_f1" if scored[k] else "default")
        for k in range(n_labels)
    )
    return ThresholdChoice(thresholds, sources, criterion)


def tune_thresholds(
    probs: Any, targets: Any = None, min_positives: int = MIN_SEED_POSITIVES
) -> ThresholdChoice:
    """In-memory :func:`choose_thresholds`: every row with targets is seed.

    probs: (N, K) (NaN: unscored), targets: (N, K) 0/1 | None -> ThresholdChoice
    """
    return choose_thresholds(threshold_stats(probs, targets), min_positives)


def prevalence_thresholds(probs: Any, rates: Any) -> np.ndarray:
    """Per-label cut with ``rates[k]`` of the documents at or above it (source ``prevalence``).

    probs: (N, K), rates: (K,) in [0, 1] -> (K,). With n = ``round(rate * N)``, the cut lies
    midway between the n-th and (n+1)-th largest probability (ties at the n-th stay above it):
    a cut equal to a document's own probability would flip that document on any rounding
    difference between runtimes (torch vs ONNX), and these documents are scored again later.
    n = N: the smallest probability; n = 0: 1.0 (never predicted unless a probability is 1).
    """
    p = check_probs(probs)
    if np.isnan(p).any():
        raise ValueError("probs must not contain NaN (score only usable rows)")
    r = as_float_array(rates, "rates")
    if r.shape != (p.shape[1],) or np.any(np.isnan(r)) or np.any((r < 0.0) | (r > 1.0)):
        raise ValueError(f"rates must be ({p.shape[1]},) values in [0, 1], got {r.tolist()!r}")
    n_rows = p.shape[0]
    if n_rows == 0:
        raise ValueError("probs must hold at least one row")
    counts = np.rint(r * n_rows).astype(np.int64)
    ordered = -np.sort(-p, axis=0)  # descending per label
    labels = np.arange(p.shape[1])
    last_in = ordered[np.clip(counts - 1, 0, n_rows - 1), labels]
    first_out = ordered[np.clip(counts, 0, n_rows - 1), labels]
    cut = np.where(counts < n_rows, (last_in + first_out) / 2.0, last_in)
    return np.where(counts > 0, cut, 1.0)
