"""The steps of binary-per-label Dawid-Skene EM: E-step, sufficient statistics, M-step.

The model, its observation models and the shrinkage are described in
:mod:`labelmill.aggregation.dawid_skene`, which runs these steps in its one EM loop. They are
kept apart so that the distributed job can call each step on one batch: every function here
takes and returns numpy arrays or the picklable :class:`~labelmill.aggregation.types.DSParams`
/ :class:`~labelmill.aggregation.types.SuffStats`, and statistics add across shards.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelmill._validation import as_float_array, check_probs, check_votes
from labelmill.aggregation.score_model import fit_score_model, logit, seed_histograms
from labelmill.aggregation.types import DSParams, SuffStats
from labelmill.aggregation.voting import _hard_counts

SOFT_VOTES = ("score", "mixture", "fractional")
ANCHORS = ("rates", "clamp")


def _check_soft(soft_votes: str) -> None:
    if soft_votes not in SOFT_VOTES:
        raise ValueError(f"soft_votes must be one of {SOFT_VOTES}, got {soft_votes!r}")


def score_teachers_of(votes: np.ndarray) -> np.ndarray:
    """Teachers whose observed votes are not all 0/1 (they emit probabilities). -> (T,) bool"""
    soft = ~np.isnan(votes) & (votes != 0.0) & (votes != 1.0)
    return soft.any(axis=(0, 2))


def _flags(params: DSParams, soft_votes: str) -> np.ndarray:
    """Which teachers the E-step reads through the score model."""
    if soft_votes != "score":
        return np.zeros(params.sensitivity.shape[0], dtype=bool)
    return params.score_teacher


def _safe_log(x: np.ndarray) -> np.ndarray:
    """log clipped at the smallest normal float, so 0 * log(0) stays 0 instead of NaN."""
    return np.log(np.clip(x, np.finfo(np.float64).tiny, None))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0.5 where den == 0 (no evidence at all)."""
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.5)


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


def _log_joint(
    votes: np.ndarray, params: DSParams, soft_votes: str
) -> tuple[np.ndarray, np.ndarray]:
    """log P(y=1, votes) and log P(y=0, votes) (up to a y-independent constant for score
    teachers, whose parameters EM never changes). votes: (N, T, K) -> ((N, K), (N, K))."""
    n_docs = votes.shape[0]
    sens, spec = params.sensitivity, params.specificity
    log1 = np.tile(_safe_log(params.prior), (n_docs, 1))
    log0 = np.tile(_safe_log(1.0 - params.prior), (n_docs, 1))
    score = _flags(params, soft_votes)
    for t in range(votes.shape[1]):  # loop over the small teacher axis: no (N, T, K) temporaries
        if score[t]:
            x = votes[:, t, :]
            llr = params.score_slope[t] * logit(x) + params.score_bias[t] - params.score_base[t]
            log1 += np.where(np.isnan(x), 0.0, llr)
            continue
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
    clamp: bool = True,
) -> tuple[np.ndarray, float]:
    _check_params(params, votes)
    log1, log0 = _log_joint(votes, params, soft_votes)
    log_marginal = np.logaddexp(log1, log0)
    posteriors = np.exp(log1 - log_marginal)
    if gold is not None and mask is not None:
        if clamp:
            posteriors[mask] = gold[mask]
        log_marginal[mask] = np.where(gold[mask] == 1.0, log1[mask], log0[mask])
    return posteriors, float(log_marginal.sum())


