"""report.html's lineage and stage-timing sections (tables for a person, not a JSON dump).

The teacher table has one row per (teacher, model, mode, prompt hash, taxonomy version) that
produced votes: rows, errors, tokens and cost. ``labelmill run`` (and ``labelmill evaluate``)
pass those figures read from the vote files (:func:`labelmill.status.vote_lineage`); without
them the table falls back to what metrics.json's lineage holds (the teachers behind the
aggregate, and the votes each contributed) and shows ``-`` for the rest.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

TEACHER_COLUMNS = (
    ("teacher", "teacher"), ("model", "model"), ("mode", "mode"),
    ("prompt_hash", "prompt hash"), ("taxonomy_version", "taxonomy version"), ("rows", "rows"),
    ("errors", "errors"), ("prompt_tokens", "tokens in"), ("output_tokens", "tokens out"),
    ("cost", "cost"),
)  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return "<td>-</td>"
    if isinstance(value, float):
        return f"<td>{value:.4f}</td>"
    if isinstance(value, list | tuple):
        value = ", ".join(map(str, value))
    return f"<td>{html.escape(str(value))}</td>"


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


def teachers_from_document(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Teacher lineage rows from metrics.json alone (rows = votes used by the aggregate)."""
    lineage = document.get("lineage") or {}
    entries = _get(lineage, "student", "lineage", "aggregate", "teacher_lineage")
    if not entries:
        row = _get(lineage, "aggregate", "row_lineage")
        entries = row if isinstance(row, list) else []
    votes = _get(lineage, "aggregate", "summary", "teacher_votes") or {}
    version = _get(document, "taxonomy", "version")
    rows = []
    for entry in entries:
        if isinstance(entry, Mapping):
            name = entry.get("teacher")
            rows.append(
                {
                    **{key: entry.get(key) for key in ("teacher", "model", "mode", "prompt_hash")},
                    "taxonomy_version": version,
                    "rows": votes.get(name) if isinstance(votes, Mapping) else None,
                }
            )
    return rows


def teacher_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The teacher lineage table (see the module docstring)."""
    header = "".join(f"<th>{title}</th>" for _, title in TEACHER_COLUMNS)
    body = [
        "<tr>" + "".join(_cell(row.get(key)) for key, _ in TEACHER_COLUMNS) + "</tr>"
        for row in rows
    ]
    if not body:
        body = [f"<tr><td colspan='{len(TEACHER_COLUMNS)}'>no teacher lineage recorded</td></tr>"]
    return f"<table class='lineage'><tr>{header}</tr>{''.join(body)}</table>"


def pipeline_table(document: Mapping[str, Any]) -> str:
    """What the aggregate, the student and the evaluation were made from, one fact a row."""
    lineage = document.get("lineage") or {}
    aggregate = lineage.get("aggregate") or {}
    student = lineage.get("student") or {}
    settings = lineage.get("evaluate") or {}
    facts = [
        ("aggregate method", aggregate.get("method") or aggregate.get("methods")),
        ("aggregate teachers", _get(aggregate, "summary", "teachers") or aggregate.get("teachers")),
        ("aggregate documents", _get(aggregate, "summary", "n_docs")),
        ("aggregate labels", aggregate.get("labels_uri")),
        ("student", student.get("model_dir")),
        ("student version", student.get("model_version")),
        ("student backbone", _get(student, "lineage", "backbone")),
        ("student train / dev rows", _rows(student)),
        ("student epochs run (best; 0: the linear probe)", _epochs(student)),
        ("student / aggregate micro-F1 on dev gold", _dev_gold(student)),
        ("seed-only baseline", _baseline(lineage.get("seed_baseline"))),
        ("gold", settings.get("gold_source")),
        ("gold seed fraction", settings.get("gold_seed_fraction")),
        ("threshold rule", settings.get("threshold_rule")),
    ]
    body = "".join(
        f"<tr><th>{html.escape(name)}</th>{_cell(value)}</tr>"
        for name, value in facts
        if value is not None
    )
    return f"<table class='pipeline'>{body}</table>" if body else ""


def _baseline(baseline: Any) -> str | None:
    """What seed-only was made from, in one line."""
    if not isinstance(baseline, Mapping) or baseline.get("seed_rows") is None:
        return None
    return (
        f"logistic regression per label (C={baseline.get('C')}, chosen on the seed) on "
        f"{baseline.get('backbone')} embeddings of {baseline['seed_rows']} gold-seed rows; "
        f"thresholds on {baseline.get('threshold_folds')}-fold out-of-fold probabilities"
    )


def _rows(student: Mapping[str, Any]) -> str | None:
    train, dev = _get(student, "lineage", "training_rows"), _get(student, "lineage", "dev_rows")
    return None if train is None else f"{train} / {dev}"


def _dev_gold(student: Mapping[str, Any]) -> str | None:
    mine = _get(student, "lineage", "dev_micro_f1")
    theirs = _get(student, "lineage", "aggregate_dev_micro_f1")
    if mine is None or theirs is None:
        return None
    return f"{mine:.3f} / {theirs:.3f}"


def _epochs(student: Mapping[str, Any]) -> str | None:
    run, best = _get(student, "lineage", "epochs_run"), _get(student, "lineage", "best_epoch")
    return None if run is None else f"{run} ({best})"


def timings_table(timings: Sequence[Mapping[str, Any]] | None) -> str:
    """Stage wall times of the run that wrote the report, with the total."""
    if not timings:
        return (
            "<p>No stage timings: they are recorded by <code>labelmill run</code>, which runs "
            "every stage and rewrites this report at the end.</p>"
        )
    rows = [
        f"<tr><td>{html.escape(str(t['stage']))}</td><td>{float(t['seconds']):.1f}</td></tr>"
        for t in timings
    ]
    total = sum(float(t["seconds"]) for t in timings)
    rows.append(f"<tr><th>total</th><th>{total:.1f}</th></tr>")
    header = "<tr><th>stage</th><th>seconds</th></tr>"
    return f"<table class='timings'>{header}{''.join(rows)}</table>"
