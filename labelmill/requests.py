"""From a document to teacher requests: text checks, truncation to the context, chat prompts.

A :class:`TeacherPlan` holds everything a worker needs about one teacher (picklable, built once
on the driver). :func:`build_requests` turns one document into one request (`set` mode) or K
requests (`score` mode, one per label, sharing the document prefix). A document whose text is
unusable still yields one placeholder request carrying ``prep_error``, so the row is never lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from labelmill.config import LLMTeacherConfig, TeacherBase
from labelmill.documents import check_text, truncate_to_tokens
from labelmill.errors import ConfigError
from labelmill.prompts import (
    build_score_messages,
    build_set_messages,
    compute_prompt_hash,
    label_set_schema,
)
from labelmill.taxonomy import Taxonomy
from labelmill.tokens import estimate_tokens

YES_WORDS = ("yes", "Yes", " yes", " Yes", "YES")
NO_WORDS = ("no", "No", " no", " No", "NO")
PLACEHOLDER_PROMPT = "-"


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer that request building needs."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class TeacherPlan:
    """One teacher, resolved: its config, the taxonomy, and the lineage hashes.

    The prompt properties and request building need an LLM teacher (``vllm`` / ``openai``);
    ``embedding`` and ``rules`` plans only carry their config and taxonomy.
    """

    teacher: TeacherBase
    taxonomy: Taxonomy
    model_path: str

    @property
    def prompt_hash(self) -> str:
        """Hash of everything that shapes this teacher's prompts (see compute_prompt_hash)."""
        return compute_prompt_hash(self.teacher.mode, self.taxonomy, self.teacher.prompt)

    @property
    def output_tokens(self) -> int:
        """Tokens generated per request: 1 in `score` mode, the cap in `set` mode."""
        return 1 if self.teacher.mode == "score" else self.teacher.max_output_tokens


def _conversations(text: str, plan: TeacherPlan) -> list[list[dict[str, str]]]:
    if plan.teacher.mode == "set":
        return [build_set_messages(text, plan.taxonomy, plan.teacher.prompt)]
    return build_score_messages(text, plan.taxonomy, plan.teacher.prompt)


def _render(conversation: list[dict[str, str]], tokenizer: ChatTokenizer) -> str:
    return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)


def document_token_budget(plan: TeacherPlan, tokenizer: ChatTokenizer | None) -> int:
    """How many document tokens fit: context - prompt overhead - generated tokens - margin.

    Without a tokenizer (an `openai` teacher without one) the overhead is estimated at one token
    per 3 characters of the empty-document prompt.
    """
    conversations = _conversations("", plan)
    if tokenizer is None:
        chars = max(len("".join(m["content"] for m in c)) for c in conversations)
        overhead = estimate_tokens(chars) + 32
    else:
        overhead = max(
            len(tokenizer.encode(_render(c, tokenizer), add_special_tokens=False))
            for c in conversations
        )
    budget = plan.teacher.max_model_len - overhead - plan.output_tokens - 8
    if budget < 16:
        raise ValueError(
            f"teacher {plan.teacher.name!r}: max_model_len {plan.teacher.max_model_len} leaves "
            f"{budget} tokens for the document after a {overhead}-token prompt"
        )
    return budget


def build_requests(
    doc_id: str, raw_text: Any, plan: TeacherPlan, tokenizer: ChatTokenizer | None, budget: int
) -> list[dict[str, Any]]:
    """One document -> its request rows.

    Each row: id, label_index (-1 in `set` mode, k in `score` mode), prompt (rendered chat text,
    or ``None`` without a tokenizer), messages (JSON-able chat list), prep_error, truncated.
    """
    checked = check_text(raw_text)
    if checked.error is not None:
        return [
            {
                "id": doc_id,
                "label_index": -1,
                "prompt": PLACEHOLDER_PROMPT,
                "messages": [{"role": "user", "content": PLACEHOLDER_PROMPT}],
                "prep_error": checked.error,
                "truncated": False,
            }
        ]
    if tokenizer is None:
        text = checked.text[: budget * 3]
        truncated = len(text) < len(checked.text)
    else:
        text, _, truncated = truncate_to_tokens(checked.text, tokenizer, budget)
    rows = []
    for index, conversation in enumerate(_conversations(text, plan)):
        rows.append(
            {
                "id": doc_id,
                "label_index": index if plan.teacher.mode == "score" else -1,
                "prompt": None if tokenizer is None else _render(conversation, tokenizer),
                "messages": conversation,
                "prep_error": None,
                "truncated": truncated,
            }
        )
    return rows


def answer_token_ids(tokenizer: ChatTokenizer) -> tuple[list[int], list[int]]:
    """Single-token ids of the yes / no answer words (used to restrict `score` decoding)."""
    yes, no = set(), set()
    for words, bucket in ((YES_WORDS, yes), (NO_WORDS, no)):
        for word in words:
            ids = tokenizer.encode(word, add_special_tokens=False)
            if len(ids) == 1:
                bucket.add(ids[0])
    if not yes or not no:
        raise ValueError(f"tokenizer has no single-token yes/no answers (yes={yes}, no={no})")
    return sorted(yes), sorted(no)


def chat_request_body(
    teacher: LLMTeacherConfig, taxonomy: Taxonomy, messages: list[dict[str, str]]
) -> dict[str, Any]:
    """OpenAI chat-completions body for one conversation of ``teacher``.

    `set` mode asks for a JSON array of taxonomy names (``response_format`` json_schema) under
    the output token cap; `score` mode asks for one token with the top 20 log-probabilities.
    """
    body: dict[str, Any] = {
        "model": teacher.model,
        "messages": messages,
        "temperature": teacher.temperature,
    }
    if teacher.mode == "set":
        body["max_tokens"] = teacher.max_output_tokens
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "labels", "schema": label_set_schema(taxonomy)},
        }
    else:
        body.update(max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20)
    return body


def http_auth_headers(name: str, api_key_env: str | None, environ: Mapping[str, str]) -> dict:
    """The Authorization header of an OpenAI-compatible teacher: the one rule for every caller
    (the label job's HTTP processor and the endpoint's cascade).

    No ``api_key_env`` -> no header. A named variable that is unset or empty is a
    :class:`~labelmill.errors.ConfigError` naming the teacher and the variable: a request sent
    with ``Bearer `` and no key fails on the server for every document, far from its cause.

    Example:
        >>> http_auth_headers("gpt", "KEY", {"KEY": "s3cret"})
        {'Authorization': 'Bearer s3cret'}
        >>> http_auth_headers("gpt", None, {})
        {}
    """
    if not api_key_env:
        return {}
    key = environ.get(api_key_env, "")
    if not key.strip():
        raise ConfigError(
            f"teacher {name!r}: environment variable {api_key_env!r} (api_key_env) is unset or "
            "empty"
        )
    return {"Authorization": f"Bearer {key}"}
