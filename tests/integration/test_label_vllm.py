"""The teacher job end to end on the real vLLM CPU engine with the tiny model.

One job, two teachers (each engine start costs about 30 s on CPU): `set` mode with an engine
context narrower than its prompt budget, so that the engine itself rejects the long row, and
`score` mode, which truncates the long row to its budget and scores it. The corpus carries bad
rows; every teacher must return one row per input.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import LABELS, job_config, vllm_teacher

from labelmill.documents import content_id
from labelmill.pipelines.label import LabelJobError, run_label_job
from labelmill.pipelines.votes_io import read_votes

GOOD = [
    b"A text editor for plain text files with syntax highlighting.",
    b"An audio player for music collections.",
    b"A web server daemon that serves files over HTTP.",
    b"Tools to edit sound files.",
]
NAMES = [n for n, _ in LABELS]


def corpus(tmp_path: Path) -> tuple[Path, dict[str, str | None]]:
    """Parquet with a binary text column: good rows, empty, null, invalid UTF-8, oversized."""
    long_text = ("An editor for long documents with many features. " * 300).encode()
    texts = [*GOOD, b"", None, b"bad \xff\xfe bytes", long_text, b"A game with no id."]
    ids = ["g0", "g1", "g2", "g3", "empty", "null", "badutf8", "long", None]
    path = tmp_path / "corpus.parquet"
    pq.write_table(
        pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.binary())}), path
    )
    expected = {i: None for i in ids if i}
    expected[content_id(b"A game with no id.")] = None
    expected.update(empty="empty text", null="missing text", badutf8="invalid UTF-8 at byte 4")
    return path, expected


def test_both_modes_bad_rows_and_engine_row_failures(ray_local, tiny_model, tmp_path) -> None:
    path, expected = corpus(tmp_path)
    config = job_config(
        {"uri": str(path)},
        [
            vllm_teacher(
                "tiny-set",
                tiny_model,
                "set",
                max_model_len=1024,
                engine_kwargs={"max_model_len": 512},
            ),
            vllm_teacher("tiny-score", tiny_model, "score"),
        ],
        tmp_path / "out",
    )
    summary = run_label_job(config)
    assert [t.rows_in for t in summary.teachers] == [9, 9]
    assert [t.rows_labeled for t in summary.teachers] == [9, 9]
    assert (tmp_path / "out" / "label_summary.json").is_file()

    hashes = set()
    for teacher in ("tiny-set", "tiny-score"):
        table = read_votes(str(tmp_path / "out"), teacher)
        rows = {r["id"]: r for r in table.to_pylist()}
        assert len(rows) == table.num_rows == 9, teacher
        assert set(rows) == set(expected)
        for doc_id, error in expected.items():
            if error is not None:
                assert error in rows[doc_id]["error"], (teacher, doc_id)
        for row in rows.values():
            assert set(row["labels"]) <= set(NAMES)
            assert row["teacher"] == teacher
            assert row["taxonomy_version"] == summary.taxonomy_version
        hashes.add(rows["g0"]["prompt_hash"])
        assert rows["long"]["truncated"] is True

    assert len(hashes) == 2  # set and score prompts differ

    set_rows = {r["id"]: r for r in read_votes(str(tmp_path / "out"), "tiny-set").to_pylist()}
    for doc_id in ("g0", "g1", "g2", "g3"):
        row = set_rows[doc_id]
        assert row["probs"] is None
        assert row["prompt_tokens"] > 0 and row["output_tokens"] > 0
        # Grammar-constrained: any answer that finished parses into taxonomy labels.
        assert row["error"] is None or "token limit" in row["error"]

    score_rows = {r["id"]: r for r in read_votes(str(tmp_path / "out"), "tiny-score").to_pylist()}
    for doc_id in ("g0", "g1", "g2", "g3", "long"):
        row = score_rows[doc_id]
        assert row["error"] is None, row["error"]
        assert len(row["probs"]) == len(NAMES)
        assert all(0.0 <= p <= 1.0 for p in row["probs"])
        assert row["labels"] == [n for n, p in zip(NAMES, row["probs"], strict=True) if p >= 0.5]
        assert row["output_tokens"] == len(NAMES)

    # the engine (512 tokens) rejected the long row the teacher's 1,024-token budget let through
    assert set_rows["long"]["error"].startswith("engine error:")
    assert set_rows["long"]["probs"] is None and set_rows["long"]["labels"] == []


def test_missing_model_is_fatal_with_a_clear_message(ray_local, tmp_path) -> None:
    path, _ = corpus(tmp_path)
    config = job_config(
        {"uri": str(path)},
        [vllm_teacher("ghost", tmp_path / "no-such-model", "set")],
        tmp_path / "out",
    )
    with pytest.raises(LabelJobError, match=r"teacher 'ghost': model .* is not a local model"):
        run_label_job(config)
