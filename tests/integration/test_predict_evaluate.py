"""Batch prediction with an exported tiny student, and evaluation over a hand-written aggregate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import LABELS, export_tiny_student, job_config

from labelmill.config import LabelmillConfig
from labelmill.layout import aggregate_labels_uri, eval_dir, predictions_uri
from labelmill.pipelines.cli import main
from labelmill.taxonomy import Taxonomy

NAMES = [name for name, _ in LABELS]
THRESHOLDS = [0.3, 0.5, 0.5, 0.7]
LINEAGE = {"student_config": {"max_length": 16}}  # trained length: predict must cut texts there
BAD = {"d-null": None, "d-empty": "", "d-space": "   \n\t"}
WORDS = (
    "the editor text music audio sound image picture network server client daemon service game "
    "play convert format file view edit command line terminal graphical window library data tool"
)


def make_config(
    tmp: Path, student: Path, backbone: Path | None = None, **extra: object
) -> LabelmillConfig:
    backbone_setting = {} if backbone is None else {"backbone": str(backbone)}
    return job_config(
        {"uri": str(tmp / "corpus.parquet")},
        [],  # predict and evaluate read the student and the aggregate: no teacher runs
        tmp / "run",
        student={"output_dir": str(student), **backbone_setting},
        predict={"batch_size": 8, "concurrency": 1},
        ray={"light_stage_cpus": 0.25},
        **extra,
    )


def write_yaml(config: LabelmillConfig, path: Path) -> str:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def student_dir(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("student") / "student"
    return export_tiny_student(tiny_bert, out, THRESHOLDS, LINEAGE)


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, str | None]:
    rng = np.random.default_rng(0)
    texts: dict[str, str | None] = {
        f"d{i:02d}": " ".join(rng.choice(WORDS.split(), size=int(rng.integers(2, 40))))
        for i in range(27)
    }
    texts.update(BAD)
    table = pa.table({"id": list(texts), "text": pa.array(list(texts.values()), pa.string())})
    pq.write_table(table, tmp_path / "corpus.parquet")
    return texts


def reference_probs(student: Path, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoTokenizer

    from labelmill.student.model import load_pooled_classifier

    model = load_pooled_classifier(student)
    tokenizer = AutoTokenizer.from_pretrained(str(student))
    out = []
    with torch.no_grad():
        for text in texts:
            inputs = tokenizer(text, truncation=True, max_length=16, return_tensors="pt")
            out.append(torch.sigmoid(model(**inputs).logits)[0].numpy())
    return np.stack(out)


def test_predict_keeps_every_row(
    ray_local, tmp_path: Path, student_dir: Path, corpus, capsys: pytest.CaptureFixture[str]
) -> None:
    from labelmill.student.inference import model_version

    config = make_config(tmp_path, student_dir)
    path = write_yaml(config, tmp_path / "job.yaml")
    assert main(["predict", path, "--set", f"predict.model_dir={tmp_path / 'nope'}"]) == 2
    assert "no exported student" in capsys.readouterr().err
    stale = Path(predictions_uri(config)) / "part-stale.parquet"
    stale.parent.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["old"]}), stale)  # previous output is replaced

    assert main(["predict", path]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rows", "in"])
    counts = lines[header + 1].split()  # the summary table, after the console's stage line
    assert counts[:3] == ["30", "30", "3"]  # rows in, rows out, errors
    assert f"predictions: {predictions_uri(config)}" in out

    rows = pq.read_table(predictions_uri(config)).to_pylist()
    by_id = {row["id"]: row for row in rows}
    assert len(rows) == 30 and set(by_id) == set(corpus)
    assert {i for i, r in by_id.items() if r["error"] is not None} == set(BAD)
    assert all(by_id[i]["probs"] is None and by_id[i]["labels"] is None for i in BAD)
    version = model_version(student_dir)
    assert version.startswith(Taxonomy.from_config(config.taxonomy).version + "-")
    assert {r["model_version"] for r in rows} == {version} and version in out

    good = sorted(i for i in corpus if i not in BAD)
    got = np.array([by_id[i]["probs"] for i in good])
    expected = reference_probs(student_dir, [corpus[i] for i in good])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.std(axis=0).max() > 1e-3  # rows differ, so an order mix-up would show
    for i, p in zip(good, got, strict=True):
        hits = [n for n, q, t in zip(NAMES, p, THRESHOLDS, strict=True) if q >= t]
        assert by_id[i]["labels"] == hits


def write_aggregate(config: LabelmillConfig, texts: dict[str, str | None]) -> None:
    """Eighteen aggregate rows: ten held-out gold, seven gold seed, one without gold."""
    rng = np.random.default_rng(1)
    version = Taxonomy.from_config(config.taxonomy).version
    rows = []
    for n, doc_id in enumerate(["d00", "d01", "d02", "d03", "d04", "d05", "d06", "d07"]):
        rows.append((doc_id, texts[doc_id], n))
    rows += [("d-null", None, 8), ("d08", texts["d08"], 9), ("d09", texts["d09"], 10)]
    rows.append(("d10", texts["d10"], 11))
    rows += [(f"d{n - 1:02d}", texts[f"d{n - 1:02d}"], n) for n in range(12, 18)]  # more seed
    records = []
    for doc_id, text, n in rows:
        gold = [NAMES[k] for k in range(4) if rng.random() < 0.4]
        t1 = [float(name in gold) if rng.random() < 0.8 else 1.0 - (name in gold) for name in NAMES]
        t2 = [float(np.clip((name in gold) * 0.6 + rng.random() * 0.4, 0, 1)) for name in NAMES]
        if n in (1, 2):
            t2 = None  # abstained
        if n == 3:
            t2[0] = None  # a partly failed answer
        pairs = zip(t1, t2 or t1, strict=True)
        probs = None if n == 4 else [a if b is None else (a + b) / 2 for a, b in pairs]
        records.append(
            {
                "id": doc_id,
                "text": text,
                "gold": None if n == 11 else gold,
                "gold_seed": n == 10 or n >= 12,
                "teachers": ["t1", "t2"],
                "teacher_probs": [t1, t2],
                "probs": probs,
                "labels": []
                if probs is None
                else [m for m, p in zip(NAMES, probs, strict=True) if p >= 0.5],
                "agreement": 0.5,
                "n_teachers": 2,
                "method": "majority",
                "taxonomy_version": version,
                "lineage": json.dumps({"method": "majority"}),
                "error": "all teachers failed" if probs is None else None,
            }
        )
    out = Path(aggregate_labels_uri(config))
    out.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records[:6]), out / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(records[6:]), out / "part-1.parquet")
    (out.parent / "summary.json").write_text(json.dumps({"method": "majority"}), encoding="utf-8")


def test_evaluate_scores_every_system(
    ray_local,
    tmp_path: Path,
    student_dir: Path,
    tiny_bert: Path,
    corpus,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a gold seed: seed-only is trained on its 7 rows, on the (tiny) student backbone
    config = make_config(tmp_path, student_dir, tiny_bert, gold={"seed_fraction": 0.2})
    write_aggregate(config, corpus)
    assert main(["evaluate", write_yaml(config, tmp_path / "job.yaml")]) == 0
    table = capsys.readouterr().out
    names = ("t1", "t2", "seed-only", "aggregate", "student", "metrics.json")
    assert all(name in table for name in names)
    verdict = next(line for line in table.splitlines() if line.startswith("The loop"))
    assert verdict.startswith("The loop (its student, micro-F1 ") and "seed-only (" in verdict

    doc = json.loads(Path(eval_dir(config), "metrics.json").read_text(encoding="utf-8"))
    assert doc["format_version"] == 1 and doc["n_documents"] == 10
    systems = doc["systems"]
    assert {n: s["kind"] for n, s in systems.items()} == {
        "t1": "teacher",
        "t2": "teacher",
        "seed-only": "baseline",
        "aggregate": "aggregate",
        "student": "student",
    }
    assert {n: s["n_scored"] for n, s in systems.items()} == {
        "t1": 10,
        "t2": 7,
        "seed-only": 9,  # d-null has no text to embed
        "aggregate": 9,
        "student": 9,
    }
    assert doc["best_teacher"] in ("t1", "t2")  # never the baseline
    baseline = doc["lineage"]["seed_baseline"]
    assert baseline["seed_rows"] == 7 and baseline["backbone"] == str(tiny_bert)
    losses = baseline["C_log_loss"]  # C: the lowest out-of-fold log-loss on the seed
    assert baseline["C"] == float(min(losses, key=losses.get)) and len(losses) == 4
    assert len(systems["seed-only"]["thresholds"]) == len(NAMES)
    assert systems["student"]["thresholds"] == THRESHOLDS
    assert doc["lineage"]["aggregate"]["summary"] == {"method": "majority"}
    assert doc["lineage"]["student"]["model_version"].startswith(doc["taxonomy"]["version"])
    for entry in systems.values():
        assert 0.0 <= entry["micro_f1"] <= 1.0 and set(entry["per_label"]) == set(NAMES)
    page = Path(eval_dir(config), "report.html").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == 2
    assert f"<p class='verdict'><strong>{verdict}</strong></p>" in page
