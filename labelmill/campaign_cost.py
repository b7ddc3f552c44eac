"""What relabeling costs before anything is sent: per-document estimates and the dry run.

A document's estimate is an upper bound per teacher: its rendered prompt's tokens (counted by the
teacher's tokenizer, or :func:`labelmill.tokens.estimate_tokens` of the prompt's characters
without one) plus the output cap (``plan.output_tokens`` per request). The dry run prices the
planned documents from a sample of the candidates (mean estimate x planned count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labelmill.requests import TeacherPlan, build_requests, document_token_budget
from labelmill.tokens import estimate_tokens

# Candidates priced by a dry run: enough for a stable mean, cheap to tokenize.
DRY_RUN_SAMPLE = 500


def price(
    tokens_in: np.ndarray, tokens_out: np.ndarray, per_1k_in: float, per_1k_out: float
) -> np.ndarray:
    """Money of (n,) input and output token counts at per-1k prices -> (n,).

    Example:
        >>> price(np.array([1000, 0]), np.array([0, 500]), 0.5, 2.0).tolist()
        [0.5, 1.0]
    """
    return (np.asarray(tokens_in) * per_1k_in + np.asarray(tokens_out) * per_1k_out) / 1000.0


def estimate_documents(
    plan: TeacherPlan, tokenizer: Any | None, ids: Sequence[str], texts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Upper-bound (tokens (n,) int64, cost (n,) float) of sending each document to ``plan``.

    A document whose request fails to prepare (bad text) costs 0: it is never sent.
    """
    budget = document_token_budget(plan, tokenizer)
    tokens_in = np.zeros(len(ids), dtype=np.int64)
    tokens_out = np.zeros(len(ids), dtype=np.int64)
    for i, (doc_id, text) in enumerate(zip(ids, texts, strict=True)):
        for request in build_requests(doc_id, text, plan, tokenizer, budget):
            if request["prep_error"] is not None:
                continue
            if tokenizer is not None:
                tokens_in[i] += len(tokenizer.encode(request["prompt"], add_special_tokens=False))
            else:
                tokens_in[i] += estimate_tokens(sum(len(m["content"]) for m in request["messages"]))
            tokens_out[i] += plan.output_tokens
    teacher = plan.teacher
    cost = price(tokens_in, tokens_out, teacher.price_per_1k_input, teacher.price_per_1k_output)
    return tokens_in + tokens_out, cost


def docs_per_round(fixed: int | None, fraction: float, n_docs: int) -> int:
    """Documents a round selects: ``fixed``, else ``round(fraction * n_docs)``, at least 1.

    Example:
        >>> docs_per_round(None, 0.05, 30), docs_per_round(7, 0.05, 30)
        (2, 7)
        >>> docs_per_round(None, 0.01, 10)
        1
    """
    return fixed or max(1, round(fraction * n_docs))


def dry_run_cost(
    sample_estimates: Mapping[str, tuple[np.ndarray, np.ndarray]],
    n_sample: int,
    planned: int,
) -> dict[str, Any]:
    """Scale a sample's estimates to ``planned`` documents: teacher -> tokens, cost; totals.

    Each teacher's sum over the ``n_sample`` sampled documents is multiplied by
    ``planned / n_sample`` (0 for an empty sample); tokens are truncated to an int.
    """
    if planned < 0 or n_sample < 0:
        raise ValueError(f"planned and n_sample must be >= 0, got {planned} and {n_sample}")
    scale = planned / n_sample if n_sample else 0.0
    teachers = {
        name: {"tokens": int(np.sum(tokens) * scale), "cost": float(np.sum(cost) * scale)}
        for name, (tokens, cost) in sample_estimates.items()
    }
    return {
        "teachers": teachers,
        "tokens": sum(t["tokens"] for t in teachers.values()),
        "cost": sum(t["cost"] for t in teachers.values()),
    }
