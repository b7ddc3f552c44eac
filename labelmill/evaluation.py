"""Scoring labeling systems (teachers, aggregate, student, baseline) against held-out gold.

Every system is scored on the SAME held-out gold documents (gold minus the gold seed). A system
that has no usable probabilities for a document (a teacher that abstained or errored, an
all-error aggregate row, a student given a bad text) is scored without it: such a row is NaN
in the system's probability matrix, excluded from every metric, and counted in ``coverage``.

``metrics.json`` (written by ``labelmill evaluate`` under ``<output_uri>/eval/``), format 1::

    {
      "format_version": 1,
      "taxonomy": {"names": [str, ...K], "version": str},
      "n_documents": int,                 # held-out gold documents, the same for every system
      "systems": {
        "<name>": {                       # teacher names, "aggregate", "student", "seed-only"
          "kind": "teacher" | "aggregate" | "student" | "baseline",
          "n_scored": int,                # documents this system gave probabilities for
          "coverage": float,              # n_scored / n_documents
          "thresholds": [float, ...K],    # per-label threshold turning probs into labels
          "micro_precision": float, "micro_recall": float, "micro_f1": float,
          "macro_precision": float, "macro_recall": float, "macro_f1": float,
          "ece": float,                   # expected calibration error over all (doc, label) cells
          "mean_roc_auc": float,          # mean over labels with both classes present
          "per_label": {"<label>": {"precision": float, "recall": float, "f1": float,
                                    "support": int, "roc_auc": float}},
          "reliability": {"centers": [float], "accuracy": [float], "confidence": [float],
                          "counts": [int]}   # n_bins equal-width bins on [0, 1]
        }
      },
      "lineage": {...},                   # aggregate summary/lineage, student metadata, settings,
                                          # seed_baseline (backbone, seed rows, model, C)
      "created_at": str                   # ISO 8601, UTC
    }

Any metric that is undefined (no scored rows, a label with one class only, an empty
reliability bin) is ``null``; the file is strict JSON (no NaN). Precision/recall/F1 use
``zero_division=0``; macro averages are over all K labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labelmill._validation import check_binary, check_probs
from labelmill.metrics import (
    expected_calibration_error,
    precision_recall_f1,
    reliability_curve,
    roc_auc_per_label,
)
from labelmill.taxonomy import multi_hot

# Schema identity of metrics.json (not configuration): bump when its layout changes.
FORMAT_VERSION = 1
# "baseline": a yardstick outside the loop (``seed-only``, :mod:`labelmill.baseline`); never
# the best teacher of :func:`add_lift`.
SYSTEM_KINDS = ("teacher", "aggregate", "student", "baseline")
_SCALARS = (
    "micro_precision",
    "micro_recall",
    "micro_f1",
    "macro_precision",
    "macro_recall",
    "macro_f1",
)


def gold_matrix(gold: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
    """Gold label-name lists -> multi-hot targets. gold: N lists -> (N, K) float64 0/1."""
    missing = next((n for n, labels in enumerate(gold) if labels is None), None)
    if missing is not None:
        raise ValueError(f"gold[{missing}] must be a list of label names, got None")
    return multi_hot(gold, names, what="gold label")[0]


def probs_matrix(cells: Sequence[Sequence[float | None] | None], n_labels: int) -> np.ndarray:
    """Per-document probability lists -> matrix with NaN for missing values.

    cells: N entries, each a K-list (inner ``None`` allowed) or ``None`` -> (N, K) float64.
    """
    out = np.full((len(cells), n_labels), np.nan)
    for n, cell in enumerate(cells):
        if cell is None:
            continue
        if len(cell) != n_labels:
            raise ValueError(
                f"probabilities of row {n} have {len(cell)} entries, expected {n_labels}"
            )
        out[n] = [np.nan if value is None else float(value) for value in cell]
    return out


def _thresholds(thresholds: float | Sequence[float] | np.ndarray, n_labels: int) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (n_labels,)).copy()
    if np.any(~((arr >= 0.0) & (arr <= 1.0))):
        raise ValueError(f"thresholds must lie in [0, 1], got {thresholds!r}")
    return arr


def score_system(
    kind: str,
    y_true: Any,
    probs: Any,
    thresholds: float | Sequence[float] | np.ndarray,
    names: Sequence[str],
    n_bins: int = 10,
) -> dict[str, Any]:
    """Score one system's probabilities against gold.

    y_true: (N, K) 0/1, probs: (N, K) in [0, 1] with NaN rows for unscored documents,
    thresholds: scalar or (K,) -> one ``systems`` entry of metrics.json (numbers may be NaN;
    :func:`to_json` turns them into null). A label is predicted when ``prob >= threshold``.
    """
    if kind not in SYSTEM_KINDS:
        raise ValueError(f"kind must be one of {SYSTEM_KINDS}, got {kind!r}")
    y = check_binary(y_true, "y_true")
    p = check_probs(probs, "probs")
    if y.shape != p.shape or y.shape[1] != len(names):
        raise ValueError(
            f"y_true {y.shape} and probs {p.shape} must both have shape (N, {len(names)})"
        )
    cut = _thresholds(thresholds, len(names))
    unscored = np.isnan(p).any(axis=1)
    n_scored = int((~unscored).sum())
    pred = np.where(unscored[:, None], np.nan, (p >= cut).astype(np.float64))
    prf = precision_recall_f1(y, pred)
    auc = roc_auc_per_label(y, p)
    curve = reliability_curve(y, p, n_bins)
    undefined = n_scored == 0
    entry: dict[str, Any] = {
        "kind": kind,
        "n_scored": n_scored,
        "coverage": n_scored / len(y) if len(y) else math.nan,
        "thresholds": cut.tolist(),
    }
    for key in _SCALARS:
        entry[key] = math.nan if undefined else prf[key]
    entry["ece"] = expected_calibration_error(y, p, n_bins)
    entry["mean_roc_auc"] = float(np.nanmean(auc)) if np.any(~np.isnan(auc)) else math.nan
    entry["per_label"] = {
        name: {
            "precision": math.nan if undefined else float(prf["precision"][k]),
            "recall": math.nan if undefined else float(prf["recall"][k]),
            "f1": math.nan if undefined else float(prf["f1"][k]),
            "support": int(prf["support"][k]),
            "roc_auc": float(auc[k]),
        }
        for k, name in enumerate(names)
    }
    entry["reliability"] = {
        "centers": curve.centers.tolist(),
        "accuracy": curve.accuracy.tolist(),
        "confidence": curve.confidence.tolist(),
        "counts": curve.counts.tolist(),
    }
    return entry


def build_metrics_document(
    names: Sequence[str],
    taxonomy_version: str,
    n_documents: int,
    systems: Mapping[str, Mapping[str, Any]],
    lineage: Mapping[str, Any],
    created_at: str,
) -> dict[str, Any]:
    """Assemble the metrics.json document (see the module docstring) from scored systems."""
    if not systems:
        raise ValueError("systems must name at least one scored system, got none")
    for name, entry in systems.items():
        if entry.get("kind") not in SYSTEM_KINDS:
            raise ValueError(f"system {name!r} has kind {entry.get('kind')!r}")
        if set(entry.get("per_label", {})) != set(names):
            raise ValueError(f"system {name!r} per_label keys do not match the taxonomy {names!r}")
    return {
        "format_version": FORMAT_VERSION,
        "taxonomy": {"names": list(names), "version": taxonomy_version},
        "n_documents": int(n_documents),
        "systems": {name: dict(entry) for name, entry in systems.items()},
        "lineage": dict(lineage),
        "created_at": created_at,
    }


def nan_to_none(value: Any) -> Any:
    """Recursively replace NaN/inf floats by ``None`` and numpy scalars/arrays by Python values."""
    if isinstance(value, Mapping):
        return {str(k): nan_to_none(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return nan_to_none(value.tolist())
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(document: Mapping[str, Any]) -> str:
    """The document as strict JSON text (NaN -> null), indented, with a final newline."""
    return json.dumps(nan_to_none(document), indent=2, allow_nan=False) + "\n"


def format_number(value: Any, digits: int = 3) -> str:
    """A metric for display: ``-`` for null/NaN, else fixed-point."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):.{digits}f}"


