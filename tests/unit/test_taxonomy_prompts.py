"""Taxonomy hashing and prompt building."""

from __future__ import annotations

import json

import pytest

from labelmill.config import LabelConfig, PromptConfig, TaxonomyConfig
from labelmill.prompts import (
    build_score_messages,
    build_set_messages,
    compute_prompt_hash,
    label_set_grammar,
    label_set_schema,
)
from labelmill.taxonomy import Taxonomy


def taxonomy(*pairs: tuple[str, str]) -> Taxonomy:
    return Taxonomy.from_config(
        TaxonomyConfig(labels=[LabelConfig(name=n, description=d) for n, d in pairs])
    )


TAX = taxonomy(("use::editing", "Edits things."), ("works-with::text", "Text."))


def test_version_is_content_hash() -> None:
    same = taxonomy(("use::editing", "Edits things."), ("works-with::text", "Text."))
    assert TAX.version == same.version
    assert len(TAX.version) == 16
    assert (
        taxonomy(("use::editing", "Edits stuff."), ("works-with::text", "Text.")).version
        != TAX.version
    )
    assert (
        taxonomy(("works-with::text", "Text."), ("use::editing", "Edits things.")).version
        != TAX.version
    )


def test_index_and_multi_hot() -> None:
    assert TAX.index("works-with::text") == 1
    assert TAX.to_multi_hot(["works-with::text"]) == [0, 1]
    with pytest.raises(ValueError, match=r"label 'nope' is not in the taxonomy"):
        TAX.index("nope")


def test_set_messages_layout() -> None:
    prompt = PromptConfig(few_shot=[{"text": "vim editor", "labels": ["use::editing"]}])
    messages = build_set_messages("DOC BODY", TAX, prompt)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "- use::editing: Edits things." in user
    assert 'Labels: ["use::editing"]' in user
    assert user.index("Labels:") < user.index("Example 1:") < user.index("DOC BODY")
    assert user.endswith(prompt.set_question)


def test_score_messages_share_prefix() -> None:
    conversations = build_score_messages("DOC BODY", TAX, PromptConfig())
    assert len(conversations) == 2
    first, second = (c[1]["content"] for c in conversations)
    cut = first.index('Does the label "use::editing"')
    assert second[:cut] == first[:cut]
    assert 'Does the label "works-with::text" apply' in second
    assert "DOC BODY" in first[:cut]


def test_schema_and_grammar() -> None:
    schema = label_set_schema(TAX)
    assert schema == {"type": "array", "items": {"type": "string", "enum": list(TAX.names)}}
    assert "uniqueItems" not in json.dumps(schema)
    grammar = label_set_grammar(TAX)
    assert 'root ::= "[" ws ( label ws ( "," ws label ws )* )? "]"' in grammar
    assert "ws ::= [ \\n]? [ \\n]?" in grammar  # bounded whitespace only
    assert '"\\"use::editing\\""' in grammar


def test_prompt_hash_changes_with_what_shapes_the_prompt() -> None:
    base = compute_prompt_hash("set", TAX, PromptConfig())
    assert base == compute_prompt_hash("set", TAX, PromptConfig())
    assert base != compute_prompt_hash("score", TAX, PromptConfig())
    assert base != compute_prompt_hash("set", TAX, PromptConfig(instructions="Other."))
    other_tax = taxonomy(("use::editing", "Edits."), ("works-with::text", "Text."))
    assert base != compute_prompt_hash("set", other_tax, PromptConfig())
