"""Teacher prompts for both modes, and the prompt hash that goes into every label's lineage.

Layout (both modes): system instructions, then one user message with the taxonomy (names and
descriptions), the few-shot examples, the document, and only then the question. In `score` mode
the K questions of one document differ only in their last line, so the engine's prefix cache
serves the instructions + taxonomy + document once per document.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from labelmill.config import PromptConfig
from labelmill.taxonomy import Taxonomy

Message = dict[str, str]


def render_taxonomy(taxonomy: Taxonomy) -> str:
    """The label list as shown to a teacher, one ``- name: description`` line per label."""
    return "\n".join(
        f"- {name}: {desc}"
        for name, desc in zip(taxonomy.names, taxonomy.descriptions, strict=True)
    )


def _context(text: str, taxonomy: Taxonomy, prompt: PromptConfig) -> str:
    parts = ["Labels:", render_taxonomy(taxonomy), ""]
    for number, example in enumerate(prompt.few_shot, start=1):
        parts += [
            f"Example {number}:",
            f"Document: {example.text}",
            f"Labels: {json.dumps(example.labels, ensure_ascii=False)}",
            "",
        ]
    parts += ["Document:", text, ""]
    return "\n".join(parts)


def build_set_messages(text: str, taxonomy: Taxonomy, prompt: PromptConfig) -> list[Message]:
    """Chat messages asking for a JSON array of the taxonomy labels that apply to ``text``."""
    return [
        {"role": "system", "content": prompt.instructions},
        {"role": "user", "content": _context(text, taxonomy, prompt) + prompt.set_question},
    ]


def build_score_messages(
    text: str, taxonomy: Taxonomy, prompt: PromptConfig
) -> list[list[Message]]:
    """K chat conversations, one yes/no question per label, sharing everything but the question.

    Returns a list aligned with ``taxonomy.names``.
    """
    context = _context(text, taxonomy, prompt)
    conversations = []
    for name, desc in zip(taxonomy.names, taxonomy.descriptions, strict=True):
        question = prompt.score_question.format(label=name, description=desc)
        conversations.append(
            [
                {"role": "system", "content": prompt.instructions},
                {"role": "user", "content": context + question},
            ]
        )
    return conversations


def label_set_schema(taxonomy: Taxonomy) -> dict[str, Any]:
    """JSON schema of a `set`-mode answer: an array of taxonomy names.

    No ``uniqueItems`` (xgrammar rejects it) and no reliance on ``maxItems`` (some backends
    ignore it): duplicates are removed by the parser and the output token cap bounds length.
    """
    return {"type": "array", "items": {"type": "string", "enum": list(taxonomy.names)}}


def compute_prompt_hash(mode: str, taxonomy: Taxonomy, prompt: PromptConfig) -> str:
    """First 16 hex digits of SHA-256 over everything that shapes a prompt except the document.

    Covers the mode, the prompt config (instructions, few-shot, questions) and the taxonomy
    version; two runs with the same hash asked the same question.
    """
    payload = {
        "mode": mode,
        "prompt": prompt.model_dump(mode="json"),
        "taxonomy_version": taxonomy.version,
        "layout": 1,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def label_set_grammar(taxonomy: Taxonomy) -> str:
    """GBNF grammar of a `set`-mode answer: a JSON array of taxonomy names.

    Stricter than the JSON schema: at most two whitespace characters between tokens. Models
    like to open with a newline (forbidding it makes small ones answer ``[]`` every time), but
    unbounded whitespace lets a weak model loop on blank tokens until the token cap.
    """
    alternatives = " | ".join(json.dumps(json.dumps(name)) for name in taxonomy.names)
    return (
        'root ::= "[" ws ( label ws ( "," ws label ws )* )? "]"\n'
        "ws ::= [ \\n]? [ \\n]?\n"
        f"label ::= {alternatives}\n"
    )
