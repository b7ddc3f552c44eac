"""Scale benchmark: does the driver's memory stay flat as the corpus grows 10x?

    python bench/scale.py --small 100000 --large 1000000 [--predict] [--skip-aggregate]
                          [--object-store-gb 2.5] [--workdir out/bench/scale] [--num-cpus N]

For each size the script writes a synthetic corpus (debtags package descriptions from
``../shared/data/debtags-bookworm.parquet`` sampled with replacement, unique ids, Parquet parts
of 50,000 rows), then runs, in a fresh subprocess with its own embedded local Ray:
``labelmill label`` (one `rules` teacher) -> ``aggregate`` -> optionally ``predict`` (a tiny
random student, ``--predict``) -> ``label`` again over the fully labeled corpus (the resume:
nothing to do). Each size runs in its own process so the driver's peak RSS (``ru_maxrss`` of
that process, read by the process itself at the end) is measured the same way for both.

Prints one line per stage and size, and as its last line exactly
``scale: driver_rss_ratio=<large/small> label_docs_per_s=<large run>``.
The bench needs the debtags file; labelmill at run time does not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
DEBTAGS = REPO.parent / "shared" / "data" / "debtags-bookworm.parquet"
PART_ROWS = 50_000

# A rules teacher over a few debtags facets (the YAML shape of issue 12). Keyword rules are the
# cheap deterministic teacher a scale test needs; their quality is not what is measured here.
LABELS = {
    "use::editing": ["\\bedit(or|ors|ing)?\\b"],
    "works-with::text": ["\\btext\\b", "\\bplain[- ]text\\b"],
    "works-with::audio": ["\\baudio\\b", "\\bsound\\b", "\\bmusic\\b"],
    "network::server": ["\\bserver\\b", "\\bdaemon\\b"],
    "devel::library": ["\\blibrary\\b", "\\blibraries\\b"],
    "interface::commandline": ["\\bcommand[- ]line\\b", "\\bcli\\b"],
}


def make_corpus(n: int, target: Path, seed: int = 0) -> None:
    """``n`` rows (id, text) sampled with replacement from the debtags texts, as Parquet parts."""
    if target.exists() and (target / "_DONE").exists():
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    texts = pq.read_table(DEBTAGS, columns=["text"])["text"]
    rng = np.random.default_rng(seed)
    for start in range(0, n, PART_ROWS):
        rows = min(PART_ROWS, n - start)
        picks = pa.array(rng.integers(0, len(texts), size=rows))
        ids = pa.array([f"doc-{i:09d}" for i in range(start, start + rows)], pa.string())
        table = pa.table({"id": ids, "text": texts.take(picks)})
        pq.write_table(table, target / f"part-{start // PART_ROWS:05d}.parquet")
    (target / "_DONE").write_text(str(n))


def job_tree(corpus: Path, output: Path, student: Path | None) -> dict:
    """The labelmill config of one size (rules teacher, majority aggregate)."""
    tree: dict = {
        "corpus": {"uri": str(corpus), "format": "parquet", "id_column": "id"},
        "taxonomy": {
            "labels": [{"name": name, "description": name.split("::")[1]} for name in LABELS]
        },
        "teachers": [{"name": "keywords", "kind": "rules", "rules": LABELS}],
        "aggregate": {"method": "majority"},
        "output_uri": str(output),
    }
    if student is not None:
        tree["predict"] = {"model_dir": str(student), "batch_size": 256}
    return tree


def build_tiny_student(target: Path, texts: list[str]) -> Path:
    """A tiny random BERT student (1 layer, hidden 32) over LABELS, WordPiece from ``texts``."""
    import re

    from transformers import AutoTokenizer

    from labelmill.models import build_tiny_bert
    from labelmill.student.export import export_student
    from labelmill.student.model import build_student
    from labelmill.taxonomy import Taxonomy

    if (target / "labelmill.json").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    words: dict[str, int] = {}
    for text in texts:
        for word in re.findall(r"[a-z]+", text.lower()):
            words[word] = words.get(word, 0) + 1
    common = sorted(words, key=words.__getitem__, reverse=True)[:2000]
    backbone = build_tiny_bert(target.parent / "tiny-bert", common)
    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    names = list(LABELS)
    model = build_student(str(backbone), len(names), dict(enumerate(names)))
    taxonomy = Taxonomy(tuple(names), tuple(n.split("::")[1] for n in names))
    export_student(
        model,
        tokenizer,
        target,
        names,
        taxonomy.version,
        [0.5] * len(names),
        {"bench": "scale"},
        {"micro_f1": 0.0},
        taxonomy_descriptions=list(taxonomy.descriptions),
    )
    return target


def run_one(args: argparse.Namespace) -> None:
    """One size in this process (the measured driver); prints one JSON line of figures."""
    import ray

    from labelmill.config import parse_config
    from labelmill.pipelines.aggregate import run_aggregate_job
    from labelmill.pipelines.label import run_label_job

    student = Path(args.student) if args.student else None
    config = parse_config(job_tree(Path(args.corpus), Path(args.output), student))
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(
        address="local",
        num_cpus=args.num_cpus,
        object_store_memory=int(args.object_store_gb * 2**30),
        include_dashboard=False,
        log_to_driver=False,
    )
    figures: dict = {"docs": args.one}
    started = time.perf_counter()
    label = run_label_job(config).teachers[0]
    figures["label_s"] = time.perf_counter() - started
    assert label.rows_labeled == args.one, label
    if not args.skip_aggregate:
        started = time.perf_counter()
        aggregate = run_aggregate_job(config)
        figures["aggregate_s"] = time.perf_counter() - started
        assert aggregate.n_docs == args.one, aggregate
    if student is not None:
        from labelmill.pipelines.predict import run_predict_job

        started = time.perf_counter()
        run_predict_job(config)
        figures["predict_s"] = time.perf_counter() - started
    started = time.perf_counter()
    resumed = run_label_job(config).teachers[0]
    figures["resume_s"] = time.perf_counter() - started
    assert (resumed.rows_resumed, resumed.rows_labeled) == (args.one, 0), resumed
    ray.shutdown()
    # Linux reports ru_maxrss in KiB: the peak resident set of this (driver) process.
    figures["driver_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("FIGURES " + json.dumps(figures), flush=True)


def measure(n: int, args: argparse.Namespace, student: Path | None) -> dict:
    """Make the corpus of size ``n``, run it in a fresh driver process, return its figures."""
    work = Path(args.workdir)
    corpus, output = work / f"corpus-{n}", work / f"run-{n}"
    make_corpus(n, corpus)
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable,
        __file__,
        "--one",
        str(n),
        "--corpus",
        str(corpus),
        "--output",
        str(output),
        "--object-store-gb",
        str(args.object_store_gb),
        "--num-cpus",
        str(args.num_cpus),
    ]
    if student is not None:
        command += ["--student", str(student)]
    if args.skip_aggregate:
        command.append("--skip-aggregate")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("FIGURES ")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
        raise SystemExit(f"size {n}: the run failed (exit {done.returncode})")
    figures = json.loads(lines[-1][len("FIGURES ") :])
    for stage in ("label", "aggregate", "predict"):
        if f"{stage}_s" in figures:
            seconds = figures[f"{stage}_s"]
            print(f"{n:>9} docs  {stage:<9} {seconds:8.1f} s  {n / seconds:10,.0f} docs/s")
    print(f"{n:>9} docs  resume    {figures['resume_s']:8.1f} s  (fully labeled: nothing to do)")
    print(f"{n:>9} docs  driver peak RSS {figures['driver_peak_rss_mb']:,.0f} MB")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--predict", action="store_true", help="also batch-predict (tiny student)")
    parser.add_argument(
        "--skip-aggregate",
        action="store_true",
        help="label and resume only (skip the aggregate stage)",
    )
    parser.add_argument("--workdir", default=str(REPO / "out" / "bench" / "scale"))
    parser.add_argument("--object-store-gb", type=float, default=2.5)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the measured child
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--student", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        run_one(args)
        return
    student = None
    if args.predict:
        texts = pq.read_table(DEBTAGS, columns=["text"])["text"].to_pylist()
        student = build_tiny_student(Path(args.workdir) / "student", texts)
    small = measure(args.small, args, student)
    large = measure(args.large, args, student)
    ratio = large["driver_peak_rss_mb"] / small["driver_peak_rss_mb"]
    rate = args.large / large["label_s"]
    print(f"scale: driver_rss_ratio={ratio:.2f} label_docs_per_s={rate:.0f}")


if __name__ == "__main__":
    main()
