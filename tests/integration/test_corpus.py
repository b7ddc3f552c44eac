"""Corpus readers on a local Ray: Parquet, JSONL, CSV, directories, content ids."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from labelmill.config import CorpusConfig
from labelmill.documents import content_id
from labelmill.pipelines.corpus import read_corpus

ROWS = [
    {"id": "a", "text": "first", "tags": ["x"]},
    {"id": "b", "text": "second", "tags": []},
    {"id": None, "text": "third", "tags": ["y"]},
]


def rows_of(ds) -> list[dict]:
    return sorted(ds.take_all(), key=lambda r: r["id"])


def expected_ids() -> list[str]:
    return sorted(["a", "b", content_id("third")])


def test_parquet_with_gold_and_content_ids(ray_local, tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "c.parquet")
    ds = read_corpus(CorpusConfig(uri=str(tmp_path / "c.parquet"), gold_column="tags"))
    rows = rows_of(ds)
    assert [r["id"] for r in rows] == expected_ids()
    assert {r["text"] for r in rows} == {"first", "second", "third"}
    assert sorted(map(len, (r["gold"] for r in rows))) == [0, 1, 1]


def test_jsonl_directory(ray_local, tmp_path: Path) -> None:
    folder = tmp_path / "jsonl"
    folder.mkdir()
    for i, row in enumerate(ROWS):
        (folder / f"part{i}.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    (folder / "_SUCCESS").write_text("", encoding="utf-8")
    ds = read_corpus(CorpusConfig(uri=str(folder), format="jsonl"))
    assert [r["id"] for r in rows_of(ds)] == expected_ids()


def test_csv_without_id_column_hashes_text(ray_local, tmp_path: Path) -> None:
    table = pa.table({"body": ["first", "second"]})
    pacsv.write_csv(table, tmp_path / "c.csv")
    ds = read_corpus(CorpusConfig(uri=str(tmp_path / "c.csv"), text_column="body"))
    assert sorted(r["id"] for r in ds.take_all()) == sorted(
        [content_id("first"), content_id("second")]
    )


def test_limit(ray_local, tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "c.parquet")
    ds = read_corpus(CorpusConfig(uri=str(tmp_path / "c.parquet"), limit=2))
    assert ds.count() == 2


def test_bad_corpus_settings_fail_clearly(ray_local, tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "c.parquet")
    with pytest.raises(ValueError, match=r"corpus.text_column 'body' is not a column"):
        read_corpus(CorpusConfig(uri=str(tmp_path / "c.parquet"), text_column="body"))
    with pytest.raises(ValueError, match=r"corpus.id_column 'pkg' is not a column"):
        read_corpus(CorpusConfig(uri=str(tmp_path / "c.parquet"), id_column="pkg"))
    with pytest.raises(ValueError, match=r"does not exist"):
        read_corpus(CorpusConfig(uri=str(tmp_path / "missing.parquet")))
