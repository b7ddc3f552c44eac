"""Scoring teachers, the aggregate and the student against held-out gold (``labelmill evaluate``).

Reads the aggregate labels (one row per document, with every teacher's probabilities beside
the aggregate's), keeps the documents with gold that are not in the gold seed, scores every
system on exactly those documents with :mod:`labelmill.evaluation`, and writes
``<output_uri>/eval/metrics.json`` (schema in :mod:`labelmill.evaluation`) and ``report.html``.
With a gold seed it also scores ``seed-only``, a model of the seed's gold alone
(:mod:`labelmill.pipelines.baseline`), so the report can say whether the loop beat it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelmill.aggregation import MIN_SEED_POSITIVES, ThresholdChoice, choose_thresholds
from labelmill.baseline import BASELINE_NAME, loop_verdict
from labelmill.config import LabelmillConfig
from labelmill.documents import check_text
from labelmill.errors import InputError
from labelmill.evaluation import (
    add_lift,
    build_metrics_document,
    format_quality_table,
    gold_matrix,
    probs_matrix,
    score_system,
    to_json,
)
from labelmill.jsonio import read_json
from labelmill.layout import aggregate_file_uri, aggregate_labels_uri, eval_dir, student_dir
from labelmill.pipelines.baseline import read_seed, score_seed_baseline, wants_seed_baseline
from labelmill.pipelines.runtime import ray_session
from labelmill.report import render_report
from labelmill.taxonomy import Taxonomy

AGGREGATE_COLUMNS = [
    "id",
    "text",
    "gold",
    "gold_seed",
    "teachers",
    "teacher_probs",
    "probs",
    "method",
    "taxonomy_version",
    "lineage",
]


@dataclass
class EvaluateJobSummary:
    """The metrics document and where it and the report were written."""

    document: dict[str, Any]
    metrics_path: str
    report_path: str
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        """The quality table (one line per system) and the output paths."""
        lines = [f"held-out gold documents: {self.document['n_documents']}"]
        lines.append(format_quality_table(self.document))
        verdict = loop_verdict(self.document)
        lines += [verdict] if verdict else []
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"metrics: {self.metrics_path}", f"report:  {self.report_path}"]
        return "\n".join(lines)


def select_held_out(batch: pa.Table) -> pa.Table:
    """Ray Data UDF: keep rows with gold that are not gold seed."""
    keep = pc.and_(pc.is_valid(batch["gold"]), pc.invert(pc.fill_null(batch["gold_seed"], False)))
    return batch.filter(keep)


def _system_threshold_stats(batch: pa.Table, n_teachers: int, names: list[str]) -> pa.Table:
    """Ray Data UDF: pickled threshold statistics per system (every teacher, then the
    aggregate) over the batch; gold-seed rows carry their gold."""
    import pickle

    from labelmill.aggregation import threshold_stats
    from labelmill.taxonomy import multi_hot
    from labelmill.vote_matrix import votes_from_teacher_probs

    seed = np.asarray(batch["gold_seed"].fill_null(False).to_numpy(zero_copy_only=False), bool)
    golds = [g if s else None for g, s in zip(batch["gold"].to_pylist(), seed, strict=True)]
    gold, has = multi_hot(golds, names, what="gold label")
    systems = [
        votes_from_teacher_probs(batch["teacher_probs"], n_teachers, len(names))[:, t]
        for t in range(n_teachers)
    ]
    systems.append(probs_matrix(batch["probs"].to_pylist(), len(names)))
    stats = [threshold_stats(p, gold, has) for p in systems]
    return pa.table({"blob": [pickle.dumps(stats)]})


def system_thresholds(
    config: LabelmillConfig, teachers: list[str], names: list[str]
) -> dict[str, ThresholdChoice]:
    """Per-label thresholds of every teacher and the aggregate by one rule (see
    :mod:`labelmill.aggregation.thresholds`), from statistics reduced over all aggregate rows."""
    import pickle

    import ray.data

    fixed = config.aggregate.threshold
    ds = ray.data.read_parquet(aggregate_labels_uri(config)).select_columns(
        ["gold", "gold_seed", "teacher_probs", "probs"]
    )
    blobs = ds.map_batches(
        _system_threshold_stats,
        batch_format="pyarrow",
        fn_kwargs={"n_teachers": len(teachers), "names": names},
        num_cpus=config.ray.light_stage_cpus,
    ).take_all()
    per_batch = [pickle.loads(row["blob"]) for row in blobs]
    totals = [sum(column) for column in zip(*per_batch, strict=True)]
    keys = [*teachers, "aggregate"]
    return {
        key: choose_thresholds(stats, fixed=fixed) for key, stats in zip(keys, totals, strict=True)
    }


def read_held_out(config: LabelmillConfig) -> pa.Table:
    """The held-out gold rows of the aggregate labels, collected to the driver (they are few)."""
    import ray.data

    uri = aggregate_labels_uri(config)
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise InputError(f"no aggregate labels at {uri!r}: run `labelmill aggregate` first")
    ds = ray.data.read_parquet(uri).select_columns(AGGREGATE_COLUMNS)
    held = ds.map_batches(
        select_held_out, batch_format="pyarrow", num_cpus=config.ray.light_stage_cpus
    )
    batches = held.iter_batches(batch_format="pyarrow", batch_size=None)
    return collect_held_out(batches, uri, config.gold.seed_fraction)


def collect_held_out(batches: Iterable[pa.Table], uri: str, seed_fraction: float) -> pa.Table:
    """Concatenate the held-out batches; ``ValueError`` when there is no held-out row at all."""
    tables = [t for t in batches if t.num_rows]
    if not tables:
        raise InputError(
            f"no held-out gold documents in {uri!r}: set corpus.gold_column or gold.uri, and keep "
            f"gold.seed_fraction (now {seed_fraction}) below 1 so some gold is not seed"
        )
    return pa.concat_tables(tables, promote_options="default")


def _teacher_names(table: pa.Table) -> list[str]:
    lists = table["teachers"].to_pylist()
    names = lists[0] or []
    if any(other != names for other in lists):
        raise InputError(f"aggregate rows disagree on their teachers, e.g. {names!r}")
    return list(names)


def _system_name(name: str, taken: set[str]) -> str:
    return f"teacher:{name}" if name in taken else name


def _student_probs(
    config: LabelmillConfig, texts: list[Any], names: list[str]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Student probabilities on the gold texts (NaN rows for unusable text) and its lineage."""
    from labelmill.artifacts import fetch_model
    from labelmill.student.inference import load_student, predict_sorted

    model_dir = student_dir(config)
    local = fetch_model(model_dir)  # a URI: this node's cached copy
    student = load_student(local, config.student.max_length, "cpu")
    if student.names != names:
        raise InputError(
            f"the student in {model_dir!r} predicts labels {student.names!r}, but the config's "
            f"taxonomy is {names!r}"
        )
    checked = [check_text(t) for t in texts]
    good = [i for i, c in enumerate(checked) if c.error is None]
    probs = np.full((len(texts), len(names)), np.nan)
    if good:
        batch = config.predict.batch_size
        probs[good] = predict_sorted(student, [checked[i].text for i in good], batch)
    lineage = {
        "model_dir": model_dir,
        "model_version": student.model_version,
        "lineage": student.metadata["lineage"],
        "metrics": student.metadata["metrics"],
    }
    return probs, {"thresholds": student.thresholds, "lineage": lineage}


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # kept verbatim: lineage is informative, not load-bearing here


