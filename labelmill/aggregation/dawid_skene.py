"""Binary-per-label Dawid-Skene EM with map/reduce sufficient statistics.

Each label k is an independent binary problem with a prior ``P(y_k = 1)`` and, per teacher t,
a sensitivity ``P(v = 1 | y = 1)`` and a specificity ``P(v = 0 | y = 0)`` of its hard vote v.
NaN votes are abstentions and are skipped in both the E-step and the M-step.

Soft votes p in [0, 1] are handled by ``soft_votes``:

* ``"mixture"`` (default): p is the teacher's probability of a hard "yes", so the likelihood
  given y = 1 is ``p * sens + (1 - p) * (1 - sens)`` (given y = 0:
  ``p * (1 - spec) + (1 - p) * spec``), and EM also infers the latent hard vote. A vote of 0.5
  is uninformative. This is a proper (normalized) model.
* ``"fractional"``: p is a fractional observation, likelihood ``sens^p (1 - sens)^(1 - p)``
  (given y = 0: ``(1 - spec)^p spec^(1 - p)``), M-step on the expected counts. This "likelihood"
  is not normalized in the rates, and on shrunk votes (e.g. 0.1/0.9) EM drifts to a degenerate
  optimum with rates near 0.5; kept for comparison only.

Both modes are identical on hard (0/1) votes.

Distributed use (one EM iteration)::

    stats = sum(dawid_skene_shard_stats(shard, params, gold, mask) for each shard)  # map/reduce
    params = dawid_skene_m_step(stats, smoothing)

with ``params=None`` on the first iteration (majority-vote initialization).
:class:`labelmill.aggregate.DawidSkene` runs exactly this loop on a single in-memory shard.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelmill._validation import as_float_array, check_probs, check_votes
from labelmill.ds_types import DSParams, SuffStats


def _safe_log(x: np.ndarray) -> np.ndarray:
    """log clipped at the smallest normal float, so 0 * log(0) stays 0 instead of NaN."""
    return np.log(np.clip(x, np.finfo(np.float64).tiny, None))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0.5 where den == 0 (no evidence at all)."""
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.5)


