"""The teacher-vote record: one row per (document, teacher), with its full lineage."""

from __future__ import annotations

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


def vote_key(row: dict) -> str:
    """The resume key of a vote row: id, teacher, prompt hash and taxonomy version."""
    return "\x1f".join(str(row[column]) for column in VOTE_KEY_COLUMNS)
