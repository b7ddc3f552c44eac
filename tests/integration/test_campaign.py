"""`labelmill run` end to end with a budgeted campaign, the dry run, and kill-and-resume.

Teachers are the OpenAI-compatible stand-in (tests/integration/openai_standin.py): a cheap bulk
teacher and a "strong" campaign teacher at 10x the price; the student is the tiny random BERT.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import LABELS, job_config
from openai_standin import StandinServer

from labelmill.config import LabelmillConfig
from labelmill.layout import aggregate_labels_uri
from labelmill.ledger import Budget, BudgetLedger
from labelmill.pipelines.campaign import make_budget, run_campaign
from labelmill.pipelines.campaign_labeler import TeacherLabeler
from labelmill.pipelines.campaign_select import CampaignView, rank_candidates
from labelmill.pipelines.cli import main
from labelmill.pipelines.votes_io import read_votes
from labelmill.selection_sketch import id_hashes

NAMES = [name for name, _ in LABELS]
CUES = {
    "use::editing": "editing",
    "works-with::text": "text",
    "works-with::audio": "audio",
    "network::server": "server",
}
FILLER = [
    "the",
    "a",
    "tool",
    "for",
    "with",
    "program",
    "data",
    "file",
    "window",
    "library",
    "shared",
    "view",
    "command",
    "line",
]


def corpus_rows(n: int = 48, n_gold: int = 16) -> list[dict[str, Any]]:
    rng = random.Random(7)
    rows = []
    for i in range(n):
        on = [name for name in NAMES if rng.random() < 0.4]
        words = rng.sample(FILLER, 5) + [CUES[name] for name in on] + [f"item{i}"]
        rng.shuffle(words)
        rows.append(
            {"id": f"doc-{i:03d}", "text": " ".join(words), "tags": on if i < n_gold else None}
        )
    return rows


def teacher(name: str, base_url: str, price: float) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "openai",
        "model": "standin",
        "base_url": base_url,
        "mode": "set",
        "batch_size": 8,
        "max_output_tokens": 32,
        "price_per_1k_input": price,
        "price_per_1k_output": 2 * price,
    }


def make_config(root: Path, base_url: str, tiny_bert: Path, **campaign: Any) -> LabelmillConfig:
    corpus = root / "corpus.parquet"
    if not corpus.exists():
        root.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(corpus_rows()), corpus)
    return job_config(
        {"uri": str(corpus), "gold_column": "tags"},
        [teacher("bulk", base_url, 1.0), teacher("strong", base_url, 10.0)],
        root / "run",
        gold={"seed_fraction": 0.25},
        student={
            "backbone": str(tiny_bert),
            "num_workers": 1,
            "epochs": 1,
            "min_steps": 0,  # one epoch: the test is about the campaign, not the student
            "fast_path": False,
            "batch_size": 8,
            "max_length": 32,
            "learning_rate": 5e-3,
        },
        campaign={"teachers": ["strong"], **campaign},
        ray={"light_stage_cpus": 0.25},
    )


@pytest.fixture(scope="module")
def standin() -> Iterator[StandinServer]:
    with StandinServer() as server:
        yield server


def strong_spend(config: LabelmillConfig) -> tuple[int, float, list[str]]:
    votes = read_votes(config.output_uri, "strong", ["id", "prompt_tokens", "output_tokens"])
    rows = votes.to_pylist()
    tokens = sum(r["prompt_tokens"] + r["output_tokens"] for r in rows)
    cost = sum((r["prompt_tokens"] * 10.0 + r["output_tokens"] * 20.0) / 1000 for r in rows)
    return tokens, cost, [r["id"] for r in rows]


def test_run_whole_loop_with_a_campaign_that_stops_at_its_budget(
    ray_local: Any, tiny_bert: Path, tmp_path: Path, standin: StandinServer
) -> None:
    probe = make_config(tmp_path / "a", standin.base_url, tiny_bert)
    texts = [r["text"] for r in corpus_rows()]
    estimates = TeacherLabeler(probe).estimate([f"x{i}" for i in range(len(texts))], texts)
    per_doc = int(estimates["strong"][0].max())
    cap = 6 * per_doc + 1  # six documents' worth of reservations, far fewer than the candidates
    config = make_config(
        tmp_path / "a",
        standin.base_url,
        tiny_bert,
        rounds=2,
        docs_per_round=20,
        strategy="targeted",
        budget={"max_tokens": cap},
    )

    # the dry run prices the plan and sends nothing
    config_file = tmp_path / "a" / "job.yaml"
    config_file.write_text(json.dumps(config.model_dump(mode="json")), encoding="utf-8")
    assert main(["label", str(config_file)]) == 0
    assert main(["aggregate", str(config_file)]) == 0
    sent = sum(standin.seen.values())
    assert main(["campaign", str(config_file), "--dry-run"]) == 0
    assert sum(standin.seen.values()) == sent
    assert not (Path(config.output_uri) / "campaign").exists()

    assert main(["run", str(config_file)]) == 0
    run = Path(config.output_uri)
    report = json.loads((run / "campaign" / "report.json").read_text())
    rounds = report["rounds"]
    assert rounds[0]["round"] == 0 and rounds[0]["student_micro_f1"] is not None
    assert rounds[-1]["stopped"] == "budget"
    assert rounds[1]["docs_selected"] >= 1 and rounds[1]["student_micro_f1"] is not None
    tokens, cost, ids = strong_spend(config)
    ledger = BudgetLedger(str(run / "campaign" / "ledger"), make_budget(config))
    spent_tokens, spent_cost = ledger.spent()
    assert spent_tokens == tokens  # the spend recorded exactly: the tokens the votes report
    assert spent_cost == pytest.approx(cost)
    assert ledger.reserved() == (0, 0.0) and ledger.open_keys() == []
    assert spent_tokens <= cap
    assert len(ids) == len(set(ids)) == rounds[-1]["docs_relabeled_total"]
    # every relabeled document was sent to the strong teacher exactly once
    assert all(standin.seen[_line(config, i) + "|set"] == 2 for i in ids)  # bulk + strong
    assert (run / "campaign" / "report.html").read_text().startswith("<!doctype html>")
    summary = json.loads((run / "run_summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == [
        "label",
        "aggregate",
        "distill",
        "evaluate",
        "campaign",
    ]


def _line(config: LabelmillConfig, doc_id: str) -> str:
    table = pq.read_table(config.corpus.uri).to_pylist()
    return next(r["text"] for r in table if r["id"] == doc_id)


class CrashAfterLabeling:
    """Writes the votes of a round, then dies before the campaign could settle them."""

    def __init__(self, inner: TeacherLabeler) -> None:
        self.inner = inner
        self.teachers = inner.teachers

    def estimate(self, ids: list[str], texts: list[str]) -> Any:
        return self.inner.estimate(ids, texts)

    def label(self, ids: list[str], texts: list[str], round_dir: str) -> None:
        self.inner.label(ids[: len(ids) // 2], texts[: len(texts) // 2], round_dir)
        raise RuntimeError("killed mid-round")


def test_kill_and_resume_never_pays_twice(
    ray_local: Any, tiny_bert: Path, tmp_path: Path, standin: StandinServer
) -> None:
    config = make_config(
        tmp_path / "b",
        standin.base_url,
        tiny_bert,
        rounds=1,
        docs_per_round=6,
        strategy="random",
        retrain=False,
        budget={"max_cost": 100.0},
    )
    from labelmill.pipelines.aggregate import run_aggregate_job
    from labelmill.pipelines.label import run_label_job

    run_label_job(config)  # no student: a random, no-retrain campaign does not need one
    run_aggregate_job(config)
    # the random order is the hash of (seed, round, id) over the candidates, ranked on the cluster
    view = CampaignView(config, aggregate_labels_uri(config))
    rows = pq.read_table(aggregate_labels_uri(config)).to_pylist()
    held_out = {r["id"] for r in rows if r["gold"] is not None and not r["gold_seed"]}
    assert view.n_docs == len(rows) == 48 and 0 < len(held_out) < 16  # 16 gold, some the seed
    candidates = sorted(r["id"] for r in rows if r["id"] not in held_out)
    keys = dict(zip(candidates, id_hashes(candidates, "random:1").tolist(), strict=True))
    expected = sorted(candidates, key=keys.__getitem__)
    assert rank_candidates(config, view, set(), "", 1, 6) == expected[:6]
    assert rank_candidates(config, view, set(expected[:2]), "", 1, 3) == expected[2:5]
    assert view.count_candidates(set(expected[:2])) == len(candidates) - 2
    before = dict(standin.seen)
    with pytest.raises(RuntimeError, match="killed mid-round"):
        run_campaign(config, labeler=CrashAfterLabeling(TeacherLabeler(config)))
    ledger_dir = Path(config.output_uri) / "campaign" / "ledger"
    crashed = BudgetLedger(str(ledger_dir), Budget(max_cost=100.0))
    state = json.loads((Path(config.output_uri) / "campaign" / "state.json").read_text())
    admitted = state["pending"]["ids"]
    assert len(crashed.open_keys()) == len(admitted) > 0  # reserved, never settled
    half = read_votes(config.output_uri, "strong", ["id"])["id"].to_pylist()
    assert 0 < len(half) < len(admitted)

    summary = run_campaign(config)  # resume: settle what was paid, label the rest of the round
    tokens, cost, ids = strong_spend(config)
    assert sorted(ids) == sorted(admitted)  # the interrupted round, completed, nothing more
    ledger = BudgetLedger(str(ledger_dir), Budget(max_cost=100.0))
    assert ledger.open_keys() == []
    assert ledger.spent()[0] == tokens and ledger.spent()[1] == pytest.approx(cost)
    for doc_id in admitted:  # each sent to the strong teacher exactly once
        key = _line(config, doc_id) + "|set"
        assert standin.seen[key] - before.get(key, 0) == 1
    assert summary.rounds[-1]["docs_selected"] == len(admitted)
    assert "pending" not in json.loads(
        (Path(config.output_uri) / "campaign" / "state.json").read_text()
    )
    shutil.rmtree(tmp_path / "b", ignore_errors=True)
