"""Label quality: teachers, aggregation and the distilled student against held-out debtags gold.

    python bench/quality.py [--simulated] [--real] [--out DIR] [--seed-fraction 0.0]
                            [--seed-salts gold-seed,...] [--student-epochs 2]
                            [--student-max-length 64] [--student-workers 1]
                            [--llm-docs 500] [--score-docs 100] [--set key=value ...]

Data: data/bench/debtags-quality.parquet only (3,500 Debian packages that carry at least one of
the 12 public labels, as in the data README's TF-IDF reference: 3,000 `train`, 500 `gold`).
Only the 500 gold rows count as gold: the corpus written for the jobs has null tags on the train
rows. Scores are over
the held-out gold (gold minus the gold seed, `--seed-fraction`, 0 by default).

  --simulated  three simulated teachers (sim-a, sim-b, sim-c; B and C make correlated errors)
               vote on all 3,500 documents -> majority and Dawid-Skene aggregates -> the student
               is distilled from the Dawid-Skene aggregate (held-out gold excluded) -> evaluate.
  --real       the all-MiniLM-L6-v2 embedding teacher on all documents, SmolLM2-135M `set` mode
               on the first --llm-docs gold documents and `score` mode on the first --score-docs
               (abstaining elsewhere) -> Dawid-Skene -> student -> evaluate.
With neither flag, both sections run. ``--seed-salts a,b,c`` repeats the real section (and the
simulated one) on one seed split per salt (``gold.seed_salt``) and prints each figure's mean
and spread over the splits; LLM votes do not depend on the seed and are labeled once. Every
system is scored at per-label thresholds chosen by one rule on the seed (see
labelmill/aggregation/thresholds.py); the real section also prints each teacher cut at 0.5.
Teacher settings, the taxonomy and prompts come from
--config (configs/demo.yaml); --set overrides apply to that tree. Each stage's wall time is
printed; the supervised TF-IDF reference line is quoted from the data README, not re-measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "bench" / "debtags-quality.parquet"
REFERENCE = (
    "reference (supervised upper bound, quoted from ../shared/data/README.md, not re-measured): "
    "TF-IDF + one-vs-rest logistic regression trained on 6,523 gold-labeled packages: "
    "micro-F1 0.78, macro-F1 0.70"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--simulated", action="store_true", help="run the simulated section")
    parser.add_argument("--real", action="store_true", help="run the real-teacher section")
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "quality"))
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--seed-fraction", type=float, default=0.0)
    parser.add_argument(
        "--seed-salts", default="gold-seed", help="comma-separated gold.seed_salt values"
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the real run dir's votes (LLM votes resume)"
    )
    parser.add_argument("--sim-seed", type=int, default=0, help="seed of the simulated votes")
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--student-max-length", type=int, default=64)
    parser.add_argument("--student-batch-size", type=int, default=32)
    parser.add_argument("--student-workers", type=int, default=1)
    parser.add_argument("--llm-docs", type=int, default=500, help="gold docs the LLM labels")
    parser.add_argument("--score-docs", type=int, default=100, help="of those, in score mode")
    args = parser.parse_args(argv)
    if not args.simulated and not args.real:
        args.simulated = args.real = True
    if not 0.0 <= args.seed_fraction < 1.0:
        parser.error(f"--seed-fraction must lie in [0, 1), got {args.seed_fraction}")
    if args.score_docs > args.llm_docs or args.llm_docs < 0 or args.score_docs < 0:
        parser.error(
            f"need 0 <= --score-docs <= --llm-docs, got {args.score_docs}, {args.llm_docs}"
        )
    return args


def timed(stage: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` and print its wall time."""
    started = time.perf_counter()
    result = fn()
    print(f"  [{time.perf_counter() - started:7.1f} s] {stage}", flush=True)
    return result


