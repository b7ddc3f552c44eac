"""Aggregation of multi-teacher votes into per-label probabilities, and decision thresholds.

votes: (N, T, K) floats (N documents, T teachers, K labels), hard votes (0/1) or
probabilities in [0, 1], NaN for an abstention. Three estimators share one interface
(``fit(votes, gold=None, gold_mask=None) -> self``, ``predict_proba(votes) -> (N, K)``):
:class:`MajorityVote`, :class:`WeightedVote` and :class:`DawidSkene` (whose one EM loop,
:func:`fit_em`, the Ray job runs over map/reduce statistics). :mod:`.thresholds` turns
probabilities into labels with one threshold per label.
"""

from labelmill.aggregation.dawid_skene import DawidSkene, EMFit, fit_em, reliability_table
from labelmill.aggregation.ds_steps import (
    dawid_skene_e_step,
    dawid_skene_init_posteriors,
    dawid_skene_m_step,
    dawid_skene_seed_stats,
    dawid_skene_shard_stats,
    dawid_skene_suff_stats,
    param_change,
    score_teachers_of,
)
from labelmill.aggregation.thresholds import (
    MIN_SEED_POSITIVES,
    ThresholdChoice,
    ThresholdStats,
    choose_thresholds,
    prevalence_thresholds,
    threshold_probs,
    threshold_stats,
    tune_thresholds,
)
from labelmill.aggregation.types import DSParams, SuffStats
from labelmill.aggregation.voting import (
    MajorityVote,
    WeightedVote,
    agreement,
    majority_vote,
    n_teachers,
    weighted_vote,
)

__all__ = [
    "MIN_SEED_POSITIVES",
    "DSParams",
    "DawidSkene",
    "EMFit",
    "MajorityVote",
    "SuffStats",
    "ThresholdChoice",
    "ThresholdStats",
    "WeightedVote",
    "agreement",
    "choose_thresholds",
    "dawid_skene_e_step",
    "dawid_skene_init_posteriors",
    "dawid_skene_m_step",
    "dawid_skene_seed_stats",
    "dawid_skene_shard_stats",
    "dawid_skene_suff_stats",
    "fit_em",
    "majority_vote",
    "n_teachers",
    "param_change",
    "prevalence_thresholds",
    "reliability_table",
    "score_teachers_of",
    "threshold_probs",
    "threshold_stats",
    "tune_thresholds",
    "weighted_vote",
]
