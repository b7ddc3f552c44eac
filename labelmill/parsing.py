"""Turning raw teacher outputs into labels: a JSON label set, or yes/no log-probabilities.

Parsers never raise on model output: they return the labels they could read and an error
message (or ``None``), so a bad answer becomes a row with ``error`` set, never a lost row.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labelmill.taxonomy import Taxonomy

_QUOTED = re.compile(r'"([^"\\]*)"')


@dataclass(frozen=True)
class ParsedLabels:
    """Labels in taxonomy order (deduplicated) and the parse error, if any."""

    labels: list[str]
    error: str | None


def _strip_fences(raw: str) -> str:
    text = raw.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else text[3:]
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()


def parse_label_set(
    raw: str | None, taxonomy: Taxonomy, finish_reason: str | None = None
) -> ParsedLabels:
    """Parse a `set`-mode answer: a JSON array of taxonomy label names.

    Valid names are kept in taxonomy order without duplicates; an empty array is a valid empty
    set. Errors: empty output, output cut at the token cap (``finish_reason == "length"``), text
    that is not JSON, JSON that is not an array of strings, names not in the taxonomy. Beside
    the last error and a cut-short array, the complete known names are still returned.
    """
    if raw is None or not raw.strip():
        return ParsedLabels([], "empty model output")
    text = _strip_fences(raw)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        cut = " (output hit the token limit)" if finish_reason == "length" else ""
        # Keep the complete names written before the cut (small models repeat labels until the
        # token cap); the row still carries the error.
        salvaged = (
            set(_QUOTED.findall(text)) & set(taxonomy.names) if text.startswith("[") else set()
        )
        labels = [name for name in taxonomy.names if name in salvaged]
        return ParsedLabels(labels, f"unparseable model output{cut}: {error.msg} at {error.pos}")
    if not isinstance(value, list):
        return ParsedLabels([], f"model output is a JSON {type(value).__name__}, not an array")
    if not all(isinstance(item, str) for item in value):
        return ParsedLabels([], "model output array holds non-string items")
    known = set(taxonomy.names)
    unknown = sorted({item for item in value if item not in known})
    chosen = set(value) & known
    labels = [name for name in taxonomy.names if name in chosen]
    if unknown:
        return ParsedLabels(labels, f"labels not in the taxonomy: {unknown}")
    return ParsedLabels(labels, None)


def yes_probability(
    top_logprobs: Mapping[str, float], yes_tokens: Sequence[str], no_tokens: Sequence[str]
) -> float | None:
    """P(yes) from the first answer token's top log-probabilities, renormalised over yes/no.

    ``top_logprobs`` maps decoded token strings to log-probabilities. Every token whose stripped,
    lower-cased form is in ``yes_tokens`` / ``no_tokens`` counts. Returns ``None`` when neither
    a yes nor a no token is among them (the caller records that as an error).
    """
    yes_set = {t.strip().lower() for t in yes_tokens}
    no_set = {t.strip().lower() for t in no_tokens}
    p_yes = p_no = 0.0
    for token, logprob in top_logprobs.items():
        if logprob is None or math.isnan(logprob):
            continue
        key = token.strip().lower()
        if key in yes_set:
            p_yes += math.exp(logprob)
        elif key in no_set:
            p_no += math.exp(logprob)
    total = p_yes + p_no
    if total <= 0.0:
        return None
    return p_yes / total
