"""Inputs of a job: the corpus of unlabeled documents and the gold labels."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from labelmill.config.base import StrictModel


class CorpusConfig(StrictModel):
    """Where the unlabeled documents are and how to read them."""

    uri: str = Field(
        description="fsspec URI of a file or directory (local path, memory://, s3://, gs://, ...)."
    )
    format: Literal["parquet", "jsonl", "csv"] | None = Field(
        default=None, description="File format; inferred from the URI's extension when omitted."
    )
    id_column: str | None = Field(
        default="id",
        description="Column holding a stable document id; null (or a missing value) means the id "
        "is a content hash of the text.",
    )
    text_column: str = Field(default="text", description="Column holding the document text.")
    gold_column: str | None = Field(
        default=None, description="Optional column with gold labels (a list of label names)."
    )
    limit: int | None = Field(
        default=None, gt=0, description="Read at most this many documents (for trials)."
    )

    @model_validator(mode="after")
    def _format_known(self) -> CorpusConfig:
        if self.format is None and infer_format(self.uri) is None:
            raise ValueError(
                f"cannot infer the corpus format from uri {self.uri!r}: set corpus.format to "
                "parquet, jsonl or csv"
            )
        return self

    @property
    def resolved_format(self) -> str:
        """The configured format, or the one inferred from the URI."""
        return self.format or infer_format(self.uri) or ""


def infer_format(uri: str) -> str | None:
    """Map a URI's extension to a corpus format; ``None`` when it has no known extension."""
    lowered = uri.lower().rstrip("/")
    for suffix, fmt in ((".parquet", "parquet"), (".jsonl", "jsonl"), (".json", "jsonl")):
        if lowered.endswith(suffix):
            return fmt
    if lowered.endswith(".csv"):
        return "csv"
    return None


class GoldConfig(StrictModel):
    """Where gold labels come from and which of them later stages may learn from."""

    uri: str | None = Field(
        default=None,
        description="Optional separate gold file (fsspec URI, parquet/jsonl/csv) with an id "
        "column and a list-of-label-names column; otherwise `corpus.gold_column` is used.",
    )
    id_column: str = Field(default="id", description="Id column of the gold file.")
    labels_column: str = Field(default="labels", description="Labels column of the gold file.")
    seed_fraction: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Share of gold documents (chosen by a hash of the id, so every stage agrees) "
        "that is a *seed*: it may anchor aggregation, calibrate embedding teachers and tune "
        "student thresholds. Seed documents are never evaluated on; the rest of the gold is "
        "held out for `labelmill evaluate`.",
    )
    seed_salt: str = Field(
        default="gold-seed",
        min_length=1,
        description="Salt of the id hash that picks the seed: another salt draws another seed "
        "of the same size (to measure how much a result depends on which documents are seed).",
    )
