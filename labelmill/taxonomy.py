"""The closed label taxonomy and its content-hash version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

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
        return [int(v) for v in multi_hot([labels], self.names)[0][0]]


def multi_hot(
    label_lists: Sequence[Sequence[str] | None],
    names: Sequence[str] | Mapping[str, int],
    what: str = "label",
) -> tuple[np.ndarray, np.ndarray]:
    """Label-name lists -> multi-hot rows and a has-labels mask: the one encoding of label sets.

    label_lists: (N,) lists of names, or None for "no labels known" -> ((N, K) float64 0/1 with a
    zero row where None, (N,) bool False where None). ``names`` is the taxonomy order (or a
    name -> column index). A name outside it raises ``ValueError`` naming ``what``, the row and the
    name: gold is restricted to the taxonomy when it is read and teacher answers when they are
    parsed, so an unknown name here is a broken input, not something to skip.

    Example:
        >>> hot, has = multi_hot([["b"], None, ["a", "b"]], ["a", "b"])
        >>> hot.tolist(), has.tolist()
        ([[0.0, 1.0], [0.0, 0.0], [1.0, 1.0]], [True, False, True])
    """
    index = names if isinstance(names, Mapping) else {n: k for k, n in enumerate(names)}
    out = np.zeros((len(label_lists), len(index)), dtype=np.float64)
    has = np.zeros(len(label_lists), dtype=bool)
    for n, labels in enumerate(label_lists):
        if labels is None:
            continue
        if isinstance(labels, str):
            raise ValueError(f"{what}s[{n}] must be a list of label names, got {labels!r}")
        has[n] = True
        for name in labels:
            k = index.get(name)
            if k is None:
                raise ValueError(f"{what} {name!r} is not in the taxonomy (row {n})")
            out[n, k] = 1.0
    return out, has
