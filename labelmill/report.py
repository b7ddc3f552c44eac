"""A self-contained HTML report of a metrics.json document (see :mod:`labelmill.evaluation`).

The report holds a sentence saying whether the loop beat ``seed-only`` and the best teacher, a
summary table (with each system's lift over the best teacher), a per-label F1 grouped bar chart
and table (with the thresholds used), a reliability diagram with one line per system, the
lineage as tables (teachers, then the aggregate / student / seed-only / evaluation) and the
stage timings; the full lineage JSON is kept folded at the end. Plots are drawn with
matplotlib's Agg canvas (no display, no pyplot state) and embedded as base64 PNG, so the file
opens in a browser with nothing beside it. matplotlib is imported inside the functions.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labelmill.baseline import loop_verdict
from labelmill.evaluation import format_number, nan_to_none, quality_rows
from labelmill.report_sections import (
    pipeline_table,
    teacher_table,
    teachers_from_document,
    timings_table,
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child, td.kind { text-align: left; }
th { background: #f3f3f3; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 12px; }
img { max-width: 100%; }
table.pipeline th { text-align: left; }
td { font-variant-numeric: tabular-nums; }
"""


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure bound to an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def png_base64(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _value(x: Any) -> float:
    return np.nan if x is None else float(x)


def plot_per_label_f1(document: Mapping[str, Any]) -> str:
    """Grouped bar chart of per-label F1 (K groups, one bar per system) -> base64 PNG."""
    names = document["taxonomy"]["names"]
    systems = document["systems"]
    figure = new_figure(max(6.0, 0.9 * len(names) + 2.0), 4.0)
    axes = figure.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    width = 0.8 / max(len(systems), 1)
    for i, (system, entry) in enumerate(systems.items()):
        f1 = [_value(entry["per_label"][name]["f1"]) for name in names]
        axes.bar(x + (i - (len(systems) - 1) / 2) * width, np.nan_to_num(f1), width, label=system)
    axes.set_xticks(x)
    axes.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    axes.set_ylim(0.0, 1.05)
    axes.set_ylabel("F1")
    axes.set_title("Per-label F1 on held-out gold")
    axes.legend(fontsize=8, ncols=min(len(systems), 4))
    axes.grid(axis="y", alpha=0.3)
    return png_base64(figure)


def plot_reliability(document: Mapping[str, Any]) -> str:
    """Reliability diagram (mean confidence vs observed frequency per bin) -> base64 PNG."""
    figure = new_figure(5.5, 5.0)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    for system, entry in document["systems"].items():
        curve = entry["reliability"]
        confidence = np.array([_value(c) for c in curve["confidence"]])
        accuracy = np.array([_value(a) for a in curve["accuracy"]])
        filled = ~(np.isnan(confidence) | np.isnan(accuracy))
        ece = format_number(entry["ece"])
        axes.plot(confidence[filled], accuracy[filled], marker="o", label=f"{system} (ECE {ece})")
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("mean predicted probability")
    axes.set_ylabel("observed frequency")
    axes.set_title("Reliability diagram (all document-label cells)")
    axes.legend(fontsize=8, loc="upper left")
    axes.grid(alpha=0.3)
    return png_base64(figure)


def _lift(value: Any) -> str:
    """A lift over the best teacher, signed, coloured: green helped, red hurt."""
    if value is None or not np.isfinite(_value(value)):
        return "<td>-</td>"
    colour = "#1a7f37" if value > 0.005 else ("#cf222e" if value < -0.005 else "#555")
    return f"<td style='color:{colour}'>{float(value):+.3f}</td>"


def _summary_table(document: Mapping[str, Any]) -> str:
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "system", "kind", "micro-F1", "macro-F1", "micro lift", "macro lift", "ECE",
            "mean ROC-AUC", "scored",
        )
    )  # fmt: skip
    rows = []
    for row in quality_rows(document):
        lift = document["systems"][row["system"]].get("lift", {})
        cells = [
            f"<td>{html.escape(row['system'])}</td>",
            f"<td class='kind'>{html.escape(row['kind'])}</td>",
            *(f"<td>{format_number(row[key])}</td>" for key in ("micro_f1", "macro_f1")),
            _lift(lift.get("micro_f1")),
            _lift(lift.get("macro_f1")),
            *(f"<td>{format_number(row[key])}</td>" for key in ("ece", "mean_roc_auc")),
            f"<td>{html.escape(row['scored'])}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='summary'><tr>{header}</tr>{''.join(rows)}</table>"


def _per_label_table(document: Mapping[str, Any]) -> str:
    """Per label and system: F1 (its lift over the best teacher) and the threshold used."""
    systems = list(document["systems"])
    header = "<th>label</th>" + "".join(
        f"<th>{html.escape(s)} F1 (lift)</th><th>threshold</th>" for s in systems
    )
    header += "<th>support</th>"
    rows = []
    for k, name in enumerate(document["taxonomy"]["names"]):
        cells = [f"<td>{html.escape(name)}</td>"]
        for system in systems:
            entry = document["systems"][system]
            lift = entry.get("lift", {}).get("per_label", {}).get(name)
            shown = "" if lift is None or not np.isfinite(_value(lift)) else f" ({lift:+.3f})"
            thresholds = entry.get("thresholds") or []
            cut = format_number(thresholds[k]) if k < len(thresholds) else "-"
            cells.append(f"<td>{format_number(entry['per_label'][name]['f1'])}{shown}</td>")
            cells.append(f"<td>{cut}</td>")
        support = max(
            (document["systems"][s]["per_label"][name]["support"] for s in systems), default=0
        )
        cells.append(f"<td>{support}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='per-label'><tr>{header}</tr>{''.join(rows)}</table>"


def _best_teacher_sentence(document: Mapping[str, Any]) -> str:
    best = document.get("best_teacher")
    if best is None:
        return "No teacher was scored, so there is no lift to show."
    return (
        f"Lift is each system's F1 minus the best teacher's (<code>{html.escape(best)}</code>, "
        "by micro-F1): positive means the loop did better than its best input. Every system is "
        "scored at per-label thresholds chosen by the same rule on the gold seed (or, for labels "
        "with too few seed positives, by expected F1; the student, whose probabilities need "
        "not be calibrated, by the prevalence its training targets expect)."
    )


def _verdict(document: Mapping[str, Any]) -> str:
    """The one sentence saying whether the loop beat seed-only and the best teacher."""
    sentence = loop_verdict(document)
    if sentence is None:
        return ""
    return f"<p class='verdict'><strong>{html.escape(sentence)}</strong></p>\n"


def _student_warning(document: Mapping[str, Any]) -> str:
    """The distill job's warning, when its student was below its aggregate on dev gold."""
    record = (document["lineage"].get("student") or {}).get("lineage") or {}
    if record.get("trustworthy", True):
        return ""
    student, aggregate = record.get("dev_micro_f1"), record.get("aggregate_dev_micro_f1")
    return (
        "<p class='warning'><strong>Warning:</strong> at distill time the student was below "
        f"its own aggregate on the dev split's gold rows (micro-F1 {format_number(student)} vs "
        f"{format_number(aggregate)}): check the figures below before deploying it.</p>\n"
    )


def render_report(
    document: Mapping[str, Any],
    teachers: Sequence[Mapping[str, Any]] | None = None,
    timings: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """The whole HTML page for a metrics.json document (NaN allowed; shown as ``-``).

    ``teachers``: lineage rows with rows / errors / tokens / cost per teacher and prompt (see
    :mod:`labelmill.report_sections`; default: what the document's lineage holds).
    ``timings``: ``{"stage", "seconds"}`` of the run that wrote the report.
    """
    for key in ("taxonomy", "n_documents", "systems", "lineage", "created_at"):
        if key not in document:
            raise ValueError(f"metrics document lacks key {key!r}, got {sorted(document)}")
    if not document["systems"]:
        raise ValueError("metrics document has no systems to report")
    taxonomy = document["taxonomy"]
    lineage = json.dumps(nan_to_none(document["lineage"]), indent=2, sort_keys=True)
    f1_png = plot_per_label_f1(document)
    reliability_png = plot_reliability(document)
    teacher_rows = teachers_from_document(document) if teachers is None else teachers
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>labelmill evaluation</title>
<style>{_STYLE}</style></head><body>
<h1>labelmill evaluation</h1>
<p>{document["n_documents"]} held-out gold documents; taxonomy
<code>{html.escape(str(taxonomy["version"]))}</code> ({len(taxonomy["names"])} labels);
created {html.escape(str(document["created_at"]))}. A system's <em>scored</em> count excludes
documents it abstained on or failed.</p>
<h2>Summary</h2>
{_verdict(document)}{_student_warning(document)}<p>{_best_teacher_sentence(document)}</p>
{_summary_table(document)}
<h2>Per-label F1</h2>
<img src="data:image/png;base64,{f1_png}" alt="per-label F1">
{_per_label_table(document)}
<h2>Calibration</h2>
<img src="data:image/png;base64,{reliability_png}" alt="reliability diagram">
<h2>Lineage</h2>
<p>Every vote is traced to its teacher, model, prompt hash and taxonomy version; rows count
vote rows (errors included: an errored vote abstains), tokens and cost are what they used.</p>
{teacher_table(teacher_rows)}
{pipeline_table(document)}
<h2>Stage timings</h2>
{timings_table(timings)}
<details><summary>Full lineage record (JSON)</summary>
<pre>{html.escape(lineage)}</pre></details>
</body></html>
"""
