"""Scoring teachers, the aggregate and the student against held-out gold (``labelmill evaluate``).

Reads the aggregate labels (one row per document, with every teacher's probabilities beside
the aggregate's), keeps the documents with gold that are not in the gold seed, scores every
system on exactly those documents with :mod:`labelmill.evaluation`, and writes
``<output_uri>/eval/metrics.json`` (schema in :mod:`labelmill.evaluation`) and ``report.html``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelmill.config import LabelmillConfig
from labelmill.documents import check_text
from labelmill.evaluation import (
    build_metrics_document,
    format_quality_table,
    gold_matrix,
    probs_matrix,
    score_system,
    to_json,
)
from labelmill.layout import aggregate_file_uri, aggregate_labels_uri, eval_dir, student_dir
from labelmill.report import render_report
from labelmill.taxonomy import Taxonomy
from pipelines.runtime import ray_session

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
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"metrics: {self.metrics_path}", f"report:  {self.report_path}"]
        return "\n".join(lines)


def select_held_out(batch: pa.Table) -> pa.Table:
    """Ray Data UDF: keep rows with gold that are not gold seed."""
    keep = pc.and_(pc.is_valid(batch["gold"]), pc.invert(pc.fill_null(batch["gold_seed"], False)))
    return batch.filter(keep)


def read_held_out(config: LabelmillConfig) -> pa.Table:
    """The held-out gold rows of the aggregate labels, collected to the driver (they are few)."""
    import ray.data

    uri = aggregate_labels_uri(config)
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise ValueError(f"no aggregate labels at {uri!r}: run `labelmill aggregate` first")
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
        raise ValueError(
            f"no held-out gold documents in {uri!r}: set corpus.gold_column or gold.uri, and keep "
            f"gold.seed_fraction (now {seed_fraction}) below 1 so some gold is not seed"
        )
    return pa.concat_tables(tables, promote_options="default")


def _teacher_names(table: pa.Table) -> list[str]:
    lists = table["teachers"].to_pylist()
    names = lists[0] or []
    if any(other != names for other in lists):
        raise ValueError(f"aggregate rows disagree on their teachers, e.g. {names!r}")
    return list(names)


def _system_name(name: str, taken: set[str]) -> str:
    return f"teacher:{name}" if name in taken else name


def _student_probs(
    config: LabelmillConfig, texts: list[Any], names: list[str]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Student probabilities on the gold texts (NaN rows for unusable text) and its lineage."""
    from labelmill.student.inference import load_student, predict_sorted

    model_dir = student_dir(config)
    student = load_student(model_dir, config.student.max_length, "cpu")
    if student.names != names:
        raise ValueError(
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


def _read_json(uri: str) -> Any:
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as handle:
        return json.load(handle)


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
        "summary": _read_json(aggregate_file_uri(config, "summary.json")),
        "row_lineage": _parse_json(distinct[0]) if distinct else None,
        "row_lineage_distinct": len(distinct),
    }


def score_all(config: LabelmillConfig, table: pa.Table) -> tuple[dict[str, Any], list[str]]:
    """Score every system on the held-out rows of ``table``; return (document, notes)."""
    taxonomy = Taxonomy.from_config(config.taxonomy)
    names = list(taxonomy.names)
    versions = set(table["taxonomy_version"].to_pylist())
    if versions != {taxonomy.version}:
        raise ValueError(
            f"aggregate labels have taxonomy versions {sorted(map(str, versions))}, but the "
            f"config's taxonomy is {taxonomy.version!r}: re-run `labelmill aggregate`"
        )
    y = gold_matrix(table["gold"].to_pylist(), names)
    n_bins = config.evaluate.n_bins
    cut = config.aggregate.threshold
    systems: dict[str, Any] = {}
    teacher_cells = table["teacher_probs"].to_pylist()
    for t, teacher in enumerate(_teacher_names(table)):
        cells = [row[t] if row is not None and len(row) > t else None for row in teacher_cells]
        name = _system_name(teacher, {"aggregate", "student"})
        systems[name] = score_system(
            "teacher", y, probs_matrix(cells, len(names)), cut, names, n_bins
        )
    aggregate = probs_matrix(table["probs"].to_pylist(), len(names))
    systems["aggregate"] = score_system("aggregate", y, aggregate, cut, names, n_bins)
    lineage: dict[str, Any] = {
        "aggregate": _aggregate_lineage(config, table),
        "evaluate": {
            "n_bins": n_bins,
            "teacher_and_aggregate_threshold": cut,
            "gold_seed_fraction": config.gold.seed_fraction,
            "gold_source": config.gold.uri or f"corpus column {config.corpus.gold_column!r}",
        },
        "student": None,
    }
    notes: list[str] = []
    if config.evaluate.include_student:
        model_dir = student_dir(config)
        if (Path(model_dir) / "labelmill.json").is_file():
            probs, extra = _student_probs(config, table["text"].to_pylist(), names)
            systems["student"] = score_system(
                "student", y, probs, extra["thresholds"], names, n_bins
            )
            lineage["student"] = extra["lineage"]
        else:
            notes.append(f"no exported student at {model_dir!r}; student not scored")
    created = datetime.now(UTC).isoformat(timespec="seconds")
    document = build_metrics_document(
        names, taxonomy.version, table.num_rows, systems, lineage, created
    )
    return document, notes


def _write_text(uri: str, text: str) -> None:
    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def run_evaluate_job(config: LabelmillConfig) -> EvaluateJobSummary:
    """Score teachers, aggregate and student on held-out gold; write metrics.json, report.html."""
    with ray_session(config.ray):
        table = read_held_out(config)
    document, notes = score_all(config, table)
    out = eval_dir(config)
    metrics_path, report_path = f"{out}/metrics.json", f"{out}/report.html"
    _write_text(metrics_path, to_json(document))
    _write_text(report_path, render_report(document))
    return EvaluateJobSummary(document, metrics_path, report_path, notes)
