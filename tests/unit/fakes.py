"""A whitespace tokenizer with a trivial chat template, for hand-computed expectations."""

from __future__ import annotations

from typing import Any


class WordTokenizer:
    """One token per whitespace-separated word; ids are positions in a growing vocabulary."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.vocab.setdefault(word, len(self.vocab)) for word in text.split()]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words[i] for i in ids)

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> str:
        return "".join(f"<{m['role']}> {m['content']} " for m in conversation) + "<assistant>"
