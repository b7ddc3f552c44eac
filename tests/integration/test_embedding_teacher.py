"""The `embedding` teacher through the label job: one row per document, calibrated, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import LABELS, job_config

from labelmill.pipelines.label import run_label_job
from labelmill.pipelines.votes_io import read_votes

TEXTS = [
    ("text editor for the terminal", ["use::editing", "works-with::text"]),
    ("music player that plays audio files", ["works-with::audio"]),
    ("network server daemon for mail", ["network::server"]),
    ("image viewer with a graphical window", []),
    ("command line tool to convert sound files", ["works-with::audio"]),
    ("shared library for data", []),
]


def embedding_teacher(model: Path, **extra: object) -> dict:
    """A CPU embedding teacher on the tiny random encoder."""
    return {
        "name": "tiny-embed",
        "kind": "embedding",
        "model": str(model),
        "accelerator": "cpu",
        "batch_size": 8,
        "embedding": {"max_length": 32},
        **extra,
    }


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(30):
            text, tags = TEXTS[i % len(TEXTS)]
            text = "   " if i == 7 else f"{text} number {i}"
            handle.write(json.dumps({"id": f"doc{i:02d}", "text": text, "tags": tags}) + "\n")
    return path


def test_embedding_teacher_labels_every_row_and_resumes(
    ray_local, tiny_bert, corpus_file, tmp_path
):
    output = tmp_path / "out"
    config = job_config(
        {"uri": str(corpus_file), "gold_column": "tags"},
        [embedding_teacher(tiny_bert)],
        output,
        gold={"seed_fraction": 0.5},
    )
    summary = run_label_job(config)
    stats = summary.teachers[0]
    assert (stats.mode, stats.rows_in, stats.rows_labeled, stats.rows_resumed) == (
        "embedding",
        30,
        30,
        0,
    )
    assert stats.rows_with_errors == 1 and stats.output_tokens == 0 and stats.prompt_tokens > 0

    votes = read_votes(str(output), "tiny-embed").to_pylist()
    assert sorted(v["id"] for v in votes) == [f"doc{i:02d}" for i in range(30)]
    bad = next(v for v in votes if v["id"] == "doc07")
    assert bad["error"] == "empty text" and bad["probs"] is None
    good = [v for v in votes if v["id"] != "doc07"]
    assert all(v["error"] is None and v["mode"] == "embedding" for v in good)
    probs = np.array([v["probs"] for v in good])
    assert probs.shape == (29, len(LABELS))
    assert np.all((probs >= 0.0) & (probs <= 1.0))
    names = [name for name, _ in LABELS]
    for vote, row in zip(good, probs, strict=True):
        assert vote["labels"] == [n for n, p in zip(names, row, strict=True) if p >= 0.5]
        assert len(json.loads(vote["raw_output"])) == len(LABELS)
    assert len({v["prompt_hash"] for v in votes}) == 1
    calibration = json.loads(
        (
            output / "votes" / "tiny-embed" / f"calibration-{votes[0]['prompt_hash']}.json"
        ).read_text()
    )
    assert "platt" in calibration["method"]  # the seed has both classes for some label

    again = run_label_job(config).teachers[0]
    assert (again.rows_labeled, again.rows_resumed) == (0, 30)
    assert read_votes(str(output), "tiny-embed").num_rows == 30

    # A part lost (as if the job had died before writing it): only its rows are redone, with
    # the saved calibration, giving the same votes.
    before = {v["id"]: v for v in votes}
    parts = sorted((output / "votes" / "tiny-embed").glob("part-*.parquet"))
    lost = pq.read_table(parts[0])["id"].to_pylist()
    parts[0].unlink()
    redone = run_label_job(config).teachers[0]
    assert (redone.rows_labeled, redone.rows_resumed) == (len(lost), 30 - len(lost))
    after = read_votes(str(output), "tiny-embed").to_pylist()
    assert sorted(v["id"] for v in after) == sorted(before)
    for vote in after:
        old = before[vote["id"]]
        assert vote["prompt_hash"] == old["prompt_hash"] and vote["error"] == old["error"]
        if old["probs"] is not None:
            np.testing.assert_allclose(vote["probs"], old["probs"], atol=1e-5)


def _score_parts(output: Path) -> dict[str, list[str]]:
    """Raw score part file name -> the ids it holds (every score hash of the teacher)."""
    root = output / "embedding-scores" / "tiny-embed"
    return {
        part.name: pq.read_table(part, columns=["id"])["id"].to_pylist()
        for part in sorted(root.glob("*/part-*.parquet"))
    }


def test_embedding_raw_scores_persist_and_a_longer_corpus_encodes_only_the_rest(
    ray_local, tiny_bert, corpus_file, tmp_path
):
    output = tmp_path / "out"
    teacher = embedding_teacher(tiny_bert)
    prefix = job_config({"uri": str(corpus_file), "limit": 12}, [teacher], output)
    first = run_label_job(prefix).teachers[0]
    assert (first.rows_in, first.rows_labeled) == (12, 12)
    before = _score_parts(output)
    assert sorted(i for ids in before.values() for i in ids) == [f"doc{i:02d}" for i in range(12)]
    assert len(before) == 2  # batch_size 8: one part per encoded batch, written as encoded

    full = run_label_job(job_config({"uri": str(corpus_file)}, [teacher], output)).teachers[0]
    # A new corpus is a new calibration source, so a new prompt hash: every row gets a vote
    # again, but only the 18 documents past the prefix were encoded.
    assert (full.rows_in, full.rows_labeled) == (30, 30)
    after = _score_parts(output)
    assert {name: after[name] for name in before} == before  # the prefix parts untouched
    encoded = sorted(i for name, ids in after.items() if name not in before for i in ids)
    assert encoded == [f"doc{i:02d}" for i in range(12, 30)]
    assert read_votes(str(output), "tiny-embed").num_rows == 12 + 30
