"""Document ids and text checks: every input row leaves with usable text or with an error."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol


def content_id(text: str | bytes | None) -> str:
    """Stable id of a document without one: ``sha256:`` + the first 32 hex digits of its bytes."""
    if text is None:
        data = b""
    elif isinstance(text, bytes):
        data = text
    else:
        data = text.encode("utf-8", errors="surrogatepass")
    return "sha256:" + hashlib.sha256(data).hexdigest()[:32]


@dataclass(frozen=True)
class CheckedText:
    """The text to send to a teacher (empty when unusable) and why it is unusable, if it is.

    ``kind`` names the class of problem for callers that map it to their own codes (the
    endpoint's 422 codes): ``missing``, ``not_a_string``, ``invalid_unicode``, ``empty``.
    """

    text: str
    error: str | None
    kind: str | None = None


def check_text(value: Any) -> CheckedText:
    """Validate one raw text cell: the one "is this usable text" rule of labelmill.

    Errors: missing (null) text, text that is not a string, bytes that are not valid UTF-8,
    strings carrying lone surrogates (undecodable bytes smuggled through), empty or
    whitespace-only text.
    """
    if value is None:
        return CheckedText("", "missing text", "missing")
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as error:
            return CheckedText("", f"invalid UTF-8 at byte {error.start}", "invalid_unicode")
    if not isinstance(value, str):
        return CheckedText("", f"text is a {type(value).__name__}, not a string", "not_a_string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return CheckedText(
            "",
            f"invalid UTF-8 (lone surrogate U+{ord(value[error.start]):04X} at character "
            f"{error.start})",
            "invalid_unicode",
        )
    if not value.strip():
        return CheckedText("", "empty text", "empty")
    return CheckedText(value, None)


def is_usable_text(value: Any) -> bool:
    """Whether :func:`check_text` accepts ``value`` (a non-empty, valid Unicode string)."""
    return check_text(value).error is None


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer that truncation needs."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


def truncate_to_tokens(text: str, tokenizer: Tokenizer, max_tokens: int) -> tuple[str, int, bool]:
    """Cut ``text`` to at most ``max_tokens`` tokens.

    Returns (text, original token count, whether it was cut). ``max_tokens`` must be positive.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text, len(ids), False
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True), len(ids), True
