"""The teacher-vote record: one row per (document, teacher), with its full lineage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OLDEST_US = np.iinfo(np.int64).min  # a missing created_at: older than any time


def _string_ranks(strings: Any) -> np.ndarray:
    """(V,) strings -> (V,) int ranks in code-point order (UTF-8 byte order), equal strings
    equal ranks; computed on the distinct strings only (lineages repeat)."""
    encoded = pc.dictionary_encode(strings)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks()
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[encoded.indices.to_numpy(zero_copy_only=False)]


def counting_vote_rows(doc: Any, teacher: Any, created_us: Any, lineage: Any) -> np.ndarray:
    """The de-duplication policy: which vote rows count, one per (document, teacher).

    A document may hold several votes of one teacher (a campaign relabel, a rerun with another
    prompt). The latest ``created_at`` counts (a missing time, ``OLDEST_US``, is the oldest);
    ties go to the greater lineage JSON, then to the earlier row, so the choice never depends
    on the order rows arrive in (up to identical rows).

    doc: (V,) int document key, teacher: (V,) int, created_us: (V,) int64 microseconds since
    the epoch, lineage: (V,) str (a list or an Arrow string array) -> sorted (D,) int64
    indices of the rows that count.

    Example:
        >>> counting_vote_rows([0, 0, 0, 1], [0, 0, 1, 0], [5, 7, 1, 1], ["a", "a", "x", "y"])
        array([1, 2, 3])
    """
    keys = [np.asarray(x) for x in (doc, teacher, created_us)]
    arrow = isinstance(lineage, pa.Array | pa.ChunkedArray)
    lines = lineage if arrow else pa.array(np.asarray(lineage, dtype=str), pa.string())
    if not all(k.ndim == 1 for k in keys) or not pa.types.is_string(lines.type):
        raise ValueError("doc, teacher, created_us must be 1-D and lineage strings")
    n_rows = len(lines)
    if any(len(k) != n_rows for k in keys):
        raise ValueError(
            f"doc, teacher, created_us and lineage must have one entry per vote, got "
            f"{', '.join(str(len(k)) for k in (*keys, lines))}"
        )
    if n_rows == 0:
        return np.zeros(0, dtype=np.int64)
    line_rank = _string_ranks(lines)
    position = -np.arange(n_rows)  # exact ties: the earlier row sorts last, so it is kept
    order = np.lexsort((position, line_rank, keys[2].astype(np.int64), keys[1], keys[0]))
    last = np.ones(n_rows, dtype=bool)  # the last row of each (doc, teacher) run counts
    same = (keys[0][order][1:] == keys[0][order][:-1]) & (keys[1][order][1:] == keys[1][order][:-1])
    last[:-1] = ~same
    return np.sort(order[last]).astype(np.int64)


def to_micros(at: datetime | None) -> int:
    """A vote time -> microseconds since the epoch (naive = UTC); None -> ``OLDEST_US``."""
    if at is None:
        return int(OLDEST_US)
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1)


def votes_that_count(
    teachers: Sequence[int], created_at: Sequence[datetime | None], lineage: Sequence[str]
) -> dict[int, int]:
    """:func:`counting_vote_rows` for the vote rows of one document.

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
    rows = counting_vote_rows(
        np.zeros(len(teachers), dtype=np.int64),
        np.asarray(teachers, dtype=np.int64),
        np.array([to_micros(at) for at in created_at], dtype=np.int64),
        list(lineage),
    )
    return {int(teachers[i]): int(i) for i in rows}
