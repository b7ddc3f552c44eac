"""The campaign's report: quality against spend, round by round, as JSON and a one-file HTML page.

A round record (one per evaluated state, round 0 = before any relabeling)::

    {"round": int, "strategy": str, "docs_selected": int, "docs_relabeled_total": int,
     "tokens_spent": int, "cost_spent": float, "student_micro_f1": float | None,
     "student_macro_f1": float | None, "aggregate_micro_f1": float | None,
     "aggregate_macro_f1": float | None, "stopped": str | None}

:func:`gain_per_budget` is the figure the campaign benchmark compares across strategies.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from labelmill.report import new_figure, png_base64

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f3f3f3; }
img { max-width: 100%; }
pre { background: #f7f7f7; padding: 1em; font-size: 12px; }
"""

_COLUMNS = [
    ("round", "round"),
    ("docs_selected", "selected"),
    ("docs_relabeled_total", "relabeled (total)"),
    ("tokens_spent", "tokens spent"),
    ("cost_spent", "cost spent"),
    ("student_micro_f1", "student micro-F1"),
    ("student_macro_f1", "student macro-F1"),
    ("aggregate_micro_f1", "aggregate micro-F1"),
    ("aggregate_macro_f1", "aggregate macro-F1"),
    ("stopped", "stopped"),
]


def gain_per_budget(rounds: Sequence[Mapping[str, Any]], metric: str = "student_micro_f1") -> float:
    """(last metric - round-0 metric) / cost spent (tokens when no money was spent).

    rounds: round records in order, round 0 first. Raises ValueError with fewer than two
    evaluated rounds or nothing spent.
    """
    scored = [r for r in rounds if r.get(metric) is not None]
    if len(scored) < 2 or scored[0].get("round") != 0:
        raise ValueError(f"need round 0 and a later round with {metric!r}, got {len(scored)}")
    spent = float(scored[-1]["cost_spent"]) or float(scored[-1]["tokens_spent"])
    if spent <= 0:
        raise ValueError(f"nothing was spent (cost and tokens are 0) in {scored[-1]!r}")
    return (float(scored[-1][metric]) - float(scored[0][metric])) / spent


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def plot_quality_vs_spend(rounds: Sequence[Mapping[str, Any]]) -> str:
    """F1 of the student and the aggregate against cumulative spend -> base64 PNG."""
    figure = new_figure(6.5, 4.0)
    axes = figure.add_subplot(1, 1, 1)
    use_cost = any(float(r.get("cost_spent") or 0) > 0 for r in rounds)
    key = "cost_spent" if use_cost else "tokens_spent"
    x = [float(r.get(key) or 0) for r in rounds]
    for metric, label, style in (
        ("student_micro_f1", "student micro-F1", "o-"),
        ("student_macro_f1", "student macro-F1", "s--"),
        ("aggregate_micro_f1", "aggregate micro-F1", "^-"),
    ):
        pairs = [
            (xi, r[metric]) for xi, r in zip(x, rounds, strict=True) if r.get(metric) is not None
        ]
        if pairs:
            axes.plot([p[0] for p in pairs], [p[1] for p in pairs], style, label=label)
    axes.set_xlabel("money spent" if use_cost else "tokens spent")
    axes.set_ylabel("F1 on held-out gold")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    return png_base64(figure)


def render_campaign_report(
    rounds: Sequence[Mapping[str, Any]], ledger: Mapping[str, Any], title: str
) -> str:
    """A self-contained HTML page: the round table, the quality-vs-spend plot, the ledger."""
    head = "".join(f"<th>{html.escape(name)}</th>" for _, name in _COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(key))}</td>" for key, _ in _COLUMNS) + "</tr>"
        for r in rounds
    )
    plot = plot_quality_vs_spend(rounds) if rounds else ""
    image = f'<img alt="quality vs spend" src="data:image/png;base64,{plot}">' if plot else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<table><tr>{head}</tr>{body}</table>{image}"
        f"<h2>Ledger</h2><pre>{html.escape(json.dumps(ledger, indent=2))}</pre>"
        "</body></html>\n"
    )
