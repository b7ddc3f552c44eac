"""Engine output rows -> engine results: the one place that reads what an engine answered.

Both processors (ray.data.llm's vLLM engine and its HTTP processor for OpenAI-compatible
endpoints) return rows of their own shape; these functions turn one such row into the engine
result that :mod:`labelmill.votes` makes a vote from. Pure: plain dicts in, plain dicts out.

An engine result: id, label_index, prep_error, truncated, raw_output, prompt_tokens,
output_tokens, finish_reason, engine_error, top_logprobs_json (a JSON object token -> logprob of
the first generated token, or None).
"""

from __future__ import annotations

import json
from typing import Any


def normalize_vllm_row(row: dict[str, Any], set_cap: int) -> dict[str, Any]:
    """A vLLM processor output row -> an engine result (see labelmill.votes)."""
    error = row.get("__inference_error__") or None
    generated = int(row.get("num_generated_tokens") or 0)
    top: dict[str, float] = {}
    for entry in (row.get("logprobs") or [])[:1]:
        for info in entry.values():
            top[str(info.get("decoded_token"))] = float(info.get("logprob"))
    return {
        "id": row["id"],
        "label_index": int(row["label_index"]),
        "prep_error": row.get("prep_error"),
        "truncated": bool(row.get("truncated")),
        "raw_output": row.get("generated_text"),
        "prompt_tokens": int(row.get("num_input_tokens") or 0),
        "output_tokens": generated,
        "finish_reason": "length" if generated >= set_cap else "stop",
        "engine_error": error,
        "top_logprobs_json": json.dumps(top) if top else None,
    }


def normalize_http_row(row: dict[str, Any]) -> dict[str, Any]:
    """An HTTP processor output row -> an engine result (see labelmill.votes)."""
    response = row.get("http_response") or {}
    result: dict[str, Any] = {
        "id": row["id"],
        "label_index": int(row["label_index"]),
        "prep_error": row.get("prep_error"),
        "truncated": bool(row.get("truncated")),
        "raw_output": None,
        "prompt_tokens": 0,
        "output_tokens": 0,
        "finish_reason": None,
        "engine_error": None,
        "top_logprobs_json": None,
    }
    choices = response.get("choices") or []
    if response.get("error") or not choices:
        detail = response.get("error") or f"no choices in response {str(response)[:200]}"
        result["engine_error"] = str(detail)[:500]
        return result
    choice = choices[0]
    usage = response.get("usage") or {}
    result.update(
        raw_output=(choice.get("message") or {}).get("content"),
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )
    content = (choice.get("logprobs") or {}).get("content") or []
    if content:
        top = {t["token"]: float(t["logprob"]) for t in content[0].get("top_logprobs") or []}
        result["top_logprobs_json"] = json.dumps(top)
    return result
