"""Teacher stages on Ray Data: request building, the ray.data.llm processors, vote records.

``teacher_votes(docs, plan)`` maps a dataset of (id, text) to one vote record per document.
Every document leaves as exactly one record: bad text, engine failures and unparseable answers
become records with ``error`` set (vLLM's ``should_continue_on_error`` keeps a failing request
from failing its batch).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from labelmill.engine_results import normalize_http_row, normalize_vllm_row
from labelmill.prompts import label_set_grammar
from labelmill.records import vote_schema
from labelmill.requests import (
    TeacherPlan,
    answer_token_ids,
    build_requests,
    chat_request_body,
    document_token_budget,
    http_auth_headers,
)
from labelmill.votes import score_vote, set_vote


def load_tokenizer(path: str | None) -> Any:
    """A Hugging Face tokenizer from a local path (``None`` stays ``None``)."""
    if path is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


class PrepareRequests:
    """Ray Data UDF (actor): documents -> request rows, with the tokenizer loaded once."""

    def __init__(self, plan: TeacherPlan) -> None:
        self.plan = plan
        self.tokenizer = load_tokenizer(tokenizer_source(plan))
        self.budget = document_token_budget(plan, self.tokenizer)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows: list[dict[str, Any]] = []
        for doc_id, text in zip(batch["id"].to_pylist(), batch["text"].to_pylist(), strict=True):
            for request in build_requests(doc_id, text, self.plan, self.tokenizer, self.budget):
                request["messages_json"] = json.dumps(request.pop("messages"), ensure_ascii=False)
                rows.append(request)
        return pa.Table.from_pylist(rows, schema=_request_schema())


def tokenizer_source(plan: TeacherPlan) -> str | None:
    """The teacher's tokenizer path; the model's own for `vllm`; ``None`` for a bare endpoint."""
    if plan.teacher.tokenizer:
        return plan.teacher.tokenizer
    return plan.model_path if plan.teacher.kind == "vllm" else None


def _request_schema() -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("label_index", pa.int64()),
            ("prompt", pa.string()),
            ("messages_json", pa.string()),
            ("prep_error", pa.string()),
            ("truncated", pa.bool_()),
        ]
    )


# ---------------------------------------------------------------- in-process vLLM engines


def vllm_engine_kwargs(plan: TeacherPlan) -> dict[str, Any]:
    """Engine arguments: prefix caching on, the context length, CPU-friendly defaults on CPU."""
    teacher = plan.teacher
    kwargs: dict[str, Any] = {"enable_prefix_caching": True, "max_model_len": teacher.max_model_len}
    if teacher.mode == "score":
        # Log-probabilities after the yes/no restriction, so P(yes) + P(no) = 1 per request.
        kwargs["logprobs_mode"] = "processed_logprobs"
    if teacher.accelerator == "cpu":
        # On CPU, gpu_memory_utilization reserves that share of RAM; eager mode starts faster.
        kwargs.update(
            distributed_executor_backend="mp", gpu_memory_utilization=0.05, enforce_eager=True
        )
    kwargs.update(teacher.engine_kwargs)
    return kwargs


def vllm_sampling_params(plan: TeacherPlan) -> dict[str, Any]:
    """Sampling parameters: a label-set grammar in `set` mode, 1 yes/no token in `score` mode."""
    teacher = plan.teacher
    if teacher.mode == "set":
        return {
            "max_tokens": teacher.max_output_tokens,
            "temperature": teacher.temperature,
            "structured_outputs": {"grammar": label_set_grammar(plan.taxonomy)},
        }
    yes, no = answer_token_ids(load_tokenizer(tokenizer_source(plan)))
    return {
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": len(yes) + len(no),
        "allowed_token_ids": yes + no,
    }


def build_vllm_processor(plan: TeacherPlan, cpus: float) -> Any:
    """The ray.data.llm vLLM processor for one teacher (prompts are rendered by PrepareRequests)."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    teacher = plan.teacher
    extra: dict[str, Any] = {}
    if teacher.accelerator == "cpu":
        extra["placement_group_config"] = {"bundles": [{"CPU": teacher.cpus_per_replica}]}
        extra["runtime_env"] = {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": str(teacher.cpu_kvcache_gb)}}
    config = vLLMEngineProcessorConfig(
        model_source=plan.model_path,
        engine_kwargs=vllm_engine_kwargs(plan),
        batch_size=teacher.batch_size,
        concurrency=teacher.concurrency,
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
        should_continue_on_error=True,
        **extra,
    )
    sampling = vllm_sampling_params(plan)
    return build_processor(
        config,
        preprocess=lambda row: {"prompt": row["prompt"], "sampling_params": sampling},
        preprocess_map_kwargs={"num_cpus": cpus},
        postprocess_map_kwargs={"num_cpus": cpus},
    )


# ---------------------------------------------------------------- OpenAI-compatible endpoints


def openai_payload(row: dict[str, Any], plan: TeacherPlan) -> dict[str, Any]:
    """Chat-completions request body of one request row."""
    return chat_request_body(plan.teacher, plan.taxonomy, json.loads(row["messages_json"]))


def build_http_processor(plan: TeacherPlan, cpus: float) -> Any:
    """The ray.data.llm HTTP processor for an OpenAI-compatible teacher (retries with backoff)."""
    import os

    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    teacher = plan.teacher
    headers = {"Content-Type": "application/json"}
    headers |= http_auth_headers(teacher.name, teacher.api_key_env, os.environ)
    config = HttpRequestProcessorConfig(
        url=f"{(teacher.base_url or '').rstrip('/')}/chat/completions",
        headers=headers,
        qps=teacher.qps,
        max_retries=teacher.max_retries,
        base_retry_wait_time_in_s=teacher.retry_base_wait_s,
        batch_size=teacher.batch_size,
        concurrency=teacher.concurrency,
    )
    return build_processor(
        config,
        preprocess=lambda row: {"payload": openai_payload(row, plan)},
        postprocess=normalize_http_row,
        preprocess_map_kwargs={"num_cpus": cpus},
        postprocess_map_kwargs={"num_cpus": cpus},
    )


# ---------------------------------------------------------------- results -> vote records


def set_votes_batch(batch: pa.Table, plan: TeacherPlan) -> pa.Table:
    """Engine results (`set` mode, one per document) -> vote records."""
    now = datetime.now(UTC)
    rows = [set_vote(plan, result, now) for result in batch.to_pylist()]
    return pa.Table.from_pylist(rows, schema=vote_schema())


def score_votes_group(group: pa.Table, plan: TeacherPlan) -> pa.Table:
    """The K engine results of one document (`score` mode) -> its vote record."""
    row = score_vote(plan, group.to_pylist(), datetime.now(UTC))
    return pa.Table.from_pylist([row], schema=vote_schema())


def teacher_votes(docs: Any, plan: TeacherPlan, cpus: float) -> Any:
    """Dataset of (id, text) -> dataset of vote records (one per document) for one teacher.

    ``cpus`` is reserved by each light task (prompt building, parsing); engine replicas hold
    their own resources.
    """
    teacher = plan.teacher
    # One block per engine batch: ray.data.llm's failed-row records differ in type from good
    # ones (e.g. time_taken_llm -1 vs a float), and Ray 2.60 cannot concatenate two engine
    # batches whose rows failed differently into one block. Teacher batches are small anyway.
    docs.context.target_max_block_size = 1
    requests = docs.map_batches(
        PrepareRequests,
        fn_constructor_kwargs={"plan": plan},
        batch_format="pyarrow",
        batch_size=64,
        concurrency=1,
        num_cpus=cpus,
    )
    if teacher.kind == "vllm":
        results = build_vllm_processor(plan, cpus)(requests).map(
            normalize_vllm_row, fn_kwargs={"set_cap": teacher.max_output_tokens}, num_cpus=cpus
        )
    else:
        results = build_http_processor(plan, cpus)(requests)
    if teacher.mode == "set":
        return results.map_batches(
            set_votes_batch, fn_kwargs={"plan": plan}, batch_format="pyarrow", num_cpus=cpus
        )
    return results.groupby("id").map_groups(
        score_votes_group, fn_kwargs={"plan": plan}, batch_format="pyarrow", num_cpus=cpus
    )
