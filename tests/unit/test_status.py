"""`labelmill status`: a run directory's contents read from its files (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelmill.pipelines.cli import main
from labelmill.status import render_status, run_status, vote_lineage, vote_stats


def write_votes(run: Path, teacher: str, part: str, rows: list[dict]) -> None:
    folder = run / "votes" / teacher
    folder.mkdir(parents=True, exist_ok=True)
    base = {"teacher": teacher, "model": f"{teacher}-model", "mode": "set"}
    pq.write_table(pa.Table.from_pylist([{**base, **r} for r in rows]), folder / part)


def vote(i: int, error: str | None = None, version: str = "tax1", hash_: str = "p1") -> dict:
    return {
        "id": f"d{i}",
        "prompt_hash": hash_,
        "taxonomy_version": version,
        "error": error,
        "prompt_tokens": 100 + i,
        "output_tokens": 10,
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    write_votes(run, "llm", "part-a.parquet", [vote(0), vote(1, "cut off")])
    write_votes(run, "llm", "part-b.parquet", [vote(2), vote(3, version="old")])
    write_votes(run, "emb", "part-a.parquet", [vote(0, hash_="e1"), vote(1, hash_="e1")])
    (run / "votes" / "llm" / ".tmp-part-c.parquet").write_bytes(b"half written")  # ignored
    (run / "aggregate").mkdir()
    (run / "aggregate" / "summary.json").write_text(
        json.dumps({"method": "dawid_skene", "n_docs": 4, "n_all_error": 0})
    )
    (run / "eval").mkdir()
    metrics = {
        "n_documents": 3,
        "best_teacher": "emb",
        "systems": {
            "emb": {"micro_f1": 0.5, "lift": {"micro_f1": 0.0}},
            "student": {"micro_f1": 0.55, "lift": {"micro_f1": 0.05}},
        },
    }
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    (run / "eval" / "report.html").write_text("<!DOCTYPE html>")
    (run / "campaign").mkdir()
    ledger = {"total": {"spent_tokens": 900, "spent_cost": 1.25, "max_cost": 2.0}}
    (run / "campaign" / "report.json").write_text(json.dumps({"ledger": ledger}))
    stages = [{"stage": "label", "seconds": 275.4}, {"stage": "aggregate", "seconds": 36.0}]
    (run / "run_summary.json").write_text(json.dumps({"stages": stages}))
    (run / "logs").mkdir()
    (run / "logs" / "run-1.log").write_text("INFO ...")
    return run


def test_vote_stats_count_rows_errors_and_tokens_per_prompt(run_dir: Path) -> None:
    stats = vote_stats(str(run_dir))
    keyed = {(s["teacher"], s["taxonomy_version"]): s for s in stats}
    assert sorted(keyed) == [("emb", "tax1"), ("llm", "old"), ("llm", "tax1")]
    llm = keyed[("llm", "tax1")]
    assert (llm["rows"], llm["errors"]) == (3, 1)
    assert llm["prompt_tokens"] == 100 + 101 + 102 and llm["output_tokens"] == 30
    assert llm["model"] == "llm-model" and llm["prompt_hash"] == "p1"
    lineage = vote_lineage(str(run_dir), "tax1", {"llm": (2.0, 4.0)})
    costs = {row["teacher"]: row["cost"] for row in lineage}
    assert costs == {"emb": None, "llm": pytest.approx((303 * 2.0 + 30 * 4.0) / 1000)}
    assert vote_stats(str(run_dir / "nothing")) == []


def test_status_reads_every_stage(run_dir: Path) -> None:
    status = run_status(str(run_dir))
    assert status["stages"] == {
        "label": True,
        "aggregate": True,
        "distill": False,
        "evaluate": True,
        "predict": False,
        "campaign": True,
    }
    assert status["campaign_spend"]["spent_cost"] == 1.25
    assert status["reports"] == [str(run_dir / "eval" / "report.html")]
    text = render_status(status)
    assert "label done  aggregate done  distill -" in text
    assert "aggregate: dawid_skene, 4 documents, 0 without a vote" in text
    assert "best teacher emb" in text and "lift +0.050" in text
    assert "campaign spend: 900 tokens, 1.2500 money of 2.0" in text
    assert "last run: label 275 s, aggregate 36 s" in text
    assert f"report: {run_dir / 'eval' / 'report.html'}" in text
    assert text.count("\n") < 20  # a glance, not a dump


def test_status_errors_name_the_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"output_uri '.*nope' does not exist"):
        run_status(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no labelmill output"):
        run_status(str(tmp_path / "empty"))


def test_status_command(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(run_dir)]) == 0
    assert "run directory:" in capsys.readouterr().out
    assert main(["status", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"]["label"] is True
    assert main(["status", str(run_dir / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
