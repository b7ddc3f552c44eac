"""The closed label taxonomy and its content-hash version."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from labelmill.config import TaxonomyConfig


@dataclass(frozen=True)
class Taxonomy:
    """An ordered closed label set. ``version`` changes whenever a name or description does."""

    names: tuple[str, ...]
    descriptions: tuple[str, ...]

    @classmethod
    def from_config(cls, config: TaxonomyConfig) -> Taxonomy:
        """Build from the validated taxonomy config (order preserved)."""
        return cls(
            names=tuple(label.name for label in config.labels),
            descriptions=tuple(label.description for label in config.labels),
        )

    @property
    def version(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON of (name, description) pairs."""
        canonical = json.dumps(
            [[n, d] for n, d in zip(self.names, self.descriptions, strict=True)],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of a label; ``ValueError`` naming the label when it is not in the taxonomy."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"label {name!r} is not in the taxonomy") from None

    def to_multi_hot(self, labels: list[str]) -> list[int]:
        """labels -> (K,) 0/1 list aligned with ``names``; unknown labels raise ``ValueError``."""
        hot = [0] * len(self.names)
        for name in labels:
            hot[self.index(name)] = 1
        return hot
