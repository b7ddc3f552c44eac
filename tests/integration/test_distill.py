"""`labelmill distill` on a local Ray: 2 Ray Train workers, a tiny random BERT, ~60 documents."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import FILLER, KEYWORDS, LABELS, job_config
from transformers import AutoTokenizer

from labelmill.aggregation import prevalence_thresholds
from labelmill.layout import aggregate_file_uri, aggregate_labels_uri, is_dev, student_dir
from labelmill.pipelines.distill import DistillJobError, prepare_batch, run_distill_job
from labelmill.student.model import load_pooled_classifier, predict_proba
from labelmill.taxonomy import Taxonomy

LINEAGE = json.dumps(
    [
        {"teacher": "t1", "model": "m1", "mode": "set", "prompt_hash": "h1"},
        {"teacher": "t2", "model": "m2", "mode": "score", "prompt_hash": "h2"},
    ]
)
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("gold", pa.list_(pa.string())),
        ("gold_seed", pa.bool_()),
        ("teachers", pa.list_(pa.string())),
        ("teacher_probs", pa.list_(pa.list_(pa.float64()))),
        ("probs", pa.list_(pa.float64())),
        ("labels", pa.list_(pa.string())),
        ("agreement", pa.float64()),
        ("n_teachers", pa.int64()),
        ("method", pa.string()),
        ("taxonomy_version", pa.string()),
        ("lineage", pa.string()),
        ("error", pa.string()),
    ]
)


def aggregate_row(doc_id: str, text: str | None, probs: list[float] | None, version: str) -> dict:
    names = [name for name, _ in LABELS]
    labels = [n for n, p in zip(names, probs or [], strict=False) if p >= 0.5]
    return {
        "id": doc_id,
        "text": text,
        "gold": None,
        "gold_seed": False,
        "teachers": ["t1", "t2"],
        "teacher_probs": [probs, probs] if probs else [None, None],
        "probs": probs,
        "labels": labels,
        "agreement": 1.0,
        "n_teachers": 2 if probs else 0,
        "method": "dawid_skene",
        "taxonomy_version": version,
        "lineage": LINEAGE,
        "error": None if probs else "all teachers failed",
    }


def learnable_rows(count: int, version: str, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        on = [rng.random() < 0.5 for _ in KEYWORDS]
        words = rng.sample(FILLER, 6) + [w for w, flag in zip(KEYWORDS, on, strict=True) if flag]
        rng.shuffle(words)
        probs = [round(0.9 - 0.1 * rng.random(), 3) if flag else 0.1 for flag in on]
        rows.append(aggregate_row(f"doc-{i:03d}", " ".join(words), probs, version))
    return rows


def write_aggregate(config, rows: list[dict]) -> None:
    target = Path(aggregate_labels_uri(config))
    target.mkdir(parents=True, exist_ok=True)
    half = len(rows) // 2
    for part, chunk in enumerate((rows[:half], rows[half:])):
        table = pa.Table.from_pylist(chunk, schema=SCHEMA)
        pq.write_table(table, target / f"part-{part:05d}.parquet")
    summary = {"method": "dawid_skene", "teachers": ["t1", "t2"]}
    Path(aggregate_file_uri(config, "summary.json")).write_text(json.dumps(summary))


def make_config(tmp_path: Path, tiny_bert: Path, **student):
    settings = {
        "backbone": str(tiny_bert),
        "num_workers": 2,
        "epochs": 2,
        "batch_size": 8,
        "max_length": 32,
        "dev_fraction": 0.2,
        "learning_rate": 5e-3,
        "min_steps": 0,
        **student,
    }
    return job_config(  # distill reads the aggregate: no teacher needed
        {"uri": str(tmp_path / "corpus.parquet")},
        [],
        tmp_path / "run",
        student=settings,
    )


def test_distill_trains_exports_and_reloads(ray_local, tiny_bert: Path, tmp_path: Path) -> None:
    config = make_config(tmp_path, tiny_bert)
    version = Taxonomy.from_config(config.taxonomy).version
    good = learnable_rows(60, version)
    held_out = aggregate_row("gold-eval", "editor text", [0.9, 0.9, 0.1, 0.1], version)
    held_out["gold"] = ["use::editing"]
    bad = [
        aggregate_row("no-text", None, [0.9, 0.1, 0.1, 0.1], version),
        aggregate_row("all-error", "music server", None, version),
        held_out,
    ]
    write_aggregate(config, good + bad)
    out = Path(student_dir(config))
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from a previous export")

    summary = run_distill_job(config)

    dev_rows = [r for r in good if is_dev(r["id"], config.student.dev_fraction)]
    assert summary.rows_read == len(good) + len(bad)
    assert (summary.rows_train, summary.rows_dev) == (len(good) - len(dev_rows), len(dev_rows))
    # epoch 0 is the linear probe: fine-tuning is kept only if it beats it on dev loss
    assert summary.epochs_run == 2 and summary.best_epoch in (0, 1, 2)
    assert np.isfinite(summary.best_dev_loss) and summary.docs_per_s > 0
    assert summary.threshold_source == "prevalence:4"  # no gold seed row in the dev split
    assert "thresholds (prevalence:4)" in summary.render() and str(out) in summary.render()

    files = {p.name for p in out.iterdir()}
    assert "stale.txt" not in files and "labelmill.json" in files
    assert any(name.endswith(".safetensors") for name in files)
    pickles = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
    assert not [p for p in out.rglob("*") if p.suffix in pickles]
    meta = json.loads((out / "labelmill.json").read_text())
    names = [name for name, _ in LABELS]
    assert len(meta["thresholds"]) == len(names)
    assert meta["lineage"]["training_rows"] == summary.rows_train
    assert meta["lineage"]["threshold_source"] == "prevalence:4"
    assert "dev_micro_f1" not in meta["metrics"]  # no gold dev rows to score on
    # the fast path was measured on the dev rows and its choice recorded
    runtime = meta["runtime"]
    assert runtime["name"] in ("torch-float32", "torch-int8", "onnx-float32", "onnx-int8")
    assert {e["prompt_hash"] for e in meta["lineage"]["aggregate"]["teacher_lineage"]} == {
        "h1",
        "h2",
    }

    model = load_pooled_classifier(out)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert model.config.problem_type == "multi_label_classification"
    assert [model.config.id2label[i] for i in range(len(names))] == names
    texts = [r["text"] for r in dev_rows]
    model.eval()
    with torch.no_grad():
        plain = np.stack(
            [
                torch.sigmoid(
                    model(
                        **tokenizer(t, truncation=True, max_length=32, return_tensors="pt")
                    ).logits
                )[0].numpy()
                for t in texts
            ]
        )
    scored = predict_proba(model, tokenizer, texts, batch_size=8, max_length=32)
    np.testing.assert_allclose(plain, scored, atol=1e-5)
    # The exported thresholds: the prevalence rule over the student's own rows (all of them:
    # fewer than the sample size), as many positives per label as its targets expect.
    own = predict_proba(model, tokenizer, [r["text"] for r in good], 8, 32)
    expected = prevalence_thresholds(own, np.mean([r["probs"] for r in good], axis=0))
    np.testing.assert_allclose(meta["thresholds"], expected, atol=1e-6)


def test_gold_seed_rows_train_on_their_gold() -> None:
    version = "v1"
    names = [name for name, _ in LABELS]
    rows = [aggregate_row(f"d{i}", "editor text", [0.9, 0.1, 0.1, 0.1], version) for i in range(3)]
    rows[0].update(gold=["works-with::audio", "not-in-taxonomy"], gold_seed=True)
    rows[1].update(gold=["use::editing"], gold_seed=False)  # held-out gold: never a target
    rows[2].update(probs=None, error="no teacher voted", gold=[], gold_seed=True)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    student = {"backbone": "x", "exclude_eval_gold": True, "dev_fraction": 0.01}
    out = prepare_batch(table, 4, version, student, names).to_pylist()
    assert out[0]["targets"] == [0.0, 0.0, 1.0, 0.0]  # gold replaces the aggregate's 0.9
    assert out[1]["targets"] is None and out[1]["split"] is None
    assert out[2]["targets"] == [0.0, 0.0, 0.0, 0.0]  # usable through its gold alone
    assert out[0]["weight"] == pytest.approx(1.0)


def test_distill_without_usable_rows_fails(ray_local, tiny_bert: Path, tmp_path: Path) -> None:
    config = make_config(tmp_path, tiny_bert)
    version = Taxonomy.from_config(config.taxonomy).version
    write_aggregate(config, [aggregate_row(f"e{i}", "text", None, version) for i in range(6)])
    with pytest.raises(DistillJobError, match="usable training rows"):
        run_distill_job(config)


def test_distill_rejects_other_taxonomy(ray_local, tiny_bert: Path, tmp_path: Path) -> None:
    config = make_config(tmp_path, tiny_bert)
    write_aggregate(config, learnable_rows(8, "0123456789abcdef"))
    with pytest.raises(DistillJobError, match="taxonomy version"):
        run_distill_job(config)


def test_distill_bad_backbone_is_a_config_error(tmp_path: Path) -> None:
    config = make_config(tmp_path, tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="not a local Hugging Face model"):
        run_distill_job(config)


def test_same_seed_same_student(ray_local, tiny_bert: Path, tmp_path: Path) -> None:
    """`student.seed` fixes everything: two runs on the same data give the same predictions."""
    predictions = []
    for run in ("first", "second"):
        config = make_config(tmp_path / run, tiny_bert, num_workers=1, seed=7, fast_path=False)
        version = Taxonomy.from_config(config.taxonomy).version
        write_aggregate(config, learnable_rows(40, version))
        run_distill_job(config)
        out = Path(student_dir(config))
        model, tokenizer = load_pooled_classifier(out), AutoTokenizer.from_pretrained(str(out))
        texts = [r["text"] for r in learnable_rows(12, version, seed=5)]
        meta = json.loads((out / "labelmill.json").read_text())
        predictions.append((predict_proba(model, tokenizer, texts, 4, 32), meta["thresholds"]))
    np.testing.assert_array_equal(predictions[0][0], predictions[1][0])
    assert predictions[0][1] == predictions[1][1]
