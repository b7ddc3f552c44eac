"""The `openai` teacher kind against a local OpenAI-compatible stand-in server (CSV corpus)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from conftest import job_config
from openai_standin import StandinServer

from labelmill.pipelines.label import LabelJobError, run_label_job
from labelmill.pipelines.votes_io import read_votes

TEXTS = {
    "d0": "An editing tool for text.",
    "d1": "A music player for audio. FLAKY",
    "d2": "A web server.",
    "d3": "GARBAGE answer please",
    "d4": "",
}


def write_csv(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.csv"
    pacsv.write_csv(pa.table({"id": list(TEXTS), "text": list(TEXTS.values())}), path)
    return path


def openai_teacher(name: str, base_url: str, mode: str, **extra) -> dict:
    return {
        "name": name,
        "kind": "openai",
        "model": "standin",
        "base_url": base_url,
        "mode": mode,
        "batch_size": 2,
        "concurrency": 1,
        "max_retries": 3,
        "retry_base_wait_s": 0.05,
        "price_per_1k_input": 1.0,
        "price_per_1k_output": 2.0,
        **extra,
    }


def test_openai_set_and_score(ray_local, tmp_path) -> None:
    path = write_csv(tmp_path)
    with StandinServer() as server:
        config = job_config(
            {"uri": str(path)},
            [
                openai_teacher("http-set", server.base_url, "set"),
                openai_teacher("http-score", server.base_url, "score"),
            ],
            tmp_path / "out",
        )
        summary = run_label_job(config)
        # The first try of each mode got a 503 and was retried.
        assert server.seen["A music player for audio. FLAKY|set"] == 2
        assert server.seen["A music player for audio. FLAKY|score"] == 5  # 4 labels + 1 retry

    set_stats, score_stats = summary.teachers
    assert set_stats.rows_labeled == score_stats.rows_labeled == 5
    assert set_stats.cost == pytest.approx(
        (set_stats.prompt_tokens * 1.0 + set_stats.output_tokens * 2.0) / 1000
    )

    rows = {r["id"]: r for r in read_votes(str(tmp_path / "out"), "http-set").to_pylist()}
    assert rows["d0"]["labels"] == ["use::editing", "works-with::text"]
    assert rows["d0"]["error"] is None and rows["d0"]["prompt_tokens"] > 0
    assert rows["d1"]["labels"] == ["works-with::audio"]
    assert rows["d2"]["labels"] == ["network::server"]
    assert "unparseable model output" in rows["d3"]["error"]
    assert rows["d4"]["error"] == "empty text"

    rows = {r["id"]: r for r in read_votes(str(tmp_path / "out"), "http-score").to_pylist()}
    assert rows["d0"]["probs"] == pytest.approx([0.9, 0.9, 0.1, 0.1])
    assert rows["d0"]["labels"] == ["use::editing", "works-with::text"]
    assert rows["d2"]["probs"] == pytest.approx([0.1, 0.1, 0.1, 0.9])
    assert rows["d4"]["error"] == "empty text" and rows["d4"]["probs"] is None


def test_endpoint_down_is_fatal(ray_local, tmp_path) -> None:
    path = write_csv(tmp_path)
    config = job_config(
        {"uri": str(path)},
        [openai_teacher("down", "http://127.0.0.1:9/v1", "set", max_retries=1)],
        tmp_path / "out",
    )
    with pytest.raises(LabelJobError, match=r"teacher 'down' failed"):
        run_label_job(config)
