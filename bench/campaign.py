"""Targeted vs random relabeling under the same hard budget (SIMULATION teachers).

    python bench/campaign.py [--out DIR] [--relabel-fraction 0.15] [--rounds 1]
                             [--student-epochs 2] [--student-max-length 64] [--seed-fraction 0.2]

Data: data/bench/debtags-quality.parquet (3,500 labeled Debian packages: 3,000 `train`, 500
`gold`; only the gold rows' tags are visible to the jobs). Bulk labelers: the simulated
teachers of the quality benchmark (sim-a, sim-b, sim-c with a correlated pair; bench/simulate.py)
vote on every document; Dawid-Skene (`rates` anchor on a 0.2 gold seed) -> student -> evaluate
is round 0, shared by both runs. Campaign teacher: `sim-strong`, simulated from the sample's
tags with sensitivity 0.95 / specificity 0.98 at 10x the bulk price: a document costs
(prompt tokens = characters / 4 + 60) + 20 output tokens. Budget: the money that relabels
--relabel-fraction of the corpus at the mean document cost. One campaign per strategy
(targeted, random) from a copy of round 0, with the same budget. Prints the student's
micro/macro-F1 on held-out gold before and after, the spend, and the F1 gain per unit of money
for each strategy, and their ratio (target: targeted >= 1.5x random; spend never above the cap).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from quality import SAMPLE, Trees, timed, write_corpora  # noqa: E402
from simulate import default_scenario, simulate_votes, write_simulated_votes  # noqa: E402

BULK_PRICE = 0.5  # money per 1k tokens of the bulk teachers (simulation)
STRONG_PRICE = 10 * BULK_PRICE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "campaign"))
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--relabel-fraction", type=float, default=0.15)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed-fraction", type=float, default=0.2)
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--student-max-length", type=int, default=64)
    parser.add_argument("--student-batch-size", type=int, default=32)
    parser.add_argument("--student-workers", type=int, default=1)
    parser.add_argument("--sim-seed", type=int, default=0)
    parser.add_argument("--docs", type=int, default=0, help="first N sample rows (0: all)")
    return parser.parse_args(argv)


def doc_cost(text: str) -> tuple[int, int]:
    """(prompt tokens, output tokens) of one simulated strong-teacher request."""
    return len(text) // 4 + 60, 20


class SimulatedStrongTeacher:
    """The campaign labeler: votes drawn from the sample's tags at high sensitivity/specificity."""

    def __init__(self, config: Any, truth: dict[str, list[str]], seed: int) -> None:
        self.config = config
        self.truth = truth
        self.names = [label.name for label in config.taxonomy.labels]
        self.teachers = ["sim-strong"]
        self.rng_seed = seed

    def estimate(
        self, ids: list[str], texts: list[str]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        costs = np.array([doc_cost(t) for t in texts], dtype=np.int64).reshape(len(texts), 2)
        tokens = costs.sum(axis=1)
        money = (costs[:, 0] * STRONG_PRICE + costs[:, 1] * STRONG_PRICE) / 1000.0
        return {"sim-strong": (tokens, money)}

    def label(self, ids: list[str], texts: list[str], round_dir: str) -> None:
        from labelmill.pipelines.votes_io import write_vote_part
        from labelmill.records import vote_schema
        from labelmill.taxonomy import Taxonomy

        gold = np.array([[int(n in self.truth[i]) for n in self.names] for i in ids])
        k = len(self.names)
        votes = simulate_votes(
            gold, np.full((1, k), 0.95), np.full((1, k), 0.98), seed=self.rng_seed + len(ids)
        )[:, 0, :]
        version = Taxonomy.from_config(self.config.taxonomy).version
        costs = [doc_cost(t) for t in texts]
        n = len(ids)
        table = pa.table(
            {
                "id": ids,
                "teacher": ["sim-strong"] * n,
                "model": ["simulation"] * n,
                "mode": ["simulated"] * n,
                "labels": [[self.names[j] for j in np.flatnonzero(row)] for row in votes],
                "probs": pa.nulls(n, pa.list_(pa.float64())),
                "raw_output": pa.nulls(n, pa.string()),
                "error": pa.nulls(n, pa.string()),
                "truncated": [False] * n,
                "prompt_tokens": [c[0] for c in costs],
                "output_tokens": [c[1] for c in costs],
                "prompt_hash": ["simulation"] * n,
                "taxonomy_version": [version] * n,
                "created_at": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
            },
            schema=vote_schema(),
        )
        write_vote_part(table, self.config.output_uri, "sim-strong")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from labelmill.config import RayConfig
    from labelmill.pipelines.aggregate import run_aggregate_job
    from labelmill.pipelines.campaign import run_campaign
    from labelmill.pipelines.distill import run_distill_job
    from labelmill.pipelines.evaluate import run_evaluate_job
    from labelmill.pipelines.runtime import ray_session
    from labelmill.taxonomy import Taxonomy

    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    trees = Trees(args)
    table, corpus_path, _ = write_corpora(out, 0)
    if args.docs:  # a smaller run (smoke test): the first N rows of the sample
        table = table.slice(0, args.docs)
        pq.write_table(pq.read_table(corpus_path).slice(0, args.docs), corpus_path)
    truth = dict(zip(table["id"].to_pylist(), table["tags"].to_pylist(), strict=True))
    corpus = {"uri": corpus_path, "id_column": "id", "text_column": "text", "gold_column": "tags"}
    strong = {
        "name": "sim-strong",
        "kind": "openai",
        "model": "simulation",
        "base_url": "http://127.0.0.1:9/v1",
        "price_per_1k_input": STRONG_PRICE,
        "price_per_1k_output": STRONG_PRICE,
    }
    texts = [t or "" for t in table["text"].to_pylist()]
    mean_cost = float(np.mean([sum(doc_cost(t)) * STRONG_PRICE / 1000.0 for t in texts]))
    n_relabel = round(args.relabel_fraction * table.num_rows)
    max_cost = round(n_relabel * mean_cost, 4)
    print(f"sample: {SAMPLE.relative_to(REPO)}: {table.num_rows} docs; SIMULATION teachers")
    print(
        f"budget: max_cost {max_cost} = {n_relabel} docs x mean cost {mean_cost:.5f} "
        f"(strong teacher at {STRONG_PRICE}/1k tokens, 10x the bulk price)"
    )

    def config_for(run: Path, strategy: str) -> Any:
        return trees.config(
            corpus,
            [strong],
            run,
            aggregate={"method": "dawid_skene", "teachers": ["sim-a", "sim-b", "sim-c"]},
            campaign={
                "teachers": ["sim-strong"],
                "rounds": args.rounds,
                "docs_per_round": int(np.ceil(n_relabel / args.rounds)),
                "strategy": strategy,
                "budget": {"max_cost": max_cost},
            },
        )

    base = config_for(out / "round0", "targeted")
    names = [label.name for label in base.taxonomy.labels]
    scenario = default_scenario(len(names), seed=args.sim_seed)
    gold = np.array([[int(n in (truth[i] or [])) for n in names] for i in truth])
    votes = simulate_votes(
        gold,
        scenario.sensitivity,
        scenario.specificity,
        scenario.correlated_pairs,
        scenario.rho,
        seed=args.sim_seed,
    )
    version = Taxonomy.from_config(base.taxonomy).version
    results: dict[str, Any] = {}
    started = time.perf_counter()
    with ray_session(RayConfig.model_validate(trees.base.get("ray") or {})):
        write_simulated_votes(base.output_uri, list(truth), votes, scenario.names, version, names)
        timed("round 0: aggregate", lambda: run_aggregate_job(base))
        timed("round 0: distill", lambda: run_distill_job(base))
        timed("round 0: evaluate", lambda: run_evaluate_job(base))
        for strategy in ("targeted", "random"):
            run = out / strategy
            shutil.copytree(out / "round0", run)
            config = config_for(run, strategy)
            labeler = SimulatedStrongTeacher(config, truth, seed=args.sim_seed + 1)
            summary = timed(
                f"{strategy}: campaign", lambda c=config, lb=labeler: run_campaign(c, lb)
            )
            results[strategy] = summary
    print()
    print(
        f"| {'strategy':<9} | {'relabeled':>9} | {'spent':>8} | {'cap':>8} | {'micro 0':>8} | "
        f"{'micro':>8} | {'macro 0':>8} | {'macro':>8} | {'gain/money':>10} |"
    )
    print("|" + "|".join("-" * w for w in (11, 11, 10, 10, 10, 10, 10, 10, 12)) + "|")
    gains = {}
    for strategy, summary in results.items():
        first, last = summary.rounds[0], summary.rounds[-1]
        spent = last["cost_spent"]
        gain = (last["student_micro_f1"] - first["student_micro_f1"]) / spent if spent else 0.0
        gains[strategy] = gain
        print(
            f"| {strategy:<9} | {last['docs_relabeled_total']:>9} | {spent:>8.3f} | "
            f"{max_cost:>8.3f} | {first['student_micro_f1']:>8.3f} | "
            f"{last['student_micro_f1']:>8.3f} | {first['student_macro_f1']:>8.3f} | "
            f"{last['student_macro_f1']:>8.3f} | {gain:>10.2e} |"
        )
        assert spent <= max_cost + 1e-9, f"{strategy} spent {spent} > cap {max_cost}"
    if gains.get("random"):
        print(
            f"\ntargeted gain / random gain: {gains['targeted'] / gains['random']:.2f} "
            "(target >= 1.5; micro-F1 gain per unit of money)"
        )
    else:
        print(f"\ngains: {json.dumps(gains)} (random gain 0: no ratio)")
    print(f"total wall time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
