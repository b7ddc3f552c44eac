"""`labelmill status OUTPUT_URI`: what a run directory holds, read from its files (no Ray).

Stages done (each stage's marker file, see :mod:`labelmill.layout`), vote rows, errors and
tokens per teacher and prompt (from the vote Parquet itself, so resumed and campaign rows
count), the aggregate and student figures, the evaluation's best teacher and lift, campaign
spend (from its ledger summary), stage timings of the last ``labelmill run``, the log files
and the report paths. :func:`vote_lineage` also feeds report.html's lineage table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from labelmill import jsonio
from labelmill.errors import InputError
from labelmill.layout import (
    aggregate_path,
    campaign_path,
    default_student_dir,
    eval_path,
    logs_dir,
    run_path,
    run_summary_uri,
    votes_dir,
)
from labelmill.part_files import list_parts

_VOTE_KEYS = ["teacher", "model", "mode", "prompt_hash", "taxonomy_version"]
_VOTE_COLUMNS = [*_VOTE_KEYS, "error", "prompt_tokens", "output_tokens"]


def read_json(uri: str) -> Any | None:
    """A JSON file's content, or None when it is absent or unreadable (status never fails on a
    file a running stage is writing)."""
    try:
        return jsonio.read_json(uri)
    except (OSError, ValueError):
        return None


def _exists(uri: str) -> bool:
    fs, path = fsspec.core.url_to_fs(uri)
    return bool(fs.exists(path))


def _files(uri: str, prefix: str = "", suffix: str = "") -> list[str]:
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        return []
    names = [p for p in fs.find(path) if p.rsplit("/", 1)[-1].startswith(prefix)]
    return sorted(p for p in names if p.endswith(suffix))


def vote_stats(output_uri: str) -> list[dict[str, Any]]:
    """One entry per (teacher, model, mode, prompt hash, taxonomy version) in ``votes/``:
    ``rows``, ``errors``, ``prompt_tokens``, ``output_tokens``; sorted by teacher."""
    fs, _ = fsspec.core.url_to_fs(votes_dir(output_uri))
    tables = []
    for file in list_parts(votes_dir(output_uri)):
        with fs.open(file, "rb") as handle:
            tables.append(pq.read_table(handle, columns=_VOTE_COLUMNS))
    if not tables:
        return []
    table = pa.concat_tables(tables, promote_options="default")
    table = table.append_column("has_error", pc.cast(pc.is_valid(table["error"]), pa.int64()))
    grouped = table.group_by(_VOTE_KEYS, use_threads=False).aggregate(
        [
            ([], "count_all"),
            ("has_error", "sum"),
            ("prompt_tokens", "sum"),
            ("output_tokens", "sum"),
        ]
    )
    rows = []
    for entry in grouped.to_pylist():
        rows.append(
            {
                **{key: entry[key] for key in _VOTE_KEYS},
                "rows": int(entry["count_all"]),
                "errors": int(entry["has_error_sum"] or 0),
                "prompt_tokens": int(entry["prompt_tokens_sum"] or 0),
                "output_tokens": int(entry["output_tokens_sum"] or 0),
            }
        )
    return sorted(rows, key=lambda r: (r["teacher"], str(r["prompt_hash"])))


def vote_lineage(
    output_uri: str,
    taxonomy_version: str,
    prices: Mapping[str, tuple[float, float]] | None = None,
) -> list[dict[str, Any]]:
    """The vote groups of one taxonomy version with their ``cost``: tokens x the per-1k
    ``prices`` (input, output) of the teacher, None for a teacher without prices."""
    rows = []
    for row in vote_stats(output_uri):
        if row["taxonomy_version"] != taxonomy_version:
            continue
        price = (prices or {}).get(row["teacher"])
        cost = None
        if price is not None:
            cost = (row["prompt_tokens"] * price[0] + row["output_tokens"] * price[1]) / 1000
        rows.append({**row, "cost": cost})
    return rows


def _stages(output_uri: str) -> dict[str, bool]:
    def at(*parts: str) -> str:
        return run_path(output_uri, *parts)

    return {
        "label": bool(list_parts(votes_dir(output_uri))),
        "aggregate": _exists(at("aggregate", "summary.json")),
        "distill": _exists(at("student", "labelmill.json")),
        "evaluate": _exists(at("eval", "metrics.json")),
        "predict": bool(list_parts(run_path(output_uri, "predictions"))),
        "campaign": _exists(at("campaign", "report.json")),
    }


def run_status(output_uri: str) -> dict[str, Any]:
    """Everything :func:`render_status` shows, JSON-ready. ``ValueError`` when the directory
    does not exist or holds no labelmill output."""
    if not _exists(output_uri):
        raise InputError(f"output_uri {output_uri!r} does not exist")
    stages = _stages(output_uri)
    run = read_json(run_summary_uri(output_uri))
    if not any(stages.values()) and run is None:
        raise InputError(
            f"output_uri {output_uri!r} holds no labelmill output (no votes/, aggregate/, "
            "student/, eval/, campaign/ or run_summary.json)"
        )
    aggregate = read_json(aggregate_path(output_uri, "summary.json")) or {}
    student = read_json(run_path(default_student_dir(output_uri), "labelmill.json")) or {}
    metrics = read_json(eval_path(output_uri, "metrics.json")) or {}
    campaign = read_json(campaign_path(output_uri, "report.json")) or {}
    reports = [
        uri
        for uri in (
            eval_path(output_uri, "report.html"),
            campaign_path(output_uri, "report.html"),
        )
        if _exists(uri)
    ]
    systems = metrics.get("systems", {})
    return {
        "output_uri": output_uri,
        "stages": stages,
        "votes": vote_stats(output_uri),
        "aggregate": {k: aggregate.get(k) for k in ("method", "n_docs", "n_all_error")}
        if aggregate
        else None,
        "student": {
            "backbone": (student.get("lineage") or {}).get("backbone"),
            "training_rows": (student.get("lineage") or {}).get("training_rows"),
            "epochs_run": (student.get("lineage") or {}).get("epochs_run"),
        }
        if student
        else None,
        "evaluate": {
            "n_documents": metrics.get("n_documents"),
            "best_teacher": metrics.get("best_teacher"),
            "micro_f1": {name: s.get("micro_f1") for name, s in systems.items()},
            "lift": {name: (s.get("lift") or {}).get("micro_f1") for name, s in systems.items()},
        }
        if metrics
        else None,
        "campaign_spend": (campaign.get("ledger") or {}).get("total"),
        "timings": [
            {"stage": s.get("stage"), "seconds": s.get("seconds")}
            for s in (run or {}).get("stages", [])
        ],
        "logs": _files(logs_dir(output_uri), suffix=".log"),
        "reports": reports,
    }


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_status(status: Mapping[str, Any]) -> str:
    """The status as a few short tables for a terminal."""
    stages = status["stages"]
    lines = [f"run directory: {status['output_uri']}"]
    lines.append(
        "stages: " + "  ".join(f"{name} {'done' if ok else '-'}" for name, ok in stages.items())
    )
    if status["votes"]:
        width = max(16, *(len(v["teacher"]) + 1 for v in status["votes"]))
        lines.append(
            f"{'teacher':<{width}}{'mode':<10}{'prompt':<18}{'taxonomy':<18}{'rows':>6}"
            f"{'errors':>8}{'tokens in':>11}{'tokens out':>11}"
        )
        for v in status["votes"]:
            lines.append(
                f"{v['teacher']:<{width}}{v['mode']!s:<10}{v['prompt_hash']!s:<18}"
                f"{v['taxonomy_version']!s:<18}{v['rows']:>6}{v['errors']:>8}"
                f"{v['prompt_tokens']:>11}{v['output_tokens']:>11}"
            )
    if status["aggregate"]:
        a = status["aggregate"]
        lines.append(
            f"aggregate: {a['method']}, {a['n_docs']} documents, {a['n_all_error']} without a vote"
        )
    if status["student"]:
        s = status["student"]
        lines.append(
            f"student: {s['backbone']}, {s['training_rows']} training rows, "
            f"{s['epochs_run']} epochs"
        )
    if status["evaluate"]:
        e = status["evaluate"]
        lines.append(
            f"evaluate: {e['n_documents']} held-out gold documents, "
            f"best teacher {e['best_teacher']}"
        )
        for name, f1 in e["micro_f1"].items():
            lift = e["lift"].get(name)
            shown = "-" if lift is None else f"{lift:+.3f}"
            lines.append(f"  {name:<24} micro-F1 {_number(f1)}  lift {shown}")
    spend = status["campaign_spend"]
    if spend:
        lines.append(
            f"campaign spend: {spend.get('spent_tokens')} tokens, "
            f"{_number(spend.get('spent_cost'), 4)} money"
            + (f" of {spend['max_cost']}" if spend.get("max_cost") is not None else "")
        )
    if status["timings"]:
        lines.append(
            "last run: "
            + ", ".join(f"{t['stage']} {_number(t['seconds'], 0)} s" for t in status["timings"])
        )
    lines += [f"report: {uri}" for uri in status["reports"]]
    if status["logs"]:
        lines.append(f"logs: {len(status['logs'])} file(s), latest {status['logs'][-1]}")
    return "\n".join(lines)