def _suff_stats(
    votes: np.ndarray,
    posteriors: np.ndarray,
    params: DSParams | None,
    log_likelihood: float,
    mask: np.ndarray | None,
    soft_votes: str,
) -> SuffStats:
    """Statistics of one shard; on ``mask`` rows the posteriors are gold (seed histograms)."""
    n_docs, n_teach, n_labels = votes.shape
    if params is not None:
        _check_params(params, votes)
    out = SuffStats.zeros(n_teach, n_labels)
    informative = np.zeros((n_docs, n_labels), dtype=bool)
    seed_rows = np.zeros(n_docs, dtype=bool) if mask is None else mask
    for t in range(n_teach):
        pos, obs, hard = _teacher_slice(votes, t)
        out.pos_weight[t] = np.einsum("nk,nk->k", posteriors, obs)
        out.neg_weight[t] = obs.sum(axis=0) - out.pos_weight[t]
        out.vote_sum[t], out.vote_count[t] = pos.sum(axis=0), obs.sum(axis=0)
        if params is None or hard or soft_votes == "fractional":  # E[v] is the vote itself
            out.pos_vote[t] = np.einsum("nk,nk->k", posteriors, pos)
            # sum (1 - q)(obs - p) = sum (1 - q) obs - (sum p - sum q p)
            out.neg_novote[t] = out.neg_weight[t] - (pos.sum(axis=0) - out.pos_vote[t])
        else:
            r1, r0 = _responsibilities(pos, obs, params.sensitivity[t], params.specificity[t])
            out.pos_vote[t] = np.einsum("nk,nk->k", posteriors, r1)
            out.neg_novote[t] = np.einsum("nk,nk->k", 1.0 - posteriors, r0)
        if seed_rows.any() and not hard:
            x = votes[:, t, :]
            out.seed_pos[t], out.seed_neg[t] = seed_histograms(x, obs > 0, posteriors, seed_rows)
        informative |= obs > 0
    if mask is not None:
        informative |= mask[:, None]
    out.prior_pos[:] = np.where(informative, posteriors, 0.0).sum(axis=0)
    out.prior_weight[:] = informative.sum(axis=0)
    return SuffStats(**{**out.__dict__, "log_likelihood": float(log_likelihood), "n_rows": n_docs})


def _init_posteriors(
    votes: np.ndarray, gold: np.ndarray | None, mask: np.ndarray | None, soft_votes: str
) -> np.ndarray:
    """Majority-vote start: the share of hard "yes" votes (``"score"``: the mean vote, so that
    one calibrated teacher starts at its own probabilities), clamped to gold on ``mask``."""
    if soft_votes == "score":
        observed = ~np.isnan(votes)
        total = np.where(observed, votes, 0.0).sum(axis=1)
        count = observed.sum(axis=1)
        posteriors = np.where(count > 0, total / np.maximum(count, 1), 0.5)
    else:
        positive, observed_count = _hard_counts(votes)
        posteriors = np.where(observed_count > 0, positive / np.maximum(observed_count, 1.0), 0.5)
    if gold is not None and mask is not None:
        posteriors[mask] = gold[mask]
    return posteriors


def dawid_skene_init_posteriors(
    votes: Any, gold: Any = None, gold_mask: Any = None, soft_votes: str = "score"
) -> np.ndarray:
    """Majority-vote initial posteriors (0.5 where nobody voted), clamped to gold rows.

    votes: (N, T, K), gold: (N, K) | None, gold_mask: (N,) | None -> (N, K)
    """
    _check_soft(soft_votes)
    arr = check_votes(votes)
    g, mask = _check_gold(gold, gold_mask, arr.shape[0], arr.shape[2])
    return _init_posteriors(arr, g, mask, soft_votes)


def dawid_skene_e_step(
    votes: Any,
    params: DSParams,
    gold: Any = None,
    gold_mask: Any = None,
    soft_votes: str = "score",
    clamp_gold: bool = True,
) -> tuple[np.ndarray, float]:
    """Posterior ``P(y_nk = 1 | votes)`` and the shard log-likelihood under ``params``.

    votes: (N, T, K), gold: (N, K) | None, gold_mask: (N,) | None -> ((N, K), float)

    Gold rows contribute ``log P(votes, y = gold)`` to the log-likelihood and, with
    ``clamp_gold``, their posterior is their gold (without it, the model's own posterior: what
    the aggregate writes, so that it is scored like any system); other cells contribute
    ``log P(votes)``. Cells without any vote get the prior.
    """
    _check_soft(soft_votes)
    arr = check_votes(votes)
    g, mask = _check_gold(gold, gold_mask, arr.shape[0], arr.shape[2])
    return _e_step(arr, params, g, mask, soft_votes, clamp_gold)


