"""The aggregate's vectorized row assembly (pipelines/assemble.py UDFs on plain Arrow, no Ray)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from labelmill.pipelines.assemble import (
    assemble_block,
    doc_rows,
    gold_rows,
    lineage_json,
    vote_rows,
)
from labelmill.records import vote_schema

NAMES = ["a", "b", "c"]
T0, T1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)


def _votes(rows: list[dict[str, Any]]) -> pa.Table:
    base = {"teacher": "t", "model": "m", "mode": "set", "prompt_hash": "p"}
    base |= {"taxonomy_version": "v", "created_at": T0}
    return pa.Table.from_pylist([{**base, **r} for r in rows], schema=vote_schema())


def _lineage(**fields: str) -> dict[str, str]:
    return {"teacher": "t", "model": "m", "mode": "set", "prompt_hash": "p", **fields}


def test_vote_rows_cells_lineage_and_version() -> None:
    table = _votes(
        [
            {"id": "x", "labels": ["a", "c"]},
            {"id": "y", "labels": ["zzz"]},  # unreadable: an abstention
            {"id": "z", "labels": ["a"], "taxonomy_version": "old"},  # dropped
            {"id": "w", "probs": [0.5, None, 0.25], "model": "m2"},
            {"id": "u", "labels": ["b"], "error": "cut"},  # errored: an abstention
        ]
    )
    rows = vote_rows(table, 1, NAMES, "v").to_pylist()
    assert [r["id"] for r in rows] == ["x", "y", "w", "u"]
    assert [r["vote"] for r in rows] == [[1.0, 0.0, 1.0], None, [0.5, None, 0.25], None]
    assert {r["kind"] for r in rows} == {2} and {r["teacher"] for r in rows} == {1}
    assert [json.loads(r["lineage"]) for r in rows] == [
        _lineage(),
        _lineage(),
        _lineage(model="m2"),
        _lineage(),
    ]
    assert rows[0]["created_at"] == T0 and rows[0]["text"] is None
    assert vote_rows(table, 0, NAMES, "nope").num_rows == 0


def test_lineage_json_once_per_combination_in_row_order() -> None:
    table = _votes([{"id": str(i), "prompt_hash": h} for i, h in enumerate("pqpqq")])
    got = lineage_json(table).to_pylist()
    assert got == [json.dumps(_lineage(prompt_hash=h)) for h in "pqpqq"]
    assert lineage_json(table.slice(0, 0)).to_pylist() == []


def _block(votes: list[pa.Table]) -> pa.Table:
    docs = doc_rows(pa.table({"id": ["d1", "d2", "d3", "d1"], "text": ["one", "two", "3", "1b"]}))
    gold = gold_rows(
        pa.table({"id": ["d2", "d2"], "gold": [["b"], ["a"]], "gold_seed": [True, False]})
    )
    union = pa.concat_tables([docs, gold, *votes])
    rng = np.random.default_rng(0)  # rows of an id arrive in any order
    return union.take(pa.array(rng.permutation(union.num_rows)))


def test_assemble_block_one_row_per_corpus_row() -> None:
    alpha = vote_rows(
        _votes(
            [
                {"id": "d1", "labels": ["a"], "created_at": T1},
                {"id": "d1", "labels": ["b"]},  # older: does not count
                {"id": "d2", "labels": ["c"]},
                {"id": "d2", "labels": ["a"], "created_at": T1, "error": "cut"},  # latest: abstains
                {"id": "ghost", "labels": ["a"]},  # not in the corpus: dropped
            ]
        ),
        0,
        NAMES,
        "v",
    )
    beta = vote_rows(
        _votes([{"id": "d1", "labels": [], "teacher": "b"}, {"id": "d3", "probs": [0.5] * 3}]),
        1,
        NAMES,
        "v",
    )
    got = sorted(assemble_block(_block([alpha, beta]), 2).to_pylist(), key=lambda r: r["text"])
    assert [(r["id"], r["text"]) for r in got] == [
        ("d1", "1b"),
        ("d3", "3"),
        ("d1", "one"),
        ("d2", "two"),
    ]
    d1, d3, d1b, d2 = got[2], got[1], got[0], got[3]
    assert d1["teacher_probs"] == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]] == d1b["teacher_probs"]
    assert json.loads(d1["lineage"]) == [_lineage(), _lineage(teacher="b")]
    assert d1["gold"] is None and d1["gold_seed"] is False
    assert d2["teacher_probs"] == [None, None] and json.loads(d2["lineage"]) == []
    assert d2["gold"] == ["b"] and d2["gold_seed"] is True  # the first gold row of the id
    assert d3["teacher_probs"] == [None, [0.5, 0.5, 0.5]]
    assert json.loads(d3["lineage"]) == [_lineage()]


def test_assemble_block_without_docs_or_rows() -> None:
    votes = vote_rows(_votes([{"id": "ghost", "labels": ["a"]}]), 0, NAMES, "v")
    assert assemble_block(votes, 1).num_rows == 0
    assert assemble_block(votes.slice(0, 0), 1).num_rows == 0


def test_default_partitions_grow_with_the_corpus() -> None:
    from labelmill.pipelines.aggregate import ROWS_PER_PARTITION, default_partitions

    assert ROWS_PER_PARTITION == 250_000
    assert default_partitions(10, 2) == 2  # one per CPU for a small corpus
    assert default_partitions(1_000_000, 2) == 4
    assert default_partitions(1_000_001, 2) == 5
    assert default_partitions(1_000_000, 8) == 8
