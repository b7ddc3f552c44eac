"""The score observation model: how much a teacher's probability says about the truth.

A teacher that emits a probability p per label (an LLM in ``score`` mode, the embedding
teacher) is read through its logit ``s = logit(p)``. Per teacher and label the log-likelihood
ratio of the truth is linear in s::

    log P(s | y=1) / P(s | y=0) = slope * s + bias - base

which is what equal-variance class-conditional Gaussians in logit space give, and what a
logistic recalibration ``P(y=1 | s) = sigmoid(slope * s + bias)`` fitted under the label prior
``sigmoid(base)`` implies by Bayes' rule. A calibrated teacher has slope 1 and bias 0: alone,
the aggregate then returns its probability unchanged; two conditionally independent calibrated
teachers add their log-odds. A teacher without signal has slope 0 and ``bias = base``: its
votes move nothing.

With a gold seed the slope and bias are fitted on it (a ridge-penalised logistic regression on
the seed's logit histogram, shrunk towards the calibrated teacher); without one there is
nothing to calibrate against, so the teacher's probabilities are taken as calibrated (slope 1,
bias 0) with its own mean probability as the base.
"""

from __future__ import annotations

import numpy as np

from labelmill.aggregation.types import LOGIT_CLIP, SCORE_BINS

_EDGES = np.linspace(-LOGIT_CLIP, LOGIT_CLIP, SCORE_BINS + 1)
BIN_CENTERS = 0.5 * (_EDGES[:-1] + _EDGES[1:])


def logit(p: np.ndarray) -> np.ndarray:
    """Logit of probabilities clipped to ``sigmoid(+-LOGIT_CLIP)``; NaN stays NaN. Any shape."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(np.log(p) - np.log1p(-p), -LOGIT_CLIP, LOGIT_CLIP)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function. Any shape."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def logit_bin(s: np.ndarray) -> np.ndarray:
    """Bin index in [0, SCORE_BINS) of clipped logits (NaN must be masked by the caller)."""
    index = np.searchsorted(_EDGES, np.nan_to_num(s), side="right") - 1
    return np.clip(index, 0, SCORE_BINS - 1)


def seed_histograms(
    x: np.ndarray, observed: np.ndarray, gold: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Logit histograms of one teacher's votes on the gold rows, split by gold.

    x: (N, K) probabilities (NaN where not observed), observed: (N, K) bool, gold: (N, K) 0/1,
    rows: (N,) bool (the gold seed) -> ((K, SCORE_BINS) gold-1 counts, (K, SCORE_BINS) gold-0)
    """
    n_labels = x.shape[1]
    pos = np.zeros(n_labels * SCORE_BINS)
    neg = np.zeros(n_labels * SCORE_BINS)
    cells = observed & rows[:, None]
    if cells.any():
        k_index = np.broadcast_to(np.arange(n_labels), x.shape)[cells]
        flat = k_index * SCORE_BINS + logit_bin(logit(x[cells]))
        g = gold[cells]
        pos += np.bincount(flat, weights=g, minlength=pos.size)
        neg += np.bincount(flat, weights=1.0 - g, minlength=neg.size)
    return pos.reshape(n_labels, SCORE_BINS), neg.reshape(n_labels, SCORE_BINS)


def fit_score_model(
    seed_pos: np.ndarray,
    seed_neg: np.ndarray,
    base: np.ndarray,
    strength: float,
    n_iter: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge logistic regression of gold on the teacher's logit, from seed histograms.

    seed_pos, seed_neg: (..., SCORE_BINS) counts, base: (...) the label's log-odds prior on the
    seed -> (slope (...), bias (...)).

    Maximises ``sum_b pos_b log sigmoid(a c_b + b) + neg_b log(1 - sigmoid(a c_b + b))
    - strength / 2 * ((a - 1)^2 + b^2)`` by Newton's method (c_b: bin centres), started at the
    uninformative teacher (a = 0, b = base). The penalty pulls towards the calibrated teacher
    (a = 1, b = 0): a teacher's probabilities are believed unless the seed says otherwise, and
    the fit stays finite when the seed separates the classes.
    """
    pos, neg = np.asarray(seed_pos, dtype=np.float64), np.asarray(seed_neg, dtype=np.float64)
    lam = max(float(strength), 1e-6)  # strictly concave: Newton always has a unique optimum
    total = pos + neg
    a = np.zeros(base.shape)
    b = np.array(base, dtype=np.float64, copy=True)
    c = BIN_CENTERS
    for _ in range(n_iter):
        p = sigmoid(a[..., None] * c + b[..., None])
        resid = pos - total * p  # (..., B)
        w = total * p * (1.0 - p)
        g_a = (resid * c).sum(-1) - lam * (a - 1.0)
        g_b = resid.sum(-1) - lam * b
        h_aa = (w * c * c).sum(-1) + lam
        h_ab = (w * c).sum(-1)
        h_bb = w.sum(-1) + lam
        det = h_aa * h_bb - h_ab * h_ab
        step_a = (h_bb * g_a - h_ab * g_b) / det
        step_b = (h_aa * g_b - h_ab * g_a) / det
        # Damped: a full Newton step from far away can overshoot on separable seeds.
        scale = np.minimum(
            1.0, 4.0 / np.maximum(np.abs(step_a) * LOGIT_CLIP + np.abs(step_b), 1e-12)
        )
        a, b = a + scale * step_a, b + scale * step_b
        if float(np.max(np.abs(step_a) + np.abs(step_b), initial=0.0)) < 1e-10:
            break
    return a, b