def quality_rows(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One display row per system: name, kind, micro_f1, macro_f1, ece, mean_roc_auc, scored."""
    n_documents = document["n_documents"]
    return [
        {
            "system": name,
            "kind": entry["kind"],
            "micro_f1": entry["micro_f1"],
            "macro_f1": entry["macro_f1"],
            "ece": entry["ece"],
            "mean_roc_auc": entry["mean_roc_auc"],
            "scored": f"{entry['n_scored']}/{n_documents}",
        }
        for name, entry in document["systems"].items()
    ]


def format_quality_table(document: Mapping[str, Any]) -> str:
    """A fixed-width text table of :func:`quality_rows`, one line per system, with each
    system's micro-F1 lift over the best teacher when :func:`add_lift` has run."""
    width = max([len("system"), *(len(name) for name in document["systems"])]) + 2
    lines = [
        f"{'system':<{width}}{'kind':<11}{'micro-F1':>9}{'macro-F1':>9}{'ECE':>8}"
        f"{'ROC-AUC':>9}{'coverage':>11}{'lift':>8}"
    ]
    for row in quality_rows(document):
        lift = document["systems"][row["system"]].get("lift", {}).get("micro_f1")
        shown = "-" if not _finite(lift) else f"{lift:+.3f}"
        lines.append(
            f"{row['system']:<{width}}{row['kind']:<11}{format_number(row['micro_f1']):>9}"
            f"{format_number(row['macro_f1']):>9}{format_number(row['ece']):>8}"
            f"{format_number(row['mean_roc_auc']):>9}{row['scored']:>11}{shown:>8}"
        )
    best = document.get("best_teacher")
    if best is not None:
        lines.append(f"lift: micro-F1 minus the best teacher's ({best}), all at tuned thresholds")
    return "\n".join(lines)


def add_lift(document: dict[str, Any]) -> dict[str, Any]:
    """Each system's F1 minus the best teacher's (by micro-F1, among the teachers scored on the
    most documents), overall and per label. Only kind ``teacher`` competes for best teacher:
    a ``baseline`` gets a lift like the loop's systems, it is not the yardstick.

    Sets ``document["best_teacher"]`` (None without a scored teacher) and, in every system
    entry, ``lift = {"micro_f1", "macro_f1", "per_label": {label: f1 lift}}`` (null where
    either F1 is undefined). The best teacher's own lift is 0: did the loop help, at a glance.
    """
    systems = document["systems"]
    teachers = [
        (name, entry)
        for name, entry in systems.items()
        if entry["kind"] == "teacher" and _finite(entry.get("micro_f1"))
    ]
    if not teachers:
        document["best_teacher"] = None
        return document
    # Compared on the same documents: a teacher that labeled a third of them is not the
    # yardstick of systems that labeled all (its F1 is over an easier or smaller set).
    widest = max(entry["n_scored"] for _, entry in teachers)
    teachers = [(name, entry) for name, entry in teachers if entry["n_scored"] == widest]
    best_name, best = max(teachers, key=lambda item: item[1]["micro_f1"])
    document["best_teacher"] = best_name
    for entry in systems.values():
        entry["lift"] = {
            key: _difference(entry.get(key), best.get(key)) for key in ("micro_f1", "macro_f1")
        }
        entry["lift"]["per_label"] = {
            label: _difference(values.get("f1"), best["per_label"][label].get("f1"))
            for label, values in entry["per_label"].items()
        }
    return document


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _difference(a: Any, b: Any) -> float:
    return float(a) - float(b) if _finite(a) and _finite(b) else math.nan
