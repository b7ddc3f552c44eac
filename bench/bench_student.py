"""A realistic student for the serving benchmarks, built here without the labeling loop.

    python bench/bench_student.py [--out out/bench/student] [--train-docs 1200] [--epochs 1]
                                  [--max-length 128] [--dev-docs 300]

MiniLM (the bundled all-MiniLM-L6-v2) with a head over the demo taxonomy, fine-tuned on the
debtags tags of the quality sample's train split (gold tags stand in for aggregated teacher
labels: this student is for speed figures, not for quality ones), then exported with
``export_student(..., fast_path_texts=dev rows, fast_path_labels=their tags)``, so the CPU fast
path is chosen and recorded at export exactly as a distilled student's would be.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "bench" / "debtags-quality.parquet"
DEMO = REPO / "configs" / "demo.yaml"


def demo_labels() -> list[tuple[str, str]]:
    tree = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    return [(label["name"], label["description"]) for label in tree["taxonomy"]["labels"]]


def split_rows(split: str, limit: int) -> tuple[list[str], list[list[str]]]:
    table = pq.read_table(SAMPLE)
    rows = table.filter(pc.equal(table["split"], split)).slice(0, limit)
    return rows["text"].to_pylist(), rows["tags"].to_pylist()


def build(out: Path, train_docs: int, epochs: int, max_length: int, dev_docs: int) -> Path:
    """Fine-tune and export the benchmark student to ``out``; -> out."""
    import torch
    from transformers import AutoTokenizer

    from labelmill.models import packaged_minilm
    from labelmill.student.export import export_student
    from labelmill.student.model import build_student, tokenize_batch
    from labelmill.taxonomy import Taxonomy

    labels = demo_labels()
    names = [n for n, _ in labels]
    taxonomy = Taxonomy(tuple(names), tuple(d for _, d in labels))
    texts, tags = split_rows("train", train_docs)
    targets = torch.tensor([[float(n in t) for n in names] for t in tags])
    torch.manual_seed(0)
    backbone = str(packaged_minilm())
    model = build_student(backbone, len(names), dict(enumerate(names)))
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    started = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(texts))
        for start in range(0, len(texts), 16):
            index = order[start : start + 16]
            inputs = tokenize_batch(tokenizer, [texts[i] for i in index], max_length)
            loss = loss_fn(model(**inputs).logits, targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    print(
        f"trained {epochs} epoch(s) on {len(texts)} docs in {time.perf_counter() - started:.0f} s"
    )
    dev_texts, dev_tags = split_rows("gold", dev_docs)
    dev_labels = [[float(n in t) for n in names] for t in dev_tags]
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    export_student(
        model,
        tokenizer,
        out,
        names,
        taxonomy.version,
        [0.4] * len(names),
        {"student_config": {"max_length": max_length}, "built_by": "bench/bench_student.py"},
        {},
        taxonomy_descriptions=list(taxonomy.descriptions),
        fast_path_texts=dev_texts,
        fast_path_labels=dev_labels,
    )
    print(f"exported with the fast path measured in {time.perf_counter() - started:.0f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "student"))
    parser.add_argument("--train-docs", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--dev-docs", type=int, default=300)
    args = parser.parse_args()
    out = build(Path(args.out), args.train_docs, args.epochs, args.max_length, args.dev_docs)
    runtime = json.loads((out / "labelmill.json").read_text(encoding="utf-8"))["runtime"]
    print(json.dumps(runtime, indent=2))


if __name__ == "__main__":
    main()
