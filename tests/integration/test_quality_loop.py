"""The loop keeps its teachers' signal: votes of a teacher of known quality (calibrated by
construction) and of a teacher with no signal -> aggregate -> distill -> evaluate on local Ray;
neither the aggregate nor the student may fall below the good teacher."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FILLER, KEYWORDS, LABELS, job_config, vote_record

from labelmill.pipelines.aggregate import run_aggregate_job
from labelmill.pipelines.distill import run_distill_job
from labelmill.pipelines.evaluate import run_evaluate_job
from labelmill.pipelines.votes_io import write_vote_part
from labelmill.records import vote_schema
from labelmill.taxonomy import Taxonomy

pytestmark = pytest.mark.integration

NAMES = [name for name, _ in LABELS]
N_DOCS = 240


@pytest.fixture(scope="module")
def loop_config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("quality-loop")
    rng, draw = random.Random(0), np.random.default_rng(0)
    ids, texts, golds = [], [], []
    for n in range(N_DOCS):
        on = [rng.random() < 0.3 for _ in KEYWORDS]
        words = rng.sample(FILLER, 5) + [w for w, flag in zip(KEYWORDS, on, strict=True) if flag]
        rng.shuffle(words)
        ids.append(f"doc-{n:03d}")
        texts.append(" ".join(words))
        golds.append([name for name, flag in zip(NAMES, on, strict=True) if flag])
    pq.write_table(pa.table({"id": ids, "text": texts, "tags": golds}), root / "corpus.parquet")
    config = job_config(  # the votes are written here: no configured teacher runs
        {"uri": str(root / "corpus.parquet"), "gold_column": "tags"},
        [],
        root / "run",
        gold={"seed_fraction": 0.3},
        aggregate={"teachers": ["good", "noise"]},
        student={
            # the bundled pretrained encoder: a random tiny one needs far more steps to learn
            # what the texts say, and this test is about the loop, not about the backbone
            "backbone": "all-minilm-l6-v2",
            "epochs": 8,
            "min_steps": 0,
            "batch_size": 16,
            "max_length": 16,
            "dev_fraction": 0.25,
            "patience": 8,
            "exclude_eval_gold": False,
        },
    )
    version = Taxonomy.from_config(config.taxonomy).version
    y = np.array([[float(name in g) for name in NAMES] for g in golds])
    # good: a score teacher calibrated by construction (log-odds y-signal plus noise);
    # noise: a label-set teacher that answers at random.
    logits = np.where(y == 1, 1.0, -2.0) + draw.normal(0.0, 1.5, y.shape)
    good = [
        vote_record(i, "good", "score", version, probs=list(1 / (1 + np.exp(-s))))
        for i, s in zip(ids, logits, strict=True)
    ]
    noise = [
        vote_record(i, "noise", "set", version, labels=[n for n in NAMES if rng.random() < 0.3])
        for i in ids
    ]
    for name, rows in (("good", good), ("noise", noise)):
        write_vote_part(pa.Table.from_pylist(rows, schema=vote_schema()), config.output_uri, name)
    return config


def test_aggregate_and_student_keep_the_good_teachers_signal(ray_local, loop_config) -> None:
    summary = run_aggregate_job(loop_config)
    assert summary.score_teachers == ["good"]
    run_distill_job(loop_config)
    run_evaluate_job(loop_config)
    metrics = json.loads(Path(loop_config.output_uri, "eval", "metrics.json").read_text())
    systems = metrics["systems"]
    good, noise = systems["good"]["micro_f1"], systems["noise"]["micro_f1"]
    assert metrics["best_teacher"] == "good" and good > noise + 0.2
    assert systems["aggregate"]["micro_f1"] >= good - 0.02
    assert systems["student"]["micro_f1"] >= good - 0.02
    assert systems["aggregate"]["lift"]["micro_f1"] == pytest.approx(
        systems["aggregate"]["micro_f1"] - good
    )
    # every system was cut at per-label thresholds chosen by the one rule
    sources = metrics["lineage"]["evaluate"]["threshold_sources"]
    assert set(sources) == {"good", "noise", "aggregate", "seed-only"}
    assert {s for values in sources.values() for s in values} <= {"gold_seed", "expected_f1"}
    # the student was cut by its export's rule: seed F1 on dev, else prevalence
    student_sources = metrics["lineage"]["student"]["lineage"]["threshold_sources"]
    assert set(student_sources) <= {"gold_seed", "prevalence"}
