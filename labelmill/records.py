"""The teacher-vote record: one row per (document, teacher), with its full lineage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa

VOTE_KEY_COLUMNS = ("id", "teacher", "prompt_hash", "taxonomy_version")


def vote_schema() -> pa.Schema:
    """Arrow schema of the teacher-vote Parquet files written under ``<output>/votes/``."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("teacher", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("mode", pa.string(), nullable=False),
            pa.field("labels", pa.list_(pa.string())),
            pa.field("probs", pa.list_(pa.float64())),
            pa.field("raw_output", pa.string()),
            pa.field("error", pa.string()),
            pa.field("truncated", pa.bool_()),
            pa.field("prompt_tokens", pa.int64()),
            pa.field("output_tokens", pa.int64()),
            pa.field("prompt_hash", pa.string(), nullable=False),
            pa.field("taxonomy_version", pa.string(), nullable=False),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


_OLDEST = datetime.min.replace(tzinfo=UTC)


def votes_that_count(
    teachers: Sequence[int], created_at: Sequence[datetime | None], lineage: Sequence[str]
) -> dict[int, int]:
    """The de-duplication policy: which of a document's vote rows counts for each teacher.

    A document may hold several votes of one teacher (a campaign relabel, a rerun with another
    prompt). The latest ``created_at`` counts (a missing time is the oldest); ties go to the
    greater lineage JSON, so the choice never depends on the order rows arrive in.

    teachers, created_at, lineage: (V,) per vote row -> {teacher: index of the row that counts}.

    Example:
        >>> t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
        >>> votes_that_count([0, 0, 1, 1], [t0, t1, None, None], ["a", "a", "x", "y"])
        {0: 1, 1: 3}
    """
    if not len(teachers) == len(created_at) == len(lineage):
        raise ValueError(
            f"teachers, created_at and lineage must have one entry per vote, got "
            f"{len(teachers)}, {len(created_at)}, {len(lineage)}"
        )
    best: dict[int, tuple[datetime, str, int]] = {}
    for i, (teacher, at, line) in enumerate(zip(teachers, created_at, lineage, strict=True)):
        key = (at or _OLDEST, line, i)
        kept = best.get(teacher)
        if kept is None or key[:2] > kept[:2]:
            best[teacher] = key
    return {teacher: key[2] for teacher, key in best.items()}
