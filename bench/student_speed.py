"""Student inference speed vs the teacher's, on the same documents.

    python bench/student_speed.py [--model-dir DIR | --train-tiny] [--docs 500]
                                  [--teacher-summary FILE] [--teacher-name smollm2-set]
                                  [--batch-size 64] [--out DIR] [--set key=value ...]

Documents: the first --docs gold rows of data/bench/debtags-quality.parquet (the documents the
quality benchmark's SmolLM2 teachers label). The student is --model-dir, else the one
bench/quality.py exported (out/bench/quality/real/student or .../sim-ds/student), or with
--train-tiny a quick one distilled here from simulated votes (1 epoch). Measured:

  (a) `run_predict_job`: batch prediction on an embedded local Ray (actor start included);
  (b) in-process `predict_sorted` (no Ray; model load excluded, printed apart), through the
      CPU fast path the artifact records (labelmill.json `runtime`; batch predict uses it too)
      and through plain float32 torch, side by side;
  (c) the teacher: `docs_per_s` of a label summary (--teacher-summary, by default the one
      bench/quality.py --real kept for smollm2-set), else the SmolLM2 `set` teacher is run here
      through `run_label_job` on the same documents (engine start included).

Prints docs/s of each and the ratios student/teacher (the target is >= 100x on CPU).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SAMPLE = REPO / "data" / "bench" / "debtags-quality.parquet"
QUALITY_OUT = REPO / "out" / "bench" / "quality"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default=None, help="an exported student directory")
    parser.add_argument("--train-tiny", action="store_true", help="distill a quick student here")
    parser.add_argument("--docs", type=int, default=500, help="first N gold documents")
    parser.add_argument("--teacher-summary", default=None, help="a label_summary*.json file")
    parser.add_argument("--teacher-name", default="smollm2-set")
    parser.add_argument("--batch-size", type=int, default=64, help="student inference batch")
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "student-speed"))
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args(argv)
    if args.model_dir and args.train_tiny:
        parser.error("give --model-dir or --train-tiny, not both")
    if not 1 <= args.docs <= 500:
        parser.error(f"--docs must lie in [1, 500] (the sample's gold rows), got {args.docs}")
    return args


def write_docs(out: Path, n_docs: int) -> tuple[str, list[str]]:
    """The first n_docs gold rows (id, text) as a corpus file. -> (path, texts)"""
    table = pq.read_table(SAMPLE)
    gold = table.filter(pc.equal(table["split"], "gold")).select(["id", "text"]).slice(0, n_docs)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "docs.parquet"
    pq.write_table(gold, path)
    return str(path), gold["text"].to_pylist()


def train_tiny(out: Path) -> str:
    """Distill a quick student (1 epoch, 64 tokens) from simulated votes; -> its directory."""
    import quality  # bench/quality.py: the same simulated votes and config tree

    args = quality.parse_args(
        ["--simulated", "--out", str(out), "--student-epochs", "1", "--student-max-length", "64"]
    )
    from simulate import default_scenario, simulate_votes, write_simulated_votes

    from labelmill.pipelines.aggregate import run_aggregate_job
    from labelmill.pipelines.distill import run_distill_job
    from labelmill.taxonomy import Taxonomy

    trees = quality.Trees(args)
    table, corpus_path, _ = quality.write_corpora(out, 0)
    corpus = {"uri": corpus_path, "id_column": "id", "text_column": "text", "gold_column": "tags"}
    names = [label["name"] for label in trees.base["taxonomy"]["labels"]]
    scenario = default_scenario(len(names))
    gold = [[int(n in tags) for n in names] for tags in table["tags"].to_pylist()]
    votes = simulate_votes(
        gold, scenario.sensitivity, scenario.specificity, scenario.correlated_pairs, scenario.rho
    )
    run = out / "tiny"
    shutil.rmtree(run, ignore_errors=True)
    teachers: list[dict] = []  # simulated votes only: no teacher runs
    config = trees.config(
        corpus, teachers, run, aggregate={"method": "majority", "teachers": list(scenario.names)}
    )
    version = Taxonomy.from_config(config.taxonomy).version
    ids = table["id"].to_pylist()
    write_simulated_votes(config.output_uri, ids, votes, scenario.names, version, names)
    quality.timed(
        "tiny student: aggregate (majority, simulated votes)", lambda: run_aggregate_job(config)
    )
    summary = quality.timed("tiny student: distill (1 epoch)", lambda: run_distill_job(config))
    return str(summary.output_dir)


def default_model_dir() -> str:
    """The student bench/quality.py exported (real run first, then simulated), else the one
    bench/bench_student.py builds."""
    paths = [QUALITY_OUT / run / "student" for run in ("real", "sim-ds")]
    for path in [*paths, REPO / "out" / "bench" / "student"]:
        if (path / "labelmill.json").is_file():
            return str(path)
    raise SystemExit(
        f"no exported student under {QUALITY_OUT}: run bench/quality.py, or pass --model-dir "
        "or --train-tiny"
    )


def student_max_length(model_dir: str) -> int:
    """The max_length the student was trained with (its exported lineage), else 128."""
    from labelmill.student.export import load_student_metadata

    lineage = load_student_metadata(model_dir).get("lineage") or {}
    return int((lineage.get("student_config") or {}).get("max_length") or 128)


def in_process(
    model_dir: str, texts: list[str], max_length: int, batch: int, runtime: str = "auto"
) -> tuple[float, float, str]:
    """(load seconds, predict seconds, runtime) of the student in this process, without Ray."""
    from labelmill.student.inference import load_student, predict_sorted

    started = time.perf_counter()
    student = load_student(model_dir, max_length, "cpu", runtime=runtime)
    loaded = time.perf_counter()
    predict_sorted(student, texts, batch)
    return loaded - started, time.perf_counter() - loaded, student.runtime


def teacher_rate(
    args: argparse.Namespace, trees: Any, docs_path: str, out: Path
) -> tuple[float, int, str]:
    """(docs/s, docs, where from) of the teacher on the documents."""
    summary_path = args.teacher_summary
    default = QUALITY_OUT / "real" / f"label_summary-{args.teacher_name}.json"
    if summary_path is None and default.is_file():
        summary_path = str(default)
    if summary_path is not None:
        payload = json.loads(Path(summary_path).read_text(encoding="utf-8"))
        for entry in payload["teachers"]:
            if entry["teacher"] == args.teacher_name:
                return float(entry["docs_per_s"]), int(entry["rows_labeled"]), summary_path
        raise SystemExit(f"no teacher {args.teacher_name!r} in {summary_path}")
    from labelmill.pipelines.label import run_label_job

    teacher = trees.llm_teacher(args.teacher_name, "set")
    run = out / "teacher"
    shutil.rmtree(run, ignore_errors=True)
    corpus = {"uri": docs_path, "id_column": "id", "text_column": "text"}
    stats = run_label_job(trees.config(corpus, [teacher], run)).teachers[0]
    return stats.docs_per_s, stats.rows_labeled, f"run here ({run})"


def main(argv: list[str] | None = None) -> None:
    """Measure and print student and teacher docs/s and their ratios."""
    args = parse_args(argv)
    sys.path.insert(0, str(BENCH))  # bench/quality.py and bench/simulate.py
    import quality

    from labelmill.config import RayConfig
    from labelmill.pipelines.predict import run_predict_job
    from labelmill.pipelines.runtime import ray_session

    out = Path(args.out).resolve()
    sets = [item for override in args.overrides for item in ("--set", override)]
    trees = quality.Trees(quality.parse_args(["--config", args.config, *sets]))
    docs_path, texts = write_docs(out, args.docs)
    with ray_session(RayConfig.model_validate(trees.base.get("ray") or {})):
        model_dir = train_tiny(out) if args.train_tiny else args.model_dir or default_model_dir()
        max_length = student_max_length(model_dir)
        print(f"student: {model_dir} (max_length {max_length}); {len(texts)} gold documents")
        corpus = {"uri": docs_path, "id_column": "id", "text_column": "text"}
        config = trees.config(
            corpus,
            [trees.llm_teacher(args.teacher_name, "set")],
            out / "predict",
            student={"max_length": max_length},
            predict={"model_dir": model_dir, "batch_size": args.batch_size},
        )
        predicted = run_predict_job(config)
        load_s, predict_s, runtime = in_process(model_dir, texts, max_length, args.batch_size)
        _, float_s, _ = in_process(model_dir, texts, max_length, args.batch_size, "torch-float32")
        teacher_dps, teacher_docs, source = teacher_rate(args, trees, docs_path, out)
    in_proc = len(texts) / predict_s
    print(
        f"(a) student, run_predict_job on Ray: {predicted.docs_per_s:9.1f} docs/s "
        f"({predicted.seconds:.1f} s, actor start included)"
    )
    print(
        f"(b) student, in process (no Ray):    {in_proc:9.1f} docs/s "
        f"({predict_s:.1f} s; model load {load_s:.1f} s not counted; runtime {runtime})"
    )
    print(
        f"    the same, float32 torch:         {len(texts) / float_s:9.1f} docs/s "
        f"(fast path / float32: {float_s / predict_s:.2f}x)"
    )
    print(
        f"(c) teacher {args.teacher_name}: {teacher_dps:.2f} docs/s on {teacher_docs} docs "
        f"({source})"
    )
    for name, rate in (("(a)", predicted.docs_per_s), ("(b)", in_proc)):
        ratio = rate / teacher_dps if teacher_dps > 0 else float("nan")
        met = "met" if ratio >= 100 else "not met"
        print(f"ratio {name} student / teacher: {ratio:.0f}x (target >= 100x on CPU: {met})")


if __name__ == "__main__":
    main()