def dawid_skene_suff_stats(
    votes: Any,
    posteriors: Any,
    params: DSParams | None = None,
    log_likelihood: float = 0.0,
    gold_mask: Any = None,
    soft_votes: str = "score",
) -> SuffStats:
    """M-step sufficient statistics of one shard.

    votes: (N, T, K), posteriors: (N, K), gold_mask: (N,) | None -> SuffStats of (T, K) / (K,)

    ``params`` are those that produced ``posteriors``; the mixture model needs them to infer the
    latent hard votes behind soft votes (with None, a soft vote p counts as p hard votes, as in
    the initialization). On ``gold_mask`` rows the posteriors are taken as gold: they count
    towards the prior even without votes and fill the score model's seed histograms.
    ``log_likelihood`` is carried through.
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


def dawid_skene_m_step(
    stats: SuffStats, smoothing: float = 1.0, score_teachers: Any = None
) -> DSParams:
    """MAP parameters from reduced statistics.

    stats: SuffStats of (T, K) / (K,), score_teachers: (T,) bool | None -> DSParams

    Hard-vote rates are shrunk towards the uninformative teacher with 2 * smoothing
    pseudo-votes at the teacher's vote rate r: ``sens = (pos_vote + 2 s r) / (pos_weight + 2 s)``,
    ``spec = (neg_novote + 2 s (1 - r)) / (neg_weight + 2 s)`` (0.5 without any evidence); the
    prior is ``(prior_pos + s) / (prior_weight + 2 s)``. Score teachers with seed documents get
    the score model fitted on them (ridge strength ``smoothing``), under the base
    ``logit((seed positives + s) / (seed documents + 2 s))``; without seed documents they are
    taken as calibrated (slope 1, bias 0, base the logit of their mean probability).
    """
    s = _check_rate(smoothing, "smoothing")
    n_teach = stats.pos_vote.shape[0]
    flags = (
        np.zeros(n_teach, dtype=bool)
        if score_teachers is None
        else np.asarray(score_teachers, dtype=bool)
    )
    if flags.shape != (n_teach,):
        raise ValueError(f"score_teachers must have shape ({n_teach},), got {flags.shape}")
    rate = _ratio(stats.vote_sum, stats.vote_count)
    slope, bias, base = np.ones(rate.shape), np.zeros(rate.shape), np.zeros(rate.shape)
    if flags.any():
        seed_pos, seed_neg = stats.seed_pos[flags], stats.seed_neg[flags]
        n_seed = (seed_pos + seed_neg).sum(axis=-1)
        seed_base = logit(_ratio(seed_pos.sum(axis=-1) + s, n_seed + 2 * s))
        fit_slope, fit_bias = fit_score_model(seed_pos, seed_neg, seed_base, s)
        free_base = logit(np.clip(rate[flags], 1e-4, 1 - 1e-4))
        has_seed = n_seed > 0
        slope[flags] = np.where(has_seed, fit_slope, 1.0)
        bias[flags] = np.where(has_seed, fit_bias, 0.0)
        base[flags] = np.where(has_seed, seed_base, free_base)
    return DSParams(
        sensitivity=_ratio(stats.pos_vote + 2 * s * rate, stats.pos_weight + 2 * s),
        specificity=_ratio(stats.neg_novote + 2 * s * (1.0 - rate), stats.neg_weight + 2 * s),
        prior=_ratio(stats.prior_pos + s, stats.prior_weight + 2 * s),
        score_teacher=flags,
        score_slope=slope,
        score_bias=bias,
        score_base=base,
    )


def dawid_skene_shard_stats(
    votes: Any,
    params: DSParams | None,
    gold: Any = None,
    gold_mask: Any = None,
    soft_votes: str = "score",
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
    votes: Any, gold: Any, gold_mask: Any, soft_votes: str = "score"
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
        posteriors = _init_posteriors(votes, gold, mask, soft_votes)
        return _suff_stats(votes, posteriors, None, float("nan"), mask, soft_votes)
    posteriors, log_likelihood = _e_step(votes, params, gold, mask, soft_votes)
    return _suff_stats(votes, posteriors, params, log_likelihood, mask, soft_votes)


def param_change(old: DSParams, new: DSParams) -> float:
    """Largest absolute change of any sensitivity, specificity or prior between two iterations."""
    if old.sensitivity.shape != new.sensitivity.shape:
        raise ValueError(
            f"params of different shapes: {old.sensitivity.shape} vs {new.sensitivity.shape}"
        )
    return float(
        max(
            np.max(np.abs(new.sensitivity - old.sensitivity)),
            np.max(np.abs(new.specificity - old.specificity)),
            np.max(np.abs(new.prior - old.prior)),
        )
    )