def write_corpora(out: Path, n_llm: int) -> tuple[pa.Table, str, str]:
    """The sample as a job corpus (train rows' tags null) and the first n_llm gold rows (id, text).

    -> (sample table, corpus path, LLM-documents path)
    """
    if not SAMPLE.is_file():
        raise SystemExit(f"{SAMPLE} is missing: run scripts/make_samples.py")
    table = pq.read_table(SAMPLE)
    is_gold = np.array([s == "gold" for s in table["split"].to_pylist()])
    tags = [t if g else None for t, g in zip(table["tags"].to_pylist(), is_gold, strict=True)]
    corpus = table.select(["id", "text"]).append_column(
        "tags", pa.array(tags, pa.list_(pa.string()))
    )
    out.mkdir(parents=True, exist_ok=True)
    corpus_path, llm_path = out / "corpus.parquet", out / "llm-docs.parquet"
    pq.write_table(corpus, corpus_path)
    pq.write_table(table.filter(pa.array(is_gold)).select(["id", "text"]).slice(0, n_llm), llm_path)
    return table, str(corpus_path), str(llm_path)


class Trees:
    """Builds validated job configs from the base YAML tree plus the benchmark's settings."""

    def __init__(self, args: argparse.Namespace) -> None:
        from labelmill.config import apply_override

        self.base = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
        for assignment in args.overrides:
            apply_override(self.base, assignment)
        self.args = args
        self.salt = "gold-seed"

    def config(self, corpus: dict, teachers: list[dict], output: Path, **sections: Any) -> Any:
        """A validated LabelmillConfig (gold seed, student knobs and extra sections applied)."""
        from labelmill.config import parse_config

        a = self.args
        tree = json.loads(json.dumps(self.base))  # deep copy
        tree.update(corpus=corpus, teachers=teachers, output_uri=str(output))
        tree.setdefault("gold", {})["seed_fraction"] = a.seed_fraction
        tree["gold"]["seed_salt"] = self.salt
        tree.setdefault("student", {}).update(
            epochs=a.student_epochs,
            max_length=a.student_max_length,
            batch_size=a.student_batch_size,
            num_workers=a.student_workers,
            exclude_eval_gold=True,  # the student is scored on documents it never saw
        )
        for key, value in sections.items():
            tree.setdefault(key, {}).update(value)
        return parse_config(tree)

    def llm_teacher(self, name: str, mode: str) -> dict:
        """The base config's first LLM teacher (SmolLM2 in the demo), renamed, in ``mode``."""
        llms = [t for t in self.base["teachers"] if t.get("kind") in ("vllm", "openai")]
        if not llms:
            raise SystemExit(f"{self.args.config} configures no vllm/openai teacher")
        return {**llms[0], "name": name, "mode": mode}

    def embedding_teacher(self) -> dict:
        """The base config's first embedding teacher, else all-MiniLM-L6-v2 on CPU."""
        for teacher in self.base["teachers"]:
            if teacher.get("kind") == "embedding":
                return dict(teacher)
        return {
            "name": "minilm-zero-shot",
            "kind": "embedding",
            "model": "all-minilm-l6-v2",
            "accelerator": "cpu",
            "batch_size": 64,
        }


def read_document(config: Any) -> dict[str, Any]:
    """<output_uri>/eval/metrics.json."""
    from labelmill.layout import eval_dir

    return json.loads(Path(eval_dir(config), "metrics.json").read_text(encoding="utf-8"))


def read_systems(config: Any) -> dict[str, dict]:
    """``systems`` of <output_uri>/eval/metrics.json."""
    return read_document(config)["systems"]