def _aggregate_lineage(config: LabelmillConfig, table: pa.Table) -> dict[str, Any]:
    distinct = sorted({v for v in table["lineage"].to_pylist() if v})
    return {
        "labels_uri": aggregate_labels_uri(config),
        "methods": sorted({m for m in table["method"].to_pylist() if m}),
        "summary": read_json(aggregate_file_uri(config, "summary.json")),
        "row_lineage": _parse_json(distinct[0]) if distinct else None,
        "row_lineage_distinct": len(distinct),
    }


def _check_taxonomy(table: pa.Table, taxonomy: Taxonomy) -> None:
    versions = set(table["taxonomy_version"].to_pylist())
    if versions != {taxonomy.version}:
        raise InputError(
            f"aggregate labels have taxonomy versions {sorted(map(str, versions))}, but the "
            f"config's taxonomy is {taxonomy.version!r}: re-run `labelmill aggregate`"
        )


def _score_teachers(
    table: pa.Table,
    thresholds: dict[str, ThresholdChoice],
    y: np.ndarray,
    names: list[str],
    n_bins: int,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Every teacher's metrics entry and threshold sources, by system name."""
    systems: dict[str, Any] = {}
    sources: dict[str, list[str]] = {}
    teacher_cells = table["teacher_probs"].to_pylist()
    for t, teacher in enumerate(_teacher_names(table)):
        cells = [row[t] if row is not None and len(row) > t else None for row in teacher_cells]
        name = _system_name(teacher, {"aggregate", "student", BASELINE_NAME})
        cut = thresholds[teacher]
        systems[name] = score_system(
            "teacher", y, probs_matrix(cells, len(names)), cut.thresholds, names, n_bins
        )
        sources[name] = list(cut.sources)
    return systems, sources


def _evaluate_settings(config: LabelmillConfig, sources: dict[str, list[str]]) -> dict[str, Any]:
    """The evaluate section of the lineage: how every system was cut and scored."""
    return {
        "n_bins": config.evaluate.n_bins,
        "fixed_threshold": config.aggregate.threshold,
        "threshold_rule": "per label: F1 on the gold seed with >= "
        f"{MIN_SEED_POSITIVES} seed positives, else expected F1 (student: its export; "
        f"{BASELINE_NAME}: the rule on its out-of-fold seed probabilities)",
        "threshold_sources": sources,
        "gold_seed_fraction": config.gold.seed_fraction,
        "gold_source": config.gold.uri or f"corpus column {config.corpus.gold_column!r}",
    }


def _score_student(
    config: LabelmillConfig, table: pa.Table, y: np.ndarray, names: list[str]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """(entry, lineage, None) of the exported student, or (None, None, why not)."""
    model_dir = student_dir(config)
    fs, path = fsspec.core.url_to_fs(f"{model_dir.rstrip('/')}/labelmill.json")
    if not fs.isfile(path):
        return None, None, f"no exported student at {model_dir!r}; student not scored"
    probs, extra = _student_probs(config, table["text"].to_pylist(), names)
    cut = extra["thresholds"]
    if config.aggregate.threshold is not None:
        cut = [config.aggregate.threshold] * len(names)
    entry = score_system("student", y, probs, cut, names, config.evaluate.n_bins)
    return entry, extra["lineage"], None


def score_all(
    config: LabelmillConfig,
    table: pa.Table,
    thresholds: dict[str, ThresholdChoice],
    seed: pa.Table | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Score every system on the held-out rows of ``table`` at its per-label ``thresholds``
    (keys: teacher names and "aggregate"); with the gold-seed rows ``seed`` (id, text, gold;
    see :func:`read_seed`) also ``seed-only``. Return (document, notes)."""
    taxonomy = Taxonomy.from_config(config.taxonomy)
    names = list(taxonomy.names)
    _check_taxonomy(table, taxonomy)
    y = gold_matrix(table["gold"].to_pylist(), names)
    n_bins = config.evaluate.n_bins
    systems, sources = _score_teachers(table, thresholds, y, names, n_bins)
    notes: list[str] = []
    baseline_lineage = None
    if seed is not None:
        baseline = score_seed_baseline(config, seed, table["text"].to_pylist(), y, names)
        if baseline.entry is not None:
            systems[BASELINE_NAME] = baseline.entry
            sources[BASELINE_NAME] = baseline.sources
        notes += [baseline.note] if baseline.note else []
        baseline_lineage = baseline.lineage
    aggregate = probs_matrix(table["probs"].to_pylist(), len(names))
    cut = thresholds["aggregate"]
    systems["aggregate"] = score_system("aggregate", y, aggregate, cut.thresholds, names, n_bins)
    sources["aggregate"] = list(cut.sources)
    lineage: dict[str, Any] = {
        "aggregate": _aggregate_lineage(config, table),
        "evaluate": _evaluate_settings(config, sources),
        "student": None,
        "seed_baseline": baseline_lineage,
    }
    if config.evaluate.include_student:
        entry, lineage["student"], note = _score_student(config, table, y, names)
        if entry is not None:
            systems["student"] = entry
        notes += [note] if note else []
    created = datetime.now(UTC).isoformat(timespec="seconds")
    document = add_lift(
        build_metrics_document(names, taxonomy.version, table.num_rows, systems, lineage, created)
    )
    return document, notes


def _write_text(uri: str, text: str) -> None:
    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def run_evaluate_job(config: LabelmillConfig) -> EvaluateJobSummary:
    """Score teachers, aggregate, student and seed-only on held-out gold; write metrics.json
    and report.html."""
    names = list(Taxonomy.from_config(config.taxonomy).names)
    with ray_session(config.ray):
        table = read_held_out(config)
        thresholds = system_thresholds(config, _teacher_names(table), names)
        seed = read_seed(config) if wants_seed_baseline(config) else None
    document, notes = score_all(config, table, thresholds, seed)
    out = eval_dir(config)
    metrics_path, report_path = f"{out}/metrics.json", f"{out}/report.html"
    _write_text(metrics_path, to_json(document))
    _write_text(report_path, render_report(document))
    return EvaluateJobSummary(document, metrics_path, report_path, notes)
