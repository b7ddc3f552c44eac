"""Binary-per-label Dawid-Skene EM with map/reduce sufficient statistics.

Dawid, A. P. and Skene, A. M. (1979), "Maximum likelihood estimation of observer error-rates
using the EM algorithm", Journal of the Royal Statistical Society C 28(1): 20-28.

Each label k is an independent binary problem with a prior ``P(y_k = 1)``. Each teacher t has
one observation model per label:

* a **hard-vote** teacher (a label set) has a sensitivity ``P(v = 1 | y = 1)`` and a
  specificity ``P(v = 0 | y = 0)`` of its vote v;
* a **score** teacher (a probability per label) has a log-likelihood ratio linear in the logit
  of its probability (:mod:`labelmill.aggregation.score_model`): a calibrated teacher's
  probability passes through unchanged, one without signal moves nothing.

NaN votes are abstentions and are skipped in both the E-step and the M-step. The posterior is
naive Bayes: ``logit P(y=1 | votes) = logit(prior) + sum_t LLR_t(vote_t)``.

``soft_votes`` says how probabilities enter: ``"score"`` (default) reads the teachers flagged
in ``score_teachers`` through the score model and any other soft vote as ``"mixture"``;
``"mixture"``: p is the probability of a latent hard "yes" (``P(p | y=1) = p * sens +
(1 - p) * (1 - sens)``), which throws away most of what a calibrated probability says;
``"fractional"``: ``sens^p (1 - sens)^(1 - p)``, kept for comparison only. All agree on 0/1.

Rates are shrunk towards the *uninformative* teacher: with the teacher's vote rate r,
``sens = (hits + 2 s r) / (positives + 2 s)`` and ``1 - spec`` likewise, so a teacher seen on
few documents has a log-likelihood ratio near 0 rather than the noise of a handful of counts.

Distributed use: :func:`fit_em` runs the one EM loop over any source of statistics; the
in-memory :class:`DawidSkene` passes the statistics of its array, the Ray job the sum of
per-batch :func:`dawid_skene_shard_stats`.

Example::

    >>> import numpy as np
    >>> votes = np.array([[[1.0], [1.0], [0.0]], [[0.0], [0.0], [0.0]], [[1.0], [0.0], [1.0]]])
    >>> model = DawidSkene(max_iter=20).fit(votes)
    >>> model.predict_proba(votes).shape
    (3, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labelmill._validation import check_votes
from labelmill.aggregation.ds_steps import (
    ANCHORS,
    _check_gold,
    _check_rate,
    _check_soft,
    _e_step,
    _shard_stats,
    dawid_skene_m_step,
    dawid_skene_seed_stats,
    param_change,
    score_teachers_of,
)
from labelmill.aggregation.types import DSParams, SuffStats


@dataclass(frozen=True)
class EMFit:
    """What :func:`fit_em` found: parameters, M-steps run, convergence, log-likelihoods."""

    params: DSParams
    n_iter: int
    converged: bool
    log_likelihood: list[float]


def fit_em(
    shard_stats: Callable[[DSParams | None], SuffStats],
    *,
    max_iter: int,
    tol: float,
    smoothing: float,
    score_teachers: Any = None,
    seed_stats: Callable[[], SuffStats] | None = None,
) -> EMFit:
    """The one Dawid-Skene fitting loop, over any source of statistics.

    ``shard_stats(params)`` returns the statistics of all documents after an E-step under
    ``params`` (majority init for None): in memory one call on the array, on Ray the sum of
    per-batch statistics. With ``seed_stats`` (the ``rates`` gold anchor) the parameters are the
    M-step of the seed's statistics and no EM runs. ``log_likelihood`` holds one value per
    EM iteration, for the parameters of that iteration's E-step.
    """
    if seed_stats is not None:
        stats = seed_stats()
        if stats.n_rows == 0:
            raise ValueError("the gold anchor is 'rates' but no seed document has gold")
        return EMFit(dawid_skene_m_step(stats, smoothing, score_teachers), 1, True, [])
    params = dawid_skene_m_step(shard_stats(None), smoothing, score_teachers)
    history: list[float] = []
    converged, n_iter = False, 1
    while n_iter < max_iter and not converged:
        stats = shard_stats(params)
        history.append(stats.log_likelihood)
        new_params = dawid_skene_m_step(stats, smoothing, score_teachers)
        converged = param_change(params, new_params) <= tol
        params, n_iter = new_params, n_iter + 1
    return EMFit(params, n_iter, converged, history)


class DawidSkene:
    """Binary-per-label Dawid-Skene estimator fitted by EM (sklearn-style).

    Parameters: ``max_iter`` (>= 1 EM iterations), ``tol`` (stop when the largest absolute
    change of any sensitivity/specificity/prior is <= tol), ``smoothing`` (pseudo-evidence
    towards the uninformative teacher, see :func:`dawid_skene_m_step`), ``soft_votes`` (see the
    module doc), ``anchor`` (``"clamp"``: EM over all documents with the gold rows' posteriors
    clamped to gold; ``"rates"``: rates and prior from the gold rows alone, then one E-step;
    only matters when gold is given), ``score_teachers`` ((T,) bool; None: the teachers whose
    votes are not all 0/1).

    Fitted attributes: ``params_`` (DSParams), ``sensitivity_`` / ``specificity_`` (T, K),
    ``prior_`` (K,), ``score_teachers_`` (T,), ``posteriors_`` (N, K), ``n_iter_``,
    ``converged_`` and ``log_likelihood_`` (one value per iteration, the last one for the final
    E-step; non-decreasing up to floating error for hard votes).
    """

    def __init__(
        self,
        max_iter: int = 100,
        tol: float = 1e-5,
        smoothing: float = 1.0,
        soft_votes: str = "score",
        anchor: str = "clamp",
        score_teachers: Sequence[bool] | None = None,
    ) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.smoothing = smoothing
        self.soft_votes = soft_votes
        self.anchor = anchor
        self.score_teachers = score_teachers

    def _check_hyperparams(self) -> None:
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int | np.integer):
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        _check_rate(self.tol, "tol")
        _check_rate(self.smoothing, "smoothing")
        _check_soft(self.soft_votes)
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor must be 'clamp' or 'rates', got {self.anchor!r}")

    def fit(self, votes: Any, gold: Any = None, gold_mask: Any = None) -> DawidSkene:
        """Fit on one in-memory shard.

        votes: (N, T, K), gold: (N, K) 0/1 | None, gold_mask: (N,) bool | None -> self

        Gold rows (``gold_mask``; all rows if only ``gold`` is given) anchor the fit.
        """
        self._check_hyperparams()
        arr = check_votes(votes)
        if arr.shape[0] < 1:
            raise ValueError(f"votes must contain at least one document, got shape {arr.shape}")
        g, mask = _check_gold(gold, gold_mask, arr.shape[0], arr.shape[2])
        flags = (
            score_teachers_of(arr)
            if self.score_teachers is None
            else np.asarray(self.score_teachers, dtype=bool)
        )
        soft = self.soft_votes
        anchored = self.anchor == "rates" and mask is not None and bool(mask.any())
        fit = fit_em(
            lambda params: _shard_stats(arr, params, g, mask, soft),
            max_iter=self.max_iter,
            tol=self.tol,
            smoothing=self.smoothing,
            score_teachers=flags,
            seed_stats=(lambda: dawid_skene_seed_stats(arr, g, mask, soft)) if anchored else None,
        )
        posteriors, log_likelihood = _e_step(arr, fit.params, g, mask, soft)
        self.params_ = fit.params
        self.sensitivity_ = fit.params.sensitivity
        self.specificity_ = fit.params.specificity
        self.prior_ = fit.params.prior
        self.score_teachers_ = fit.params.score_teacher
        self.posteriors_ = posteriors
        self.n_iter_ = fit.n_iter
        self.converged_ = fit.converged
        self.log_likelihood_ = [*fit.log_likelihood, log_likelihood]
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


def reliability_table(
    params: DSParams, label_names: Sequence[str], teacher_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Flatten fitted parameters into one record per (teacher, label), teacher-major.

    params: DSParams of (T, K) -> T * K dicts with ``teacher``, ``label``, ``model`` ("score" or
    "hard"), ``sensitivity``, ``specificity`` and, for score teachers, ``score_slope`` and
    ``score_intercept`` (the LLR at logit 0; slope 1: calibrated; slope 0: no signal).
    """
    n_teach, n_labels = params.sensitivity.shape
    if len(teacher_names) != n_teach:
        raise ValueError(f"expected {n_teach} teacher_names, got {len(teacher_names)}")
    if len(label_names) != n_labels:
        raise ValueError(f"expected {n_labels} label_names, got {len(label_names)}")
    records = []
    for t, teacher in enumerate(teacher_names):
        score = bool(params.score_teacher[t])
        for k, label in enumerate(label_names):
            record: dict[str, Any] = {
                "teacher": str(teacher),
                "label": str(label),
                "model": "score" if score else "hard",
                "sensitivity": float(params.sensitivity[t, k]),
                "specificity": float(params.specificity[t, k]),
            }
            if score:
                record["score_slope"] = float(params.score_slope[t, k])
                record["score_intercept"] = float(params.score_bias[t, k] - params.score_base[t, k])
            records.append(record)
    return records
