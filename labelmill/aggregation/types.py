"""Parameter and sufficient-statistics containers for the Dawid-Skene EM.

Kept separate from :mod:`labelmill.dawid_skene` so that distributed callers can pickle and
reduce them without pulling in the EM code.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from labelmill._validation import as_float_array


@dataclass(frozen=True)
class DSParams:
    """Dawid-Skene parameters: sensitivity (T, K), specificity (T, K), prior (K,)."""

    sensitivity: np.ndarray
    specificity: np.ndarray
    prior: np.ndarray

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
        object.__setattr__(self, "sensitivity", sens)  # frozen: store the validated arrays
        object.__setattr__(self, "specificity", spec)
        object.__setattr__(self, "prior", prior)


@dataclass(frozen=True)
class SuffStats:
    """Additive M-step statistics of one shard; combine shards with ``+`` or ``sum()``.

    pos_vote / pos_weight: (T, K) sum of ``q * E[v | y=1]`` / of ``q`` over observed cells,
    neg_novote / neg_weight: (T, K) sum of ``(1 - q) * E[1 - v | y=0]`` / of ``1 - q``,
    where q is the posterior ``P(y = 1)`` and v the (latent, for soft votes) hard vote.
    prior_pos / prior_weight: (K,) posterior mass / count of informative cells.
    log_likelihood: shard log-likelihood under the parameters that produced the posteriors.
    n_rows: number of documents reduced so far.
    """

    pos_vote: np.ndarray
    pos_weight: np.ndarray
    neg_novote: np.ndarray
    neg_weight: np.ndarray
    prior_pos: np.ndarray
    prior_weight: np.ndarray
    log_likelihood: float = 0.0
    n_rows: int = 0

    @classmethod
    def zeros(cls, n_teachers: int, n_labels: int) -> SuffStats:
        """Neutral element of ``+`` for T teachers and K labels."""
        tk, k = np.zeros((n_teachers, n_labels)), np.zeros(n_labels)
        return cls(tk, tk.copy(), tk.copy(), tk.copy(), k, k.copy(), 0.0, 0)

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
