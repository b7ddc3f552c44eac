"""The aggregation job (``labelmill aggregate``): teacher votes -> one soft label set per document.

Steps: assemble one row per corpus document with every teacher's vote
(:mod:`labelmill.pipelines.assemble`,
a distributed group by id, materialized once); decode each block once into numeric vote arrays
kept in the object store (:mod:`labelmill.pipelines.vote_shards`) and fit the method with
map/reduce passes over them, one task per shard (Dawid-Skene EM: per-shard sufficient
statistics summed on the driver, then the M-step; weighted vote: per-teacher confusion counts
against the gold seed or the majority); then one pass over the assembled rows that
computes every row's probabilities and writes the Parquet parts. Documents no teacher voted on
are kept, with ``error = "no teacher voted"`` and null probs. The reliability table is the
Dawid-Skene rates for ``dawid_skene``; for ``majority`` and ``weighted`` it is Laplace-smoothed
sensitivity / specificity against the gold seed (when anchoring on it and it has votes), else
against the majority's hard labels (``source`` says which). Outputs (see
:mod:`labelmill.layout`): ``aggregate/labels/``, ``aggregate/reliability.json``,
``aggregate/summary.json``.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from labelmill.aggregation import (
    DSParams,
    EMFit,
    ThresholdChoice,
    agreement,
    choose_thresholds,
    dawid_skene_e_step,
    dawid_skene_seed_stats,
    dawid_skene_shard_stats,
    fit_em,
    majority_vote,
    reliability_table,
    threshold_stats,
    weighted_vote,
)
from labelmill.config import LabelmillConfig, has_gold
from labelmill.errors import ConfigError, InputError, JobError
from labelmill.jsonio import write_json
from labelmill.layout import aggregate_file_uri, aggregate_labels_uri
from labelmill.pipelines.assemble import (
    NO_VOTE_ERROR,
    SCORE_MODES,
    BatchSpec,
    aggregate_label_schema,
    assemble_votes,
    batch_arrays,
    label_table,
    vote_mode,
)
from labelmill.pipelines.corpus import read_corpus
from labelmill.pipelines.gold import corpus_without_gold_column
from labelmill.pipelines.parts import list_parts, write_part
from labelmill.pipelines.runtime import ray_session
from labelmill.pipelines.vote_shards import VoteShards
from labelmill.pipelines.votes_io import votes_dir
from labelmill.taxonomy import Taxonomy
from labelmill.vote_matrix import confusion_counts, hard_reference, smoothed_rates

__all__ = [
    "NO_VOTE_ERROR",
    "AggregateJobError",
    "AggregateJobSummary",
    "aggregate_label_schema",
    "run_aggregate_job",
]


class AggregateJobError(JobError):
    """The job lost or invented rows (rows out != corpus rows in)."""


@dataclass
class AggregateJobSummary:
    """What one aggregation run did (also written as ``aggregate/summary.json``)."""

    method: str
    teachers: list[str]
    taxonomy_version: str
    n_docs: int = 0
    n_all_error: int = 0
    mean_agreement: float | None = None
    label_rate: dict[str, float] = field(default_factory=dict)
    mean_prob: dict[str, float] = field(default_factory=dict)
    seed_prevalence: dict[str, float | None] = field(default_factory=dict)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    score_teachers: list[str] = field(default_factory=list)
    teacher_votes: dict[str, int] = field(default_factory=dict)
    n_iter: int | None = None
    converged: bool | None = None
    log_likelihood: list[float] = field(default_factory=list)
    weights_source: str | None = None
    reliability_source: str = ""
    labels_uri: str = ""
    reliability_uri: str = ""
    summary_uri: str = ""
    created_at: str = ""

    def to_json(self) -> str:
        """The summary as JSON (NaN log-likelihoods become null)."""
        payload = asdict(self)
        payload["log_likelihood"] = [v if np.isfinite(v) else None for v in self.log_likelihood]
        return json.dumps(payload, indent=2)

    def render(self) -> str:
        """A short human-readable table."""
        agree = "-" if self.mean_agreement is None else f"{self.mean_agreement:.3f}"
        lines = [
            f"aggregate: {self.method} over {len(self.teachers)} teachers "
            f"(taxonomy {self.taxonomy_version})",
            f"  documents {self.n_docs}   all-error rows {self.n_all_error}   "
            f"mean agreement {agree}",
        ]
        if self.n_iter is not None:
            lines.append(f"  EM iterations {self.n_iter}   converged {self.converged}")
        if self.weights_source is not None:
            lines.append(f"  teacher weights from {self.weights_source}")
        lines.append(f"  {'teacher':<24}{'docs voted':>11}")
        lines += [f"  {t:<24}{self.teacher_votes.get(t, 0):>11}" for t in self.teachers]
        lines.append(
            f"  {'label':<24}{'seed prev':>10}{'mean p':>8}{'threshold':>10}{'labeled':>8}  source"
        )
        for name, rate in self.label_rate.items():
            prev = self.seed_prevalence.get(name)
            thr = self.thresholds.get(name, {})
            lines.append(
                f"  {name:<24}{'-' if prev is None else f'{prev:.3f}':>10}"
                f"{self.mean_prob.get(name, float('nan')):>8.3f}"
                f"{thr.get('threshold', float('nan')):>10.3f}{rate:>8.3f}  {thr.get('source', '-')}"
            )
        lines.append(f"  labels:      {self.labels_uri}")
        lines.append(f"  reliability: {self.reliability_uri}  ({self.reliability_source})")
        lines.append(f"  summary:     {self.summary_uri}")
        return "\n".join(lines)


def resolve_teachers(config: LabelmillConfig) -> list[str]:
    """``aggregate.teachers``; by default every configured teacher's name, where a campaign
    teacher (``campaign.teachers``) counts only once it has votes. ``ValueError`` on duplicates.
    """
    names = config.aggregate.teachers
    if names is None:
        campaign = set(config.campaign.teachers)
        return [
            t.name
            for t in config.teachers
            if t.name not in campaign or list_parts(votes_dir(config.output_uri, t.name))
        ]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"aggregate.teachers must be distinct names, at least one, got {names!r}")
    return list(names)


def _one_row(value: Any) -> pa.Table:
    return pa.table({"blob": [pickle.dumps(value)]})


def ds_stats_shard(
    votes: np.ndarray, gold: Any, mask: Any, spec: BatchSpec, params: DSParams | None
) -> Any:
    """One EM iteration on one shard: its Dawid-Skene ``SuffStats``."""
    return dawid_skene_shard_stats(votes, params, gold, mask, spec.soft_votes)


def ds_seed_stats_shard(votes: np.ndarray, gold: Any, mask: Any, spec: BatchSpec) -> Any:
    """The `rates` anchor on one shard: statistics of its gold seed rows."""
    return dawid_skene_seed_stats(votes, gold, mask, spec.soft_votes)


def counts_shard(
    votes: np.ndarray, gold: Any, mask: Any, reference: str, threshold: float
) -> np.ndarray:
    """(4, T, K) confusion counts of one shard vs the gold seed or the majority labels."""
    if reference == "gold_seed":
        ref = np.where(mask[:, None], gold, np.nan)
    else:
        ref = hard_reference(majority_vote(votes), threshold)
    return confusion_counts(votes, ref)


def fit_dawid_skene(shards: VoteShards, spec: BatchSpec, config: LabelmillConfig) -> EMFit:
    """Distributed Dawid-Skene: :func:`labelmill.aggregation.fit_em` over statistics summed
    from every shard (the seed rows' alone for the `rates` anchor)."""
    cfg = config.aggregate
    anchored = cfg.gold_anchor == "rates" and spec.use_gold

    def seed_stats() -> Any:
        return shards.reduce(ds_seed_stats_shard, spec=spec)

    return fit_em(
        lambda params: shards.reduce(ds_stats_shard, spec=spec, params=params),
        max_iter=cfg.max_iter,
        tol=cfg.tol,
        smoothing=cfg.smoothing,
        score_teachers=np.asarray(spec.score_teachers, dtype=bool),
        seed_stats=seed_stats if anchored else None,
    )


def teacher_counts(
    shards: VoteShards, spec: BatchSpec, config: LabelmillConfig
) -> tuple[np.ndarray, str]:
    """Confusion counts vs the gold seed (when anchoring and there are seed rows), else vs the
    majority's hard labels (at ``aggregate.threshold``, 0.5 when unset); and which reference."""
    threshold = config.aggregate.threshold or 0.5
    if spec.use_gold:
        counts = shards.reduce(counts_shard, reference="gold_seed", threshold=0.5)
        if counts.sum() > 0:
            return counts, "gold_seed"
    counts = shards.reduce(counts_shard, reference="majority", threshold=threshold)
    return counts, "majority"


def configured_weights(config: LabelmillConfig, teachers: list[str], n_labels: int) -> np.ndarray:
    """(T, K) accuracies from ``aggregate.teacher_weights``; ``ValueError`` naming the missing."""
    given = config.aggregate.teacher_weights or {}
    missing = [t for t in teachers if t not in given]
    if missing:
        raise ConfigError(f"aggregate.teacher_weights has no weight for teachers {missing}")
    return np.repeat(np.array([[given[t]] for t in teachers]), n_labels, axis=1)


@dataclass(frozen=True)
class FittedMethod:
    """A fitted aggregation method, shipped to the final pass: DS params or weighted weights."""

    method: str
    version: str
    labels_uri: str
    params: DSParams | None = None
    weights: np.ndarray | None = None
    threshold: np.ndarray | None = None  # (K,), chosen after the fit


def _probs(
    votes: np.ndarray,
    gold: Any,
    mask: Any,
    spec: BatchSpec,
    fitted: FittedMethod,
    clamp: bool = True,
) -> tuple[np.ndarray, float]:
    """votes (N, T, K) -> the fitted method's probabilities (N, K) and log-likelihood."""
    if fitted.method == "majority":
        return majority_vote(votes), 0.0
    if fitted.method == "weighted":
        return weighted_vote(votes, fitted.weights), 0.0
    return dawid_skene_e_step(votes, fitted.params, gold, mask, spec.soft_votes, clamp)


def threshold_stats_shard(
    votes: np.ndarray, gold: Any, mask: Any, spec: BatchSpec, fitted: FittedMethod
) -> Any:
    """Threshold statistics of one shard's aggregate probabilities (seed = gold).

    The probabilities are the unclamped posteriors: a seed row's gold must not decide its
    own threshold statistics."""
    probs, _ = _probs(votes, None, None, spec, fitted)
    if gold is None:
        return threshold_stats(probs)
    return threshold_stats(probs, gold, mask)


def finalize_batch(batch: pa.Table, spec: BatchSpec, fitted: FittedMethod) -> pa.Table:
    """Map UDF: probabilities by the fitted method, one written part, a pickled tally.

    Seed rows keep the aggregate's own posterior (not their gold): the aggregate is scored,
    thresholded and compared like every other system; the student reads gold separately."""
    votes, gold, mask = batch_arrays(batch, spec)
    # Unclamped posteriors; the log-likelihood is the EM's (gold rows' gold), continuing its
    # history.
    probs, log_likelihood = _probs(votes, gold, mask, spec, fitted, clamp=False)
    table = label_table(batch, spec, votes, probs, fitted.threshold, fitted.method, fitted.version)
    if table.num_rows:
        write_part(table, fitted.labels_uri)
    voted = ~np.isnan(votes).all(axis=2)  # (N, T)
    rows_voted = voted.any(axis=1)
    label_hits = np.where(np.isnan(probs), False, probs >= fitted.threshold)[rows_voted]
    return _one_row(
        {
            "rows": table.num_rows,
            "all_error": int((~rows_voted).sum()),
            "label_pos": label_hits.sum(axis=0).astype(np.int64),
            "prob_sum": np.nansum(probs[rows_voted], axis=0),
            "agreement_sum": float(np.nansum(agreement(votes))),
            "teacher_voted": voted.sum(axis=0).astype(np.int64),
            "log_likelihood": log_likelihood,
        }
    )


def fit_method(
    shards: VoteShards, spec: BatchSpec, config: LabelmillConfig, summary: AggregateJobSummary
) -> tuple[FittedMethod, list[dict[str, Any]]]:
    """Fit ``aggregate.method`` over the assembled votes' shards; its reliability records.

    Records the fit (iterations, sources) in ``summary``.
    """
    cfg = config.aggregate
    fitted = FittedMethod(cfg.method, summary.taxonomy_version, summary.labels_uri)
    if cfg.method == "dawid_skene":
        fit = fit_dawid_skene(shards, spec, config)
        summary.reliability_source = "dawid_skene"
        summary.n_iter, summary.converged = fit.n_iter, fit.converged
        summary.log_likelihood = list(fit.log_likelihood)
        reliability = reliability_table(fit.params, spec.names, spec.teachers)
        return replace(fitted, params=fit.params), reliability
    counts, summary.reliability_source = teacher_counts(shards, spec, config)
    accuracy, sensitivity, specificity = smoothed_rates(counts)
    reliability = [
        {
            "teacher": teacher,
            "label": name,
            "sensitivity": float(sensitivity[t, k]),
            "specificity": float(specificity[t, k]),
        }
        for t, teacher in enumerate(spec.teachers)
        for k, name in enumerate(spec.names)
    ]
    if cfg.method == "weighted":
        weights = accuracy
        summary.weights_source = summary.reliability_source
        if cfg.teacher_weights is not None:
            weights = configured_weights(config, list(spec.teachers), len(spec.names))
            summary.weights_source = "teacher_weights"
        fitted = replace(fitted, weights=np.clip(weights, 0.01, 0.99))
    return fitted, reliability


def choose_aggregate_thresholds(
    shards: VoteShards, spec: BatchSpec, config: LabelmillConfig, fitted: FittedMethod
) -> tuple[ThresholdChoice, Any]:
    """Per-label thresholds of the aggregate (see :mod:`labelmill.aggregation.thresholds`):
    F1 on the gold seed where it has enough positives, else expected F1; a configured
    ``aggregate.threshold`` overrides both. Also returns the statistics (seed prevalence)."""
    stats = shards.reduce(threshold_stats_shard, spec=spec, fitted=fitted)
    return choose_thresholds(stats, fixed=config.aggregate.threshold), stats


def tally(summary: AggregateJobSummary, parts: list[dict[str, Any]]) -> None:
    """Fill the counts of ``summary`` from the final pass' per-batch tallies."""
    summary.n_docs = sum(p["rows"] for p in parts)
    summary.n_all_error = sum(p["all_error"] for p in parts)
    n_voted = summary.n_docs - summary.n_all_error
    if n_voted:
        summary.mean_agreement = sum(p["agreement_sum"] for p in parts) / n_voted
    label_pos = sum(p["label_pos"] for p in parts)
    summary.label_rate = {  # share of the voted rows carrying each label
        name: float(label_pos[k]) / n_voted if n_voted else 0.0
        for k, name in enumerate(summary.label_rate)
    }
    prob_sum = sum(p["prob_sum"] for p in parts)
    summary.mean_prob = {  # the soft labels' positive rate: near the seed prevalence
        name: float(prob_sum[k]) / n_voted if n_voted else 0.0
        for k, name in enumerate(summary.label_rate)
    }
    voted = sum(p["teacher_voted"] for p in parts)
    summary.teacher_votes = {t: int(voted[i]) for i, t in enumerate(summary.teachers)}
    if summary.method == "dawid_skene":
        summary.log_likelihood.append(sum(p["log_likelihood"] for p in parts))


# Corpus rows per hash partition by default: an assembled row (id, text, votes, lineage) is a
# few hundred bytes, so a partition stays a block of the order of Ray Data's 128 MiB target
# whatever N is, instead of N / CPUs rows per task.
ROWS_PER_PARTITION = 250_000


def default_partitions(rows: int, cpus: int) -> int:
    """Hash partitions of the assembly: one per CPU, more as the corpus grows."""
    return max(cpus, -(-rows // ROWS_PER_PARTITION))


def run_aggregate_job(config: LabelmillConfig) -> AggregateJobSummary:
    """Aggregate the teachers' votes into one soft label set per corpus document."""
    cfg = config.aggregate
    taxonomy = Taxonomy.from_config(config.taxonomy)
    teachers = resolve_teachers(config)
    vote_files = [list_parts(votes_dir(config.output_uri, t)) for t in teachers]
    missing = [t for t, files in zip(teachers, vote_files, strict=True) if not files]
    if missing:
        raise InputError(f"no vote files for teachers {missing} under {config.output_uri!r}/votes")
    if cfg.method == "weighted" and cfg.teacher_weights is not None:
        configured_weights(config, teachers, len(taxonomy))  # fail before any work
    use_gold = (
        cfg.use_gold_seed and has_gold(config.gold, config.corpus) and config.gold.seed_fraction > 0
    )
    modes = [vote_mode(config.output_uri, files[0]) for files in vote_files]
    score = tuple(mode in SCORE_MODES for mode in modes)
    spec = BatchSpec(tuple(taxonomy.names), tuple(teachers), use_gold, cfg.soft_votes, score)
    summary = AggregateJobSummary(
        method=cfg.method,
        teachers=teachers,
        taxonomy_version=taxonomy.version,
        label_rate=dict.fromkeys(taxonomy.names, 0.0),
        score_teachers=[t for t, flag in zip(teachers, score, strict=True) if flag],
        labels_uri=aggregate_labels_uri(config),
        reliability_uri=aggregate_file_uri(config, "reliability.json"),
        summary_uri=aggregate_file_uri(config, "summary.json"),
    )
    with ray_session(config.ray):
        import ray

        cpus = config.ray.light_stage_cpus
        rows_in = read_corpus(corpus_without_gold_column(config.corpus), cpus).count()
        if rows_in == 0:
            raise InputError(f"corpus {config.corpus.uri!r} has no documents")
        cluster_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        partitions = cfg.num_partitions or default_partitions(rows_in, cluster_cpus)
        ds = assemble_votes(config, teachers, vote_files, taxonomy.version, partitions)
        ds = ds.materialize()
        if ds.count() != rows_in:
            raise AggregateJobError(f"assembled {ds.count()} rows from {rows_in} corpus documents")
        shards = VoteShards(ds, spec, cpus)
        fitted, reliability = fit_method(shards, spec, config, summary)
        choice, stats = choose_aggregate_thresholds(shards, spec, config, fitted)
        fitted = replace(fitted, threshold=choice.thresholds)
        summary.thresholds = choice.to_record(taxonomy.names)
        seed_n = (stats.seed_pos + stats.seed_neg).sum(axis=1)
        summary.seed_prevalence = {
            name: float(stats.seed_pos[k].sum() / seed_n[k]) if seed_n[k] else None
            for k, name in enumerate(taxonomy.names)
        }
        fs, labels_path = fsspec.core.url_to_fs(summary.labels_uri)
        if fs.exists(labels_path):  # overwrite a previous run
            fs.rm(labels_path, recursive=True)
        tallies = ds.map_batches(
            finalize_batch,
            batch_format="pyarrow",
            fn_kwargs={"spec": spec, "fitted": fitted},
            num_cpus=cpus,
        ).take_all()
    tally(summary, [pickle.loads(row["blob"]) for row in tallies])
    if summary.n_docs != rows_in:
        raise AggregateJobError(
            f"wrote {summary.n_docs} aggregate rows for {rows_in} corpus documents"
        )
    for record in reliability:
        record["source"] = summary.reliability_source
    summary.created_at = datetime.now(UTC).isoformat()
    write_json(summary.reliability_uri, reliability)
    write_json(summary.summary_uri, json.loads(summary.to_json()))
    return summary