def fmt(value: Any) -> str:
    """A metric for the table: 3 decimals, '-' when missing."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.3f}"


def print_table(title: str, rows: list[tuple[str, dict]]) -> None:
    """One row per system: kind, coverage and the headline metrics."""
    print(f"\n{title}")
    head = ("system", "kind", "coverage", "micro-F1", "macro-F1", "ECE", "ROC-AUC")
    print(f"| {head[0]:<24} | {head[1]:<9} | " + " | ".join(f"{h:>8}" for h in head[2:]) + " |")
    print("|" + "|".join(["-" * 26, "-" * 11] + ["-" * 10] * 5) + "|")
    for name, m in rows:
        cells = [fmt(m.get(k)) for k in ("coverage", "micro_f1", "macro_f1", "ece", "mean_roc_auc")]
        kind = str(m.get("kind", "-"))
        print(f"| {name:<24} | {kind:<9} | " + " | ".join(f"{c:>8}" for c in cells) + " |")


def by_kind(systems: dict[str, dict], kind: str) -> list[tuple[str, dict]]:
    """The (name, metrics) of the systems of one kind, in name order."""
    return [(n, m) for n, m in sorted(systems.items()) if m.get("kind") == kind]


def verdict(a: float | None, b: float | None) -> str:
    """'yes'/'no' for a >= b on micro-F1 ('n/a' when one is missing)."""
    if a is None or b is None:
        return "n/a"
    return "yes" if a >= b else "no"


def aggregate_distill_evaluate(config: Any, label: str) -> None:
    """aggregate -> distill -> evaluate on one run directory, each stage timed."""
    from labelmill.pipelines.aggregate import run_aggregate_job
    from labelmill.pipelines.distill import run_distill_job
    from labelmill.pipelines.evaluate import run_evaluate_job

    timed(f"{label}: aggregate ({config.aggregate.method})", lambda: run_aggregate_job(config))
    timed(f"{label}: distill the student", lambda: run_distill_job(config))
    timed(f"{label}: evaluate", lambda: run_evaluate_job(config))


def run_simulated(
    trees: Trees, table: pa.Table, corpus: dict, out: Path
) -> dict[str, float | None]:
    """Simulated votes -> majority and Dawid-Skene -> student (from DS) -> one table.

    -> micro-F1 of majority, dawid-skene and student (for the summary over seed splits)."""
    from simulate import default_scenario, simulate_votes, write_simulated_votes

    from labelmill.pipelines.aggregate import run_aggregate_job
    from labelmill.pipelines.evaluate import run_evaluate_job
    from labelmill.taxonomy import Taxonomy

    print("\n== simulated teachers (SIMULATION: votes drawn from configured rates) ==")
    for name in ("sim-majority", "sim-ds"):
        shutil.rmtree(out / name, ignore_errors=True)  # the student export needs a fresh dir
    names = [label["name"] for label in trees.base["taxonomy"]["labels"]]
    scenario = default_scenario(len(names), seed=trees.args.sim_seed)
    for t, name in enumerate(scenario.names):
        print(
            f"  {name}: mean sensitivity {scenario.sensitivity[t].mean():.2f}, "
            f"mean specificity {scenario.specificity[t].mean():.2f} (per-label jitter)"
        )
    pairs = ", ".join(
        f"{scenario.names[a]}~{scenario.names[b]}" for a, b in scenario.correlated_pairs
    )
    print(f"  correlated errors: {pairs} (rho {scenario.rho})")
    print("  gold for the simulation = the sample's debtags (incomplete, like all real labels)")
    gold = np.array([[int(n in tags) for n in names] for tags in table["tags"].to_pylist()])
    votes = simulate_votes(
        gold,
        scenario.sensitivity,
        scenario.specificity,
        scenario.correlated_pairs,
        scenario.rho,
        seed=trees.args.sim_seed,
    )
    ids = table["id"].to_pylist()
    teachers: list[dict] = []  # simulated votes only: aggregation needs no configured teacher
    agg = {"teachers": list(scenario.names)}
    majority = trees.config(
        corpus, teachers, out / "sim-majority", aggregate=agg | {"method": "majority"}
    )
    ds = trees.config(corpus, teachers, out / "sim-ds", aggregate=agg | {"method": "dawid_skene"})
    version = Taxonomy.from_config(ds.taxonomy).version
    for config in (majority, ds):
        write_simulated_votes(config.output_uri, ids, votes, scenario.names, version, names)
    timed("majority: aggregate", lambda: run_aggregate_job(majority))
    timed("majority: evaluate", lambda: run_evaluate_job(majority))
    aggregate_distill_evaluate(ds, "dawid-skene")

    maj, dss = read_systems(majority), read_systems(ds)
    teachers_rows = [(n, m) for n, m in by_kind(dss, "teacher") if n.startswith("sim-")]
    maj_rows = [("majority (aggregate)", m) for _, m in by_kind(maj, "aggregate")]
    ds_rows = [("dawid-skene (aggregate)", m) for _, m in by_kind(dss, "aggregate")]
    st_rows = [("student (from DS)", m) for _, m in by_kind(dss, "student")]
    print_table(
        f"simulated teachers (SIMULATION), {table.num_rows} docs, scored on held-out gold",
        teachers_rows + maj_rows + ds_rows + st_rows,
    )

    def micro(rows: list[tuple[str, dict]]) -> float | None:
        return rows[0][1].get("micro_f1") if rows else None

    print(
        f"targets: Dawid-Skene >= majority: {verdict(micro(ds_rows), micro(maj_rows))}; "
        f"student >= aggregate - 0.01: "
        f"{verdict(micro(st_rows), None if micro(ds_rows) is None else micro(ds_rows) - 0.01)}"
        " (micro-F1)"
    )
    return {"majority": micro(maj_rows), "dawid-skene": micro(ds_rows), "student": micro(st_rows)}


def f1_at_half(config: Any) -> dict[str, float]:
    """Micro-F1 of each teacher cut at 0.5 on the held-out gold of the aggregate labels."""
    from labelmill.evaluation import gold_matrix, probs_matrix
    from labelmill.layout import aggregate_labels_uri
    from labelmill.metrics import precision_recall_f1

    names = [label.name for label in config.taxonomy.labels]
    table = pq.read_table(aggregate_labels_uri(config))
    rows = [r for r in table.to_pylist() if r["gold"] is not None and not r["gold_seed"]]
    y = gold_matrix([r["gold"] for r in rows], names)
    out = {}
    for t, teacher in enumerate(rows[0]["teachers"] if rows else []):
        p = probs_matrix([r["teacher_probs"][t] for r in rows], len(names))
        scored = ~np.isnan(p).any(axis=1)
        pred = (p[scored] >= 0.5).astype(float)
        out[teacher] = precision_recall_f1(y[scored], pred)["micro_f1"]
    return out


def run_real(
    trees: Trees, corpus: dict, llm_path: str, out: Path, fresh: bool
) -> dict[str, float | None]:
    """Embedding teacher (all docs) + SmolLM2 set/score (gold subset) -> DS -> student.

    ``fresh``: start from an empty run dir (later seed splits resume the LLM votes, which do
    not depend on the seed). -> micro-F1 of the best teacher, aggregate and student."""
    from labelmill.pipelines.label import run_label_job

    a = trees.args
    print(f"\n== real teachers (seed split {trees.salt!r}) ==")
    run = out / "real"
    if fresh:  # votes resume: a stale run dir would mix settings
        shutil.rmtree(run, ignore_errors=True)
    embed = trees.embedding_teacher()
    llm_corpus = {"uri": llm_path, "id_column": "id", "text_column": "text"}
    jobs = [(embed["name"], embed, corpus, None)]  # gold column kept: seed calibration
    if a.llm_docs:
        jobs.append(
            ("smollm2-set", trees.llm_teacher("smollm2-set", "set"), llm_corpus, a.llm_docs)
        )
    if a.score_docs:
        score = trees.llm_teacher("smollm2-score", "score")
        jobs.append(("smollm2-score", score, llm_corpus, a.score_docs))
    for name, teacher, job_corpus, limit in jobs:
        job = trees.config(job_corpus | {"limit": limit}, [teacher], run)
        summary = timed(
            f"label: {name} ({limit or 'all'} docs)", lambda job=job: run_label_job(job)
        )
        stats = summary.teachers[0]
        print(
            f"    {stats.rows_labeled} docs, {stats.docs_per_s:.2f} docs/s, "
            f"{stats.rows_with_errors} error rows"
        )
        # Each label job rewrites label_summary.json: keep one per teacher (student_speed reads it).
        shutil.copy(run / "label_summary.json", run / f"label_summary-{name}.json")
    config = trees.config(
        corpus, [teacher for _, teacher, _, _ in jobs], run, aggregate={"method": "dawid_skene"}
    )
    aggregate_distill_evaluate(config, "real")
    systems = read_systems(config)
    rows = (
        by_kind(systems, "teacher")
        + [("dawid-skene (aggregate)", m) for _, m in by_kind(systems, "aggregate")]
        + [("student (from DS)", m) for _, m in by_kind(systems, "student")]
    )
    print_table(
        f"real teachers: embedding on all docs, SmolLM2 set on {a.llm_docs} and score on "
        f"{a.score_docs} gold docs (abstaining elsewhere); scored on held-out gold",
        rows,
    )
    half = f1_at_half(config)
    print("  teachers cut at 0.5 (micro-F1): " + ", ".join(f"{k} {v:.3f}" for k, v in half.items()))
    shutil.copy(Path(config.output_uri, "eval", "metrics.json"), run / f"metrics-{trees.salt}.json")
    best_name = read_document(config).get("best_teacher")
    best = systems[best_name]["micro_f1"] if best_name else None
    agg = [m.get("micro_f1") for _, m in by_kind(systems, "aggregate")]
    student = [m.get("micro_f1") for _, m in by_kind(systems, "student")]
    return {
        "best teacher": best,
        "best teacher @0.5": max(half.values(), default=None),
        "aggregate": agg[0] if agg else None,
        "student": student[0] if student else None,
    }


def summarize(title: str, runs: list[dict[str, float | None]]) -> None:
    """Mean and spread (min..max) of each figure over the seed splits, and the verdicts."""
    if not runs:
        return
    print(f"\n{title}: micro-F1 over {len(runs)} seed split(s), mean [min..max]")
    means: dict[str, float] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r.get(key) is not None]
        if not values:
            continue
        means[key] = float(np.mean(values))
        print(f"  {key:<20} {means[key]:.3f} [{min(values):.3f}..{max(values):.3f}]")
    pairs = [("aggregate", "best teacher", 0.0), ("student", "best teacher", 0.0)]
    if "majority" in means:
        pairs = [("dawid-skene", "majority", 0.0), ("student", "dawid-skene", -0.01)]
    for a, b, margin in pairs:
        if a in means and b in means:
            print(f"  target {a} >= {b}{margin:+.2f}: {verdict(means[a], means[b] + margin)}")


def main(argv: list[str] | None = None) -> None:
    """Run the requested sections and print their tables, then the reference line."""
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/simulate.py
    from labelmill.config import RayConfig
    from labelmill.pipelines.runtime import ray_session

    out = Path(args.out).resolve()
    trees = Trees(args)
    table, corpus_path, llm_path = write_corpora(out, args.llm_docs)
    corpus = {"uri": corpus_path, "id_column": "id", "text_column": "text", "gold_column": "tags"}
    gold = sum(s == "gold" for s in table["split"].to_pylist())
    print(
        f"sample: {SAMPLE.relative_to(REPO)}: {table.num_rows} docs, {gold} gold "
        f"(seed fraction {args.seed_fraction}); run dirs under {out}"
    )
    ray = RayConfig.model_validate(trees.base.get("ray") or {})
    started = time.perf_counter()
    salts = [s.strip() for s in args.seed_salts.split(",") if s.strip()]
    simulated, real = [], []
    with ray_session(ray):  # one embedded Ray for every stage
        for i, salt in enumerate(salts):
            trees.salt = salt
            if args.simulated:
                simulated.append(run_simulated(trees, table, corpus, out))
            if args.real:
                real.append(
                    run_real(trees, corpus, llm_path, out, fresh=i == 0 and not args.resume)
                )
    summarize("simulated", simulated)
    summarize("real", real)
    print(f"\n{REFERENCE}")
    print(f"total wall time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