def _hard_counts(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive-vote and observed counts per cell. votes: (N, T, K) -> ((N, K), (N, K))."""
    observed = ~np.isnan(votes)
    positive = votes >= 0.5  # NaN compares False
    return positive.sum(axis=1, dtype=np.float64), observed.sum(axis=1, dtype=np.float64)


def _check_mask(gold_mask: Any, n_docs: int) -> np.ndarray:
    """gold_mask: (N,) bool -> (N,) bool."""
    mask = np.asarray(gold_mask)
    if mask.dtype != np.bool_ or mask.shape != (n_docs,):
        raise ValueError(
            f"gold_mask must be a bool array of shape ({n_docs},), "
            f"got dtype {mask.dtype} shape {mask.shape}"
        )
    return mask


def _check_gold(
    gold: Any, gold_mask: Any, n_docs: int, n_labels: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """gold: (N, K) 0/1 on masked rows, gold_mask: (N,) bool (default all rows)."""
    if gold is None:
        if gold_mask is not None:
            raise ValueError("gold_mask was given without gold")
        return None, None
    g = as_float_array(gold, "gold")
    if g.shape != (n_docs, n_labels):
        raise ValueError(f"gold must have shape ({n_docs}, {n_labels}), got {g.shape}")
    mask = np.ones(n_docs, dtype=bool) if gold_mask is None else _check_mask(gold_mask, n_docs)
    rows = g[mask]
    bad = ~((rows == 0.0) | (rows == 1.0))
    if np.any(bad):
        raise ValueError(
            f"gold must contain only 0/1 values on gold_mask rows, got {float(rows[bad][0])!r}"
        )
    return np.where(mask[:, None], g, 0.0), mask


def _check_rate(value: Any, name: str) -> float:
    """A finite real number >= 0 (smoothing, tol)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_soft(soft_votes: str) -> None:
    if soft_votes not in ("mixture", "fractional"):
        raise ValueError(f"soft_votes must be 'mixture' or 'fractional', got {soft_votes!r}")


def _check_params(params: DSParams, votes: np.ndarray) -> None:
    if params.sensitivity.shape != votes.shape[1:]:
        raise ValueError(
            f"params are for (T, K)={params.sensitivity.shape}, votes have shape {votes.shape}"
        )


def _teacher_slice(votes: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Votes of teacher t with NaN -> 0, observed mask as float, and whether all are 0/1.

    votes: (N, T, K) -> ((N, K), (N, K), bool)
    """
    x = votes[:, t, :]
    observed = ~np.isnan(x)
    pos = np.where(observed, x, 0.0)
    return pos, observed.astype(np.float64), bool(np.all((pos == 0.0) | (pos == 1.0)))


def _log_joint(
    votes: np.ndarray, params: DSParams, soft_votes: str
) -> tuple[np.ndarray, np.ndarray]:
    """log P(y=1, votes) and log P(y=0, votes). votes: (N, T, K) -> ((N, K), (N, K))."""
    n_docs = votes.shape[0]
    sens, spec = params.sensitivity, params.specificity
    log1 = np.tile(_safe_log(params.prior), (n_docs, 1))
    log0 = np.tile(_safe_log(1.0 - params.prior), (n_docs, 1))
    for t in range(votes.shape[1]):  # loop over the small teacher axis: no (N, T, K) temporaries
        pos, obs, hard = _teacher_slice(votes, t)
        if hard or soft_votes == "fractional":  # both models agree on 0/1 votes: linear in p
            log_fnr, log_spec = _safe_log(1.0 - sens[t]), _safe_log(spec[t])
            log1 += pos * (_safe_log(sens[t]) - log_fnr) + obs * log_fnr
            log0 += pos * (_safe_log(1.0 - spec[t]) - log_spec) + obs * log_spec
        else:
            log1 += obs * _safe_log(pos * (2.0 * sens[t] - 1.0) + (1.0 - sens[t]))
            log0 += obs * _safe_log(pos * (1.0 - 2.0 * spec[t]) + spec[t])
    return log1, log0


def _e_step(
    votes: np.ndarray,
    params: DSParams,
    gold: np.ndarray | None,
    mask: np.ndarray | None,
    soft_votes: str,
) -> tuple[np.ndarray, float]:
    _check_params(params, votes)
    log1, log0 = _log_joint(votes, params, soft_votes)
    log_marginal = np.logaddexp(log1, log0)
    posteriors = np.exp(log1 - log_marginal)
    if gold is not None and mask is not None:
        posteriors[mask] = gold[mask]
        log_marginal[mask] = np.where(gold[mask] == 1.0, log1[mask], log0[mask])
    return posteriors, float(log_marginal.sum())


def _responsibilities(
    pos: np.ndarray, obs: np.ndarray, sens: np.ndarray, spec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Latent hard vote under the mixture model: E[v | y=1, p] and E[1 - v | y=0, p].

    pos, obs: (N, K), sens, spec: (K,) -> ((N, K), (N, K)), zero on abstentions.
    """
    yes = pos * sens
    den1 = yes + (1.0 - pos) * (1.0 - sens)
    no = (1.0 - pos) * spec
    den0 = no + pos * (1.0 - spec)
    r1 = np.where(den1 > 0, yes / np.where(den1 > 0, den1, 1.0), pos)
    r0 = np.where(den0 > 0, no / np.where(den0 > 0, den0, 1.0), 1.0 - pos)
    return r1 * obs, r0 * obs


def _suff_stats(
    votes: np.ndarray,
    posteriors: np.ndarray,
    params: DSParams | None,
    log_likelihood: float,
    mask: np.ndarray | None,
    soft_votes: str,
) -> SuffStats:
    n_docs, n_teach, n_labels = votes.shape
    if params is not None:
        _check_params(params, votes)
    pos_vote, pos_weight = np.zeros((n_teach, n_labels)), np.zeros((n_teach, n_labels))
    neg_novote, neg_weight = np.zeros((n_teach, n_labels)), np.zeros((n_teach, n_labels))
    informative = np.zeros((n_docs, n_labels), dtype=bool)
    for t in range(n_teach):
        pos, obs, hard = _teacher_slice(votes, t)
        pos_weight[t] = np.einsum("nk,nk->k", posteriors, obs)
        neg_weight[t] = obs.sum(axis=0) - pos_weight[t]
        if params is None or hard or soft_votes == "fractional":  # E[v] is the vote itself
            pos_vote[t] = np.einsum("nk,nk->k", posteriors, pos)
            # sum (1 - q)(obs - p) = sum (1 - q) obs - (sum p - sum q p)
            neg_novote[t] = neg_weight[t] - (pos.sum(axis=0) - pos_vote[t])
        else:
            r1, r0 = _responsibilities(pos, obs, params.sensitivity[t], params.specificity[t])
            pos_vote[t] = np.einsum("nk,nk->k", posteriors, r1)
            neg_novote[t] = np.einsum("nk,nk->k", 1.0 - posteriors, r0)
        informative |= obs > 0
    if mask is not None:
        informative |= mask[:, None]
    return SuffStats(
        pos_vote=pos_vote,
        pos_weight=pos_weight,
        neg_novote=neg_novote,
        neg_weight=neg_weight,
        prior_pos=np.where(informative, posteriors, 0.0).sum(axis=0),
        prior_weight=informative.sum(axis=0).astype(np.float64),
        log_likelihood=float(log_likelihood),
        n_rows=n_docs,
    )


def _init_posteriors(
    votes: np.ndarray, gold: np.ndarray | None, mask: np.ndarray | None
) -> np.ndarray:
    positive, observed = _hard_counts(votes)
    posteriors = np.where(observed > 0, positive / np.maximum(observed, 1.0), 0.5)
    if gold is not None and mask is not None:
        posteriors[mask] = gold[mask]
    return posteriors


def dawid_skene_init_posteriors(votes: Any, gold: Any = None, gold_mask: Any = None) -> np.ndarray:
    """Majority-vote initial posteriors (0.5 where nobody voted), clamped to gold rows.

    votes: (N, T, K), gold: (N, K) | None, gold_mask: (N,) | None -> (N, K)
    """
    arr = check_votes(votes)
    g, mask = _check_gold(gold, gold_mask, arr.shape[0], arr.shape[2])
    return _init_posteriors(arr, g, mask)


def dawid_skene_e_step(
    votes: Any,
    params: DSParams,
    gold: Any = None,
    gold_mask: Any = None,
    soft_votes: str = "mixture",
) -> tuple[np.ndarray, float]:
    """Posterior ``P(y_nk = 1 | votes)`` and the shard log-likelihood under ``params``.

    votes: (N, T, K), gold: (N, K) | None, gold_mask: (N,) | None -> ((N, K), float)

    Gold rows are clamped to gold and contribute ``log P(votes, y = gold)`` to the
    log-likelihood; other cells contribute ``log P(votes)``. Cells without any vote get the prior.
    """
    _check_soft(soft_votes)
    arr = check_votes(votes)
    g, mask = _check_gold(gold, gold_mask, arr.shape[0], arr.shape[2])
    return _e_step(arr, params, g, mask, soft_votes)


def dawid_skene_suff_stats(
    votes: Any,
    posteriors: Any,
    params: DSParams | None = None,
    log_likelihood: float = 0.0,
    gold_mask: Any = None,
    soft_votes: str = "mixture",
) -> SuffStats:
    """M-step sufficient statistics of one shard.

    votes: (N, T, K), posteriors: (N, K), gold_mask: (N,) | None -> SuffStats of (T, K) / (K,)

    ``params`` are those that produced ``posteriors``; the mixture model needs them to infer the
    latent hard votes behind soft votes (with None, a soft vote p counts as p hard votes, as in
    the initialization). ``gold_mask`` only matters for rows where every teacher abstained:
    gold rows still count towards the prior. ``log_likelihood`` is carried through.
    """
    _check_soft(soft_votes)
    arr = check_votes(votes)
    post = check_probs(posteriors, "posteriors")
    if post.shape != (arr.shape[0], arr.shape[2]) or np.any(np.isnan(post)):
        raise ValueError(
            f"posteriors must be NaN-free with shape {(arr.shape[0], arr.shape[2])}, "
            f"got shape {post.shape}"
        )
    mask = None if gold_mask is None else _check_mask(gold_mask, arr.shape[0])
    return _suff_stats(arr, post, params, log_likelihood, mask, soft_votes)


def dawid_skene_m_step(stats: SuffStats, smoothing: float = 1.0) -> DSParams:
    """MAP parameters from reduced statistics with a symmetric Beta(1+s, 1+s) prior.

    stats: SuffStats of (T, K) / (K,) -> DSParams ((T, K), (T, K), (K,))

    ``rate = (count + smoothing) / (total + 2 * smoothing)``; 0.5 where total + 2s == 0.
    """
    s = _check_rate(smoothing, "smoothing")
    return DSParams(
        sensitivity=_ratio(stats.pos_vote + s, stats.pos_weight + 2 * s),
        specificity=_ratio(stats.neg_novote + s, stats.neg_weight + 2 * s),
        prior=_ratio(stats.prior_pos + s, stats.prior_weight + 2 * s),
    )


def dawid_skene_shard_stats(
    votes: Any,
    params: DSParams | None,
    gold: Any = None,
    gold_mask: Any = None,
    soft_votes: str = "mixture",
) -> SuffStats:
    """One map step: E-step under ``params`` (majority init if None), then statistics.

    votes: (N, T, K), gold: (N, K) | None, gold_mask: (N,) | None -> SuffStats
    With ``params=None`` the log-likelihood field is NaN (no model yet).
    """
    _check_soft(soft_votes)
    arr = check_votes(votes)
    g, mask = _check_gold(gold, gold_mask, arr.shape[0], arr.shape[2])
    return _shard_stats(arr, params, g, mask, soft_votes)


def dawid_skene_seed_stats(
    votes: Any, gold: Any, gold_mask: Any, soft_votes: str = "mixture"
) -> SuffStats:
    """Statistics of the gold seed rows only, with gold as the posterior (no EM).

    votes: (N, T, K), gold: (N, K) 0/1, gold_mask: (N,) bool -> SuffStats of (T, K) / (K,)

    The M-step of these statistics estimates each teacher's rates from the seed alone: the
    ``rates`` gold anchor, which correlated teachers cannot talk out of the truth (the EM over
    all documents can be: two teachers that err together look like the truth to it).
    A shard without seed rows gives all-zero statistics.
    """
    _check_soft(soft_votes)
    arr = check_votes(votes)
    g, mask = _check_gold(gold, gold_mask, arr.shape[0], arr.shape[2])
    if g is None or mask is None:
        raise ValueError("dawid_skene_seed_stats needs gold and gold_mask")
    seed_votes, seed_gold = arr[mask], g[mask]
    rows = np.ones(seed_votes.shape[0], dtype=bool)
    return _suff_stats(seed_votes, seed_gold, None, float("nan"), rows, soft_votes)


def _shard_stats(
    votes: np.ndarray,
    params: DSParams | None,
    gold: np.ndarray | None,
    mask: np.ndarray | None,
    soft_votes: str,
) -> SuffStats:
    if params is None:
        posteriors = _init_posteriors(votes, gold, mask)
        return _suff_stats(votes, posteriors, None, float("nan"), mask, soft_votes)
    posteriors, log_likelihood = _e_step(votes, params, gold, mask, soft_votes)
    return _suff_stats(votes, posteriors, params, log_likelihood, mask, soft_votes)
