"""Engine output rows (vLLM processor, OpenAI-compatible HTTP processor) -> engine results."""

from __future__ import annotations

import json

from labelmill.engine_results import normalize_http_row, normalize_vllm_row

BASE = {"id": "d1", "label_index": -1, "prep_error": None, "truncated": True}


def test_vllm_row_with_logprobs_and_cap() -> None:
    row = {
        **BASE,
        "generated_text": '{"labels": ["a"]}',
        "num_input_tokens": 12,
        "num_generated_tokens": 8,
        "logprobs": [
            {
                "5": {"decoded_token": "yes", "logprob": -0.1},
                "7": {"decoded_token": "no", "logprob": -2.5},
            },
            {"9": {"decoded_token": "ignored", "logprob": -9.0}},  # only the first token counts
        ],
    }
    result = normalize_vllm_row(row, set_cap=8)
    assert result["finish_reason"] == "length"  # generated == the cap: it was cut
    assert (result["prompt_tokens"], result["output_tokens"]) == (12, 8)
    assert result["truncated"] is True and result["engine_error"] is None
    assert json.loads(result["top_logprobs_json"]) == {"yes": -0.1, "no": -2.5}
    assert normalize_vllm_row({**row, "num_generated_tokens": 3}, 8)["finish_reason"] == "stop"


def test_vllm_row_with_an_inference_error() -> None:
    result = normalize_vllm_row({**BASE, "__inference_error__": "engine died"}, set_cap=8)
    assert result["engine_error"] == "engine died"
    assert (result["output_tokens"], result["top_logprobs_json"], result["raw_output"]) == (
        0,
        None,
        None,
    )


def test_http_row_ok_with_usage_and_top_logprobs() -> None:
    response = {
        "choices": [
            {
                "message": {"content": "yes"},
                "finish_reason": "stop",
                "logprobs": {"content": [{"top_logprobs": [{"token": "yes", "logprob": -0.2}]}]},
            }
        ],
        "usage": {"prompt_tokens": 30, "completion_tokens": 1},
    }
    result = normalize_http_row({**BASE, "label_index": 2, "http_response": response})
    assert result["label_index"] == 2 and result["raw_output"] == "yes"
    assert (result["prompt_tokens"], result["output_tokens"]) == (30, 1)
    assert result["finish_reason"] == "stop" and result["engine_error"] is None
    assert json.loads(result["top_logprobs_json"]) == {"yes": -0.2}


def test_http_row_errors_keep_the_row() -> None:
    failed = normalize_http_row({**BASE, "http_response": {"error": "429 too many requests"}})
    assert failed["engine_error"] == "429 too many requests" and failed["raw_output"] is None
    empty = normalize_http_row({**BASE, "http_response": {"choices": []}})
    assert empty["engine_error"].startswith("no choices in response")
    missing = normalize_http_row({**BASE, "http_response": None})
    assert missing["engine_error"].startswith("no choices in response {}")
    long = normalize_http_row({**BASE, "http_response": {"error": "x" * 2000}})
    assert len(long["engine_error"]) == 500
