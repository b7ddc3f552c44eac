"""From engine results to teacher-vote records (see :mod:`labelmill.records` for the schema).

An engine result is one request's outcome, normalised the same way for in-process vLLM and HTTP
teachers: id, label_index, prep_error, truncated, raw_output, prompt_tokens, output_tokens,
finish_reason, engine_error, top_logprobs_json (a JSON object token -> logprob, `score` only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from labelmill.parsing import parse_label_set, yes_probability
from labelmill.requests import NO_WORDS, YES_WORDS, TeacherPlan


def _lineage(plan: TeacherPlan, doc_id: str, created_at: datetime) -> dict[str, Any]:
    return {
        "id": doc_id,
        "teacher": plan.teacher.name,
        "model": plan.teacher.model,
        "mode": plan.teacher.mode,
        "prompt_hash": plan.prompt_hash,
        "taxonomy_version": plan.taxonomy.version,
        "created_at": created_at,
    }


def set_vote(plan: TeacherPlan, result: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """One `set`-mode result -> its vote record (labels parsed, probs null)."""
    row = _lineage(plan, result["id"], created_at)
    row.update(
        labels=[],
        probs=None,
        raw_output=result.get("raw_output"),
        error=None,
        truncated=bool(result.get("truncated")),
        prompt_tokens=int(result.get("prompt_tokens") or 0),
        output_tokens=int(result.get("output_tokens") or 0),
    )
    if result.get("prep_error"):
        row.update(error=result["prep_error"], raw_output=None, prompt_tokens=0, output_tokens=0)
    elif result.get("engine_error"):
        row.update(error=f"engine error: {result['engine_error']}")
    else:
        parsed = parse_label_set(
            result.get("raw_output"), plan.taxonomy, result.get("finish_reason")
        )
        row.update(labels=parsed.labels, error=parsed.error)
    return row


def score_vote(
    plan: TeacherPlan, results: Sequence[dict[str, Any]], created_at: datetime
) -> dict[str, Any]:
    """The K `score`-mode results of one document -> its vote record.

    probs[k] = P(yes) for label k renormalised over yes/no tokens (null where it could not be
    read); labels are those with P >= 0.5. Any failed label sets ``error`` (the others are kept).
    """
    if not results:
        raise ValueError("score_vote needs at least one result")
    doc_id = results[0]["id"]
    row = _lineage(plan, doc_id, created_at)
    k = len(plan.taxonomy)
    prep = next((r["prep_error"] for r in results if r.get("prep_error")), None)
    row.update(
        truncated=any(bool(r.get("truncated")) for r in results),
        prompt_tokens=sum(int(r.get("prompt_tokens") or 0) for r in results),
        output_tokens=sum(int(r.get("output_tokens") or 0) for r in results),
    )
    if prep is not None:
        row.update(labels=[], probs=None, raw_output=None, error=prep, prompt_tokens=0)
        row["output_tokens"] = 0
        return row
    probs: list[float | None] = [None] * k
    answers: dict[str, str] = {}
    problems: list[str] = []
    for result in results:
        index = int(result["label_index"])
        if not 0 <= index < k:
            raise ValueError(f"label_index {index} out of range for {k} labels")
        name = plan.taxonomy.names[index]
        answers[name] = result.get("raw_output") or ""
        if result.get("engine_error"):
            problems.append(f"{name}: engine error: {result['engine_error']}")
            continue
        top = json.loads(result.get("top_logprobs_json") or "{}")
        p_yes = yes_probability(top, YES_WORDS, NO_WORDS)
        if p_yes is None:
            problems.append(f"{name}: no yes/no token in the answer")
        probs[index] = p_yes
    missing = [
        plan.taxonomy.names[i]
        for i in range(k)
        if i not in {int(r["label_index"]) for r in results}
    ]
    if missing:
        problems.append(f"no result for labels {missing}")
    row.update(
        probs=probs,
        labels=[
            n for n, p in zip(plan.taxonomy.names, probs, strict=True) if p is not None and p >= 0.5
        ],
        raw_output=json.dumps(answers, ensure_ascii=False),
        error="; ".join(problems) if problems else None,
    )
    return row
