"""Parameter and sufficient-statistics containers of the Dawid-Skene model.

Kept apart from :mod:`labelmill.aggregation.dawid_skene` so that distributed callers can pickle
and reduce them without pulling in the EM code.

Two observation models share one parameter set (see :mod:`labelmill.aggregation.dawid_skene`):
hard-vote teachers have a sensitivity and a specificity per label; probability-emitting
("score") teachers have a log-likelihood ratio linear in the logit of their probability,
``LLR(s) = score_slope * s + score_bias - score_base`` with ``s = logit(p)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from labelmill._validation import as_float_array

# Histogram of teacher logits on the gold seed (the score model's sufficient statistics):
# logits are clipped at +-LOGIT_CLIP (probabilities 1e-4 .. 1 - 1e-4) and binned this finely,
# so that the fit loses nothing a seed of any size can resolve.
LOGIT_CLIP = 9.21
SCORE_BINS = 185


@dataclass(frozen=True)
class DSParams:
    """Dawid-Skene parameters.

    sensitivity, specificity: (T, K) rates of the hard-vote model; prior: (K,) ``P(y = 1)``;
    score_teacher: (T,) bool, which teachers use the score model; score_slope, score_bias,
    score_base: (T, K), that model's parameters (unused for hard-vote teachers). The score
    fields default to "no score teacher".
    """

    sensitivity: np.ndarray
    specificity: np.ndarray
    prior: np.ndarray
    score_teacher: np.ndarray | None = None
    score_slope: np.ndarray | None = None
    score_bias: np.ndarray | None = None
    score_base: np.ndarray | None = None

    def __post_init__(self) -> None:
        sens = as_float_array(self.sensitivity, "sensitivity")
        spec = as_float_array(self.specificity, "specificity")
        prior = as_float_array(self.prior, "prior")
        if sens.ndim != 2 or spec.shape != sens.shape or prior.shape != sens.shape[1:]:
            raise ValueError(
                "expected sensitivity/specificity (T, K) and prior (K,), got "
                f"{sens.shape}, {spec.shape}, {prior.shape}"
            )
        for name, arr in (("sensitivity", sens), ("specificity", spec), ("prior", prior)):
            if np.any(np.isnan(arr)) or np.any((arr < 0.0) | (arr > 1.0)):
                raise ValueError(f"{name} must lie in [0, 1], got {arr!r}")
        n_teach = sens.shape[0]
        flags = (
            np.zeros(n_teach, dtype=bool)
            if self.score_teacher is None
            else np.asarray(self.score_teacher, dtype=bool)
        )
        if flags.shape != (n_teach,):
            raise ValueError(f"score_teacher must have shape ({n_teach},), got {flags.shape}")
        score = {}
        for name, default in (("score_slope", 1.0), ("score_bias", 0.0), ("score_base", 0.0)):
            value = getattr(self, name)
            arr = np.full(sens.shape, default) if value is None else as_float_array(value, name)
            if arr.shape != sens.shape or not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite with shape {sens.shape}, got {arr!r}")
            score[name] = arr
        object.__setattr__(self, "sensitivity", sens)  # frozen: store the validated arrays
        object.__setattr__(self, "specificity", spec)
        object.__setattr__(self, "prior", prior)
        object.__setattr__(self, "score_teacher", flags)
        for name, arr in score.items():
            object.__setattr__(self, name, arr)


@dataclass(frozen=True)
class SuffStats:
    """Additive M-step statistics of one shard; combine shards with ``+`` or ``sum()``.

    pos_vote / pos_weight: (T, K) sum of ``q * E[v | y=1]`` / of ``q`` over observed cells,
    neg_novote / neg_weight: (T, K) sum of ``(1 - q) * E[1 - v | y=0]`` / of ``1 - q``,
    where q is the posterior ``P(y = 1)`` and v the (latent, for soft votes) hard vote.
    prior_pos / prior_weight: (K,) posterior mass / count of informative cells.
    seed_pos / seed_neg: (T, K, SCORE_BINS) gold-seed documents per bin of the teacher's logit,
    with gold 1 / gold 0 (the score model's fit); vote_sum / vote_count: (T, K) sum and count
    of the observed votes (a score teacher's mean probability, a hard teacher's vote rate).
    log_likelihood: shard log-likelihood under the parameters that produced the posteriors.
    n_rows: number of documents reduced so far.
    """

    pos_vote: np.ndarray
    pos_weight: np.ndarray
    neg_novote: np.ndarray
    neg_weight: np.ndarray
    prior_pos: np.ndarray
    prior_weight: np.ndarray
    seed_pos: np.ndarray
    seed_neg: np.ndarray
    vote_sum: np.ndarray
    vote_count: np.ndarray
    log_likelihood: float = 0.0
    n_rows: int = 0

    @classmethod
    def zeros(cls, n_teachers: int, n_labels: int) -> SuffStats:
        """Neutral element of ``+`` for T teachers and K labels."""
        tk, k = np.zeros((n_teachers, n_labels)), np.zeros(n_labels)
        bins = np.zeros((n_teachers, n_labels, SCORE_BINS))
        return cls(
            tk, tk.copy(), tk.copy(), tk.copy(), k, k.copy(), bins, bins.copy(), tk.copy(),
            tk.copy(), 0.0, 0,
        )  # fmt: skip

    def __add__(self, other: SuffStats) -> SuffStats:
        if not isinstance(other, SuffStats):
            return NotImplemented
        if self.pos_vote.shape != other.pos_vote.shape:
            raise ValueError(
                f"cannot add SuffStats of shapes {self.pos_vote.shape} and {other.pos_vote.shape}"
            )
        return SuffStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __radd__(self, other: Any) -> SuffStats:
        if isinstance(other, int) and other == 0:  # lets builtin sum() start from 0
            return self
        return NotImplemented
