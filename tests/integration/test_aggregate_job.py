"""The aggregation job on local Ray: three fake teachers' vote parts over a 40-document corpus."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import LABELS, job_config, vote_record

from labelmill.aggregation import DawidSkene, majority_vote, weighted_vote
from labelmill.layout import is_gold_seed
from labelmill.pipelines.aggregate import aggregate_label_schema, run_aggregate_job
from labelmill.pipelines.cli import main
from labelmill.pipelines.votes_io import write_vote_part
from labelmill.records import vote_schema
from labelmill.taxonomy import Taxonomy

pytestmark = pytest.mark.integration

NAMES = [name for name, _ in LABELS]
N_DOCS, SEED_FRACTION, MAX_ITER = 40, 0.3, 8
TEACHERS = ["alpha", "beta", "gamma"]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _vote(doc_id: str, teacher: str, version: str, **fields: Any) -> dict[str, Any]:
    mode = "score" if teacher == "gamma" else "set"
    return vote_record(doc_id, teacher, mode, version, **{"created_at": T0, **fields})


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Corpus, gold, vote parts on disk, and the expected (N, T, K) vote tensor built alongside."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("aggregate")
    ids = [f"doc-{n:02d}" for n in range(N_DOCS)]
    truth = rng.random((N_DOCS, len(NAMES))) < 0.35
    gold = [[NAMES[k] for k in np.flatnonzero(row)] for row in truth]
    pq.write_table(
        pa.table({"id": ids, "text": [f"text {i}" for i in ids], "tags": gold}),
        root / "corpus.parquet",
    )
    config = job_config(
        {"uri": str(root / "corpus.parquet"), "gold_column": "tags"},
        [
            {"name": t, "kind": "openai", "model": f"model-{t}", "base_url": "http://x/v1"}
            for t in TEACHERS
        ],
        root / "run",
        gold={"seed_fraction": SEED_FRACTION},
        aggregate={"max_iter": MAX_ITER, "tol": 0.0, "gold_anchor": "clamp"},
    )
    version = Taxonomy.from_config(config.taxonomy).version
    expected = np.full((N_DOCS, len(TEACHERS), len(NAMES)), np.nan)
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in TEACHERS}
    for n, doc_id in enumerate(ids):
        flips = [rng.random(len(NAMES)) < rate for rate in (0.1, 0.25)]
        for t, teacher in enumerate(TEACHERS[:2]):
            hard = truth[n] ^ flips[t]
            errored = n == 0 or (teacher == "beta" and 5 <= n < 10)  # beta abstains on 5..9
            labels = [NAMES[k] for k in np.flatnonzero(hard)]
            rows[teacher].append(
                _vote(
                    doc_id,
                    teacher,
                    version,
                    labels=[] if errored else labels,
                    error="cut answer" if errored else None,
                )
            )
            if not errored:
                expected[n, t] = hard
        probs = np.clip(np.where(truth[n], 0.8, 0.2) + rng.normal(0, 0.15, len(NAMES)), 0, 1)
        cells: list[float | None] = [float(p) for p in probs]
        if n == 3:
            cells[2], probs[2] = None, np.nan  # one unreadable label
        errored = n == 0
        rows["gamma"].append(
            _vote(
                doc_id,
                "gamma",
                version,
                probs=None if errored else cells,
                labels=[NAMES[k] for k in np.flatnonzero(probs >= 0.5)],
                error="engine error" if errored else None,
            )
        )
        if not errored:
            expected[n, 2] = probs
    # Ignored: a newer vote of another taxonomy version, and a vote for an id not in the corpus.
    rows["alpha"].append(
        _vote(
            "doc-01",
            "alpha",
            "stale-version",
            labels=NAMES,
            created_at=T0 + timedelta(days=9),
            prompt_hash="stale",
        )
    )
    rows["alpha"].append(_vote("ghost", "alpha", version, labels=NAMES))
    # An older vote for (doc-02, alpha) with another prompt: the latest one (above) wins.
    opposite = [NAMES[k] for k in np.flatnonzero(expected[2, 0] == 0)]
    rows["alpha"].append(
        _vote(
            "doc-02",
            "alpha",
            version,
            labels=opposite,
            created_at=T0 - timedelta(days=1),
            prompt_hash="old",
        )
    )
    for teacher, teacher_rows in rows.items():
        table = pa.Table.from_pylist(teacher_rows, schema=vote_schema())
        half = table.num_rows // 2  # two parts per teacher
        write_vote_part(table.slice(0, half), config.output_uri, teacher)
        write_vote_part(table.slice(half), config.output_uri, teacher)
    seed = np.array([is_gold_seed(i, SEED_FRACTION) for i in ids])
    assert 0 < seed.sum() < N_DOCS
    return {
        "config": config,
        "root": root,
        "ids": ids,
        "votes": expected,
        "gold": truth.astype(float),
        "seed": seed,
    }


def _read_labels(config: Any) -> pa.Table:
    table = pq.read_table(str(Path(config.output_uri) / "aggregate" / "labels"))
    assert table.schema.equals(aggregate_label_schema(), check_metadata=False)
    return table.sort_by("id")


def test_dawid_skene_job_equals_in_memory_fit(ray_local: Any, scenario: dict[str, Any]) -> None:
    config = scenario["config"]
    summary = run_aggregate_job(config)
    table = _read_labels(config)
    assert table.num_rows == N_DOCS == summary.n_docs  # rows in == rows out
    assert table["id"].to_pylist() == scenario["ids"]  # the ghost id is not there
    rows = table.to_pylist()
    all_error = rows[0]
    assert all_error["error"] == "no teacher voted" and all_error["probs"] is None
    assert all_error["labels"] == [] and all_error["agreement"] is None
    assert all_error["n_teachers"] == 0 and summary.n_all_error == 1
    assert [r["n_teachers"] for r in rows[5:10]] == [2] * 5  # beta abstained
    assert rows[5]["teacher_probs"][1] is None and rows[3]["teacher_probs"][2][2] is None
    assert [e["teacher"] for e in json.loads(rows[5]["lineage"])] == ["alpha", "gamma"]
    assert rows[1]["teachers"] == TEACHERS and rows[1]["method"] == "dawid_skene"

    model = DawidSkene(max_iter=MAX_ITER, tol=0.0).fit(
        scenario["votes"], scenario["gold"], scenario["seed"]
    )
    probs = np.array([r["probs"] for r in rows[1:]], dtype=float)
    # seed rows too carry the model's posterior, not their gold: every system is comparable
    np.testing.assert_allclose(probs, model.predict_proba(scenario["votes"])[1:], atol=1e-6)
    assert summary.n_iter == model.n_iter_ == MAX_ITER
    np.testing.assert_allclose(summary.log_likelihood, model.log_likelihood_, rtol=1e-9)
    cut = np.array([summary.thresholds[name]["threshold"] for name in NAMES])
    assert {summary.thresholds[name]["source"] for name in NAMES} <= {"gold_seed", "expected_f1"}
    for row, p in zip(rows[1:], probs, strict=True):
        assert row["labels"] == [NAMES[k] for k in np.flatnonzero(p >= cut)]
    assert summary.score_teachers == ["gamma"]  # the teacher in `score` mode

    reliability = json.loads(Path(summary.reliability_uri).read_text())
    assert len(reliability) == len(TEACHERS) * len(NAMES)
    assert {r["source"] for r in reliability} == {"dawid_skene"}
    assert reliability[0]["sensitivity"] == pytest.approx(model.sensitivity_[0, 0])
    saved = json.loads(Path(summary.summary_uri).read_text())
    assert saved["n_docs"] == N_DOCS and saved["n_iter"] == MAX_ITER
    assert set(saved["label_rate"]) == set(NAMES)
    assert "dawid_skene" in summary.render()

    # the `rates` anchor: rates from the gold seed alone, one E-step, no EM
    rates = config.model_copy(
        update={"aggregate": config.aggregate.model_copy(update={"gold_anchor": "rates"})}
    )
    summary = run_aggregate_job(rates)
    anchored = DawidSkene(anchor="rates").fit(scenario["votes"], scenario["gold"], scenario["seed"])
    probs = np.array([r["probs"] for r in _read_labels(rates).to_pylist()[1:]], dtype=float)
    np.testing.assert_allclose(probs, anchored.predict_proba(scenario["votes"])[1:], atol=1e-6)
    assert summary.n_iter == 1


def test_cli_majority_and_weighted(ray_local: Any, scenario: dict[str, Any]) -> None:
    config = scenario["config"]
    tree = json.loads(config.model_dump_json())
    tree["aggregate"]["method"] = "majority"
    path = scenario["root"] / "majority.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert main(["aggregate", str(path)]) == 0
    rows = _read_labels(config).to_pylist()
    assert len(rows) == N_DOCS and rows[0]["probs"] is None
    expected = majority_vote(scenario["votes"])
    got = np.array([[np.nan if v is None else v for v in r["probs"]] for r in rows[1:]])
    np.testing.assert_allclose(got, expected[1:], atol=1e-12)
    reliability = json.loads(Path(config.output_uri, "aggregate", "reliability.json").read_text())
    assert len(reliability) == 12 and {r["source"] for r in reliability} == {"gold_seed"}

    weighted = config.model_copy(
        update={"aggregate": config.aggregate.model_copy(update={"method": "weighted"})}
    )
    summary = run_aggregate_job(weighted)
    assert summary.weights_source == "gold_seed" and summary.n_docs == N_DOCS
    rows = _read_labels(config).to_pylist()
    assert [r["method"] for r in rows] == ["weighted"] * N_DOCS
    # Accuracy per (teacher, label) on the gold seed, Laplace-smoothed, computed here by hand.
    votes, gold, seed = scenario["votes"], scenario["gold"], scenario["seed"]
    seen = ~np.isnan(votes[seed])
    hits = (seen & ((votes[seed] >= 0.5) == (gold[seed][:, None, :] == 1))).sum(axis=0)
    accuracy = np.clip((hits + 1) / (seen.sum(axis=0) + 2), 0.01, 0.99)
    got = np.array([[np.nan if v is None else v for v in r["probs"]] for r in rows[1:]])
    np.testing.assert_allclose(got, weighted_vote(votes, accuracy)[1:], atol=1e-12)


def test_unknown_teacher_exits_2(
    ray_local: Any, scenario: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tree = json.loads(scenario["config"].model_dump_json())
    path = scenario["root"] / "unknown.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert main(["aggregate", str(path), "--set", "aggregate.teachers=[alpha, nobody]"]) == 2
    assert "nobody" in capsys.readouterr().err


def test_assembly_under_a_sort_shuffle(ray_local: Any, scenario: dict[str, Any]) -> None:
    """Without a hash shuffle the assembly co-locates an id's rows by sorting: same rows."""
    from ray.data.context import DataContext, ShuffleStrategy

    config = scenario["config"]
    majority = config.model_copy(
        update={"aggregate": config.aggregate.model_copy(update={"method": "majority"})}
    )
    context = DataContext.get_current()
    saved = context.shuffle_strategy
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        summary = run_aggregate_job(majority)
    finally:
        context.shuffle_strategy = saved
    rows = _read_labels(config).to_pylist()
    assert summary.n_docs == N_DOCS and [r["id"] for r in rows] == scenario["ids"]
    got = np.array([[np.nan if v is None else v for v in r["probs"]] for r in rows[1:]])
    np.testing.assert_allclose(got, majority_vote(scenario["votes"])[1:], atol=1e-12)


def test_many_partitions_some_empty(ray_local: Any, scenario: dict[str, Any]) -> None:
    """More hash partitions than ids: empty shards add nothing to the fit."""
    config = scenario["config"]
    spread = config.model_copy(
        update={"aggregate": config.aggregate.model_copy(update={"num_partitions": 64})}
    )
    summary = run_aggregate_job(spread)
    rows = _read_labels(config).to_pylist()
    assert summary.n_docs == N_DOCS and [r["id"] for r in rows] == scenario["ids"]
    model = DawidSkene(max_iter=MAX_ITER, tol=0.0).fit(
        scenario["votes"], scenario["gold"], scenario["seed"]
    )
    probs = np.array([r["probs"] for r in rows[1:]], dtype=float)
    np.testing.assert_allclose(probs, model.predict_proba(scenario["votes"])[1:], atol=1e-6)
