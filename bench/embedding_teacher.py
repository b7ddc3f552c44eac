"""Embedding teacher quality and speed on the debtags bench set, through `labelmill label`.

    python bench/embedding_teacher.py [--docs 500] [--seed-fraction 0.2] [--cpus-per-replica 2]
                                      [--batch-size 32] [--model all-minilm-l6-v2]

On data/bench/debtags-500.parquet (gold: `tags` within the 12-label taxonomy of
configs/demo.yaml), runs the embedding teacher with `run_label_job` on one embedded local Ray:

  1. label text = description, calibration `prior` (no gold used);
  2. label text = "name: description", calibration `prior` (which label text ranks better);
  3. label text = description, calibration `platt` on a gold seed (--seed-fraction).

Prints, per run, the mean per-label ROC-AUC (over labels with both classes), micro/macro F1 at
p >= 0.5, the expected calibration error (10 bins) and docs/s of the teacher run (encoder
start, scoring pass, calibration and writes included). The quality figures are measured on
the documents outside the gold seed of run 3, for every run, so they compare.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "bench" / "debtags-500.parquet"


def bench_config(args: argparse.Namespace, output: Path, label_text: str, calibration: str) -> Any:
    """A label-job config: the demo taxonomy, one embedding teacher on CPU."""
    from labelmill.config import parse_config

    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    teacher = {
        "name": f"embed-{label_text}-{calibration}",
        "kind": "embedding",
        "model": args.model,
        "accelerator": "cpu",
        "batch_size": args.batch_size,
        "cpus_per_replica": args.cpus_per_replica,
        "embedding": {"calibration": calibration, "label_text": label_text},
    }
    tree = {
        "corpus": {"uri": str(CORPUS), "gold_column": "tags", "limit": args.docs},
        "taxonomy": demo["taxonomy"],
        "teachers": [teacher],
        "output_uri": str(output),
        "gold": {"seed_fraction": args.seed_fraction if calibration == "platt" else 0.0},
    }
    return parse_config(tree)


def read_run(output: Path, teacher: str, names: list[str]) -> tuple[list[str], np.ndarray]:
    """(ids, probs (N, K) with NaN rows for errors) of one teacher's votes."""
    from labelmill.pipelines.votes_io import read_votes

    rows = read_votes(str(output), teacher, ["id", "probs"]).to_pylist()
    probs = np.array(
        [r["probs"] if r["probs"] is not None else [np.nan] * len(names) for r in rows]
    )
    return [r["id"] for r in rows], probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--seed-fraction", type=float, default=0.2)
    parser.add_argument("--cpus-per-replica", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="all-minilm-l6-v2")
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from labelmill.layout import is_gold_seed
    from labelmill.metrics import (
        expected_calibration_error,
        precision_recall_f1,
        roc_auc_per_label,
    )
    from labelmill.pipelines.label import run_label_job
    from labelmill.pipelines.runtime import ray_session

    table = pq.read_table(CORPUS).slice(0, args.docs).to_pylist()
    runs = [("description", "prior"), ("name_and_description", "prior"), ("description", "platt")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        first = bench_config(args, Path(tmp), *runs[0])
        names = [label.name for label in first.taxonomy.labels]
        gold = {r["id"]: [int(n in r["tags"]) for n in names] for r in table}
        held_out = {i for i in gold if not is_gold_seed(i, args.seed_fraction)}
        with ray_session(first.ray):
            for label_text, calibration in runs:
                config = bench_config(
                    args, Path(tmp) / f"{label_text}-{calibration}", label_text, calibration
                )
                stats = run_label_job(config).teachers[0]
                ids, probs = read_run(Path(config.output_uri), stats.teacher, names)
                keep = [k for k, i in enumerate(ids) if i in held_out]
                y = np.array([gold[ids[k]] for k in keep], dtype=np.float64)
                p = probs[keep]
                auc = roc_auc_per_label(y, p)
                f1 = precision_recall_f1(y, np.where(np.isnan(p), np.nan, (p >= 0.5) * 1.0))
                ece = expected_calibration_error(y, p)
                results.append((label_text, calibration, auc, f1, ece, stats))
    print(
        f"docs={args.docs} held-out={len(held_out)} seed_fraction={args.seed_fraction} "
        f"model={args.model} cpus_per_replica={args.cpus_per_replica} "
        f"batch_size={args.batch_size}"
    )
    header = f"{'label text':22} {'calibration':11} {'mean AUC':>8} {'micro F1':>8} "
    print(header + f"{'macro F1':>8} {'ECE':>6} {'docs/s':>7} {'errors':>6}")
    for label_text, calibration, auc, f1, ece, stats in results:
        print(
            f"{label_text:22} {calibration:11} {np.nanmean(auc):8.3f} {f1['micro_f1']:8.3f} "
            f"{f1['macro_f1']:8.3f} {ece:6.3f} {stats.docs_per_s:7.1f} "
            f"{stats.rows_with_errors:6d}"
        )
    for label_text, _, auc, *_ in results[:2]:
        per_label = " ".join(
            f"{n.split('::')[-1]}={a:.2f}" for n, a in zip(names, auc, strict=True)
        )
        print(f"AUC per label ({label_text}): {per_label}")


if __name__ == "__main__":
    main()
