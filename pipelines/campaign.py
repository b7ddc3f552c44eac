"""`labelmill campaign`: spend a hard budget relabeling the documents where it helps most.

Each round: select -> reserve each document's estimated cost in the ledger -> label the
admitted documents with the campaign teachers -> settle the ledger with the tokens the vote
rows record -> re-aggregate (bulk + campaign teachers) -> retrain the student -> evaluate.
Round 0 is the state before any relabeling. Everything goes under ``<output_uri>/campaign/``:
``ledger/`` (the durable budget ledger), ``state.json`` (rounds done, resume point),
``round-<r>/`` (admitted documents, label summary, student, metrics), ``report.json`` and
``report.html`` (quality against spend).

Selection (``campaign.strategy``, :mod:`labelmill.pipelines.campaign_select`): `targeted`
ranks the candidates by a weighted sum of the rank-normalized student uncertainty, teacher
disagreement and a confident-learning label-issue score (fold logistic regressions on sentence
embeddings vs the aggregate labels, fit on an id-hash sample), scored on the cluster, then picks
greedily with a diversity penalty on cosine similarity among the best candidates; `random` is
the baseline (a hash of each id). The driver holds only the picked documents, never the corpus.
Candidates: documents with text, not held-out gold
(the evaluation set) and not relabeled before. With a gold seed and the `rates` anchor, the
first round first relabels the seed documents, so that the campaign teacher's rates can be
estimated (they count against the budget like any other document).

Hard budget: a document is sent only after every campaign teacher's estimate (an upper bound,
see :mod:`labelmill.pipelines.campaign_labeler`) was reserved; the first document that does
not fit stops the campaign. Resume: the ledger replays its log; an open reservation whose vote
exists is settled at the vote's tokens, one without a vote at its estimate (it may have been
sent); the label job skips documents that already have a vote, so nothing is paid twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import fsspec

from labelmill.campaign_budget import admit, open_by_teacher, recover, settle
from labelmill.campaign_cost import DRY_RUN_SAMPLE, dry_run_cost
from labelmill.campaign_cost import docs_per_round as round_size
from labelmill.campaign_report import gain_per_budget, render_campaign_report
from labelmill.config import LabelmillConfig, has_gold
from labelmill.errors import ConfigError
from labelmill.jsonio import read_json, write_json
from labelmill.layout import aggregate_labels_uri, campaign_path, eval_dir, student_dir
from labelmill.ledger import Budget, BudgetLedger
from labelmill.pipelines.campaign_labeler import Labeler, TeacherLabeler, vote_spend
from labelmill.pipelines.campaign_select import CampaignView, rank_candidates
from labelmill.pipelines.runtime import ray_session


@dataclass
class CampaignSummary:
    """What a campaign did (or, with dry_run, would cost)."""

    rounds: list[dict[str, Any]] = field(default_factory=list)
    ledger: dict[str, Any] = field(default_factory=dict)
    report_uri: str = ""
    html_uri: str = ""
    stopped: str | None = None
    dry_run: dict[str, Any] | None = None

    def render(self) -> str:
        if self.dry_run is not None:
            d = self.dry_run
            lines = [
                f"campaign dry run: {d['documents']} documents over {d['rounds']} rounds "
                f"({d['candidates']} candidates); nothing was sent",
                f"  {'teacher':<20}{'tokens (est.)':>16}{'money (est.)':>14}",
            ]
            for name, t in d["teachers"].items():
                lines.append(f"  {name:<20}{t['tokens']:>16,}{t['cost']:>14.4f}")
            lines.append(f"  {'total':<20}{d['tokens']:>16,}{d['cost']:>14.4f}")
            lines.append(f"  budget: max_tokens {d['max_tokens']}, max_cost {d['max_cost']}")
            return "\n".join(lines)
        lines = [f"{'round':>5}{'selected':>10}{'tokens':>12}{'cost':>10}{'student F1':>12}"]
        for r in self.rounds:
            f1 = r.get("student_micro_f1")
            lines.append(
                f"{r['round']:>5}{r['docs_selected']:>10}{r['tokens_spent']:>12}"
                f"{r['cost_spent']:>10.4f}{'-' if f1 is None else f'{f1:.4f}':>12}"
            )
        lines.append(f"stopped: {self.stopped or 'all rounds done'}")
        lines.append(f"report: {self.html_uri}")
        return "\n".join(lines)


def campaign_uri(config: LabelmillConfig, *parts: str) -> str:
    return campaign_path(config.output_uri, *parts)


def make_budget(config: LabelmillConfig) -> Budget:
    b = config.campaign.budget
    return Budget(
        max_tokens=b.max_tokens,
        max_cost=b.max_cost,
        per_teacher={n: (t.max_tokens, t.max_cost) for n, t in b.per_teacher.items()},
    )


def docs_per_round(config: LabelmillConfig, n_docs: int) -> int:
    c = config.campaign
    return round_size(c.docs_per_round, c.fraction_per_round, n_docs)


def _bulk_teachers(config: LabelmillConfig, view: CampaignView) -> list[str]:
    return [t for t in view.teachers if t not in config.campaign.teachers]


def _metrics(config: LabelmillConfig) -> dict[str, Any]:
    doc = read_json(f"{eval_dir(config)}/metrics.json") or {}
    systems = doc.get("systems", {})
    out: dict[str, Any] = {}
    for system in ("student", "aggregate"):
        m = systems.get(system) or {}
        out[f"{system}_micro_f1"] = m.get("micro_f1")
        out[f"{system}_macro_f1"] = m.get("macro_f1")
    return out


def _round_config(config: LabelmillConfig, r: int, teachers: list[str]) -> LabelmillConfig:
    """The config of round r: its own student directory, aggregation over ``teachers``."""
    student = config.student.model_copy(
        update={"output_dir": campaign_uri(config, f"round-{r}", "student")}
    )
    aggregate = config.aggregate.model_copy(update={"teachers": teachers})
    predict = config.predict.model_copy(
        update={
            "model_dir": student.output_dir,
            "output_uri": campaign_uri(config, f"round-{r}", "predictions"),
        }
    )
    return config.model_copy(
        update={"student": student, "aggregate": aggregate, "predict": predict}
    )


def _retrain_and_evaluate(config: LabelmillConfig) -> dict[str, Any]:
    from labelmill.pipelines.aggregate import run_aggregate_job
    from labelmill.pipelines.distill import run_distill_job
    from labelmill.pipelines.evaluate import run_evaluate_job

    run_aggregate_job(config)
    run_distill_job(config)  # replaces the student of an earlier round itself
    if not has_gold(config.gold, config.corpus):
        return {}
    run_evaluate_job(config)
    return _metrics(config)


def _recover(ledger: BudgetLedger, config: LabelmillConfig, pending: set[str]) -> int:
    """Settle reservations a killed campaign left open (:func:`labelmill.campaign_budget.recover`
    over the votes found for the open keys); returns how many were settled."""
    spend = {t: vote_spend(config, t, ids) for t, ids in open_by_teacher(ledger).items()}
    return recover(ledger, spend, pending)


def _admit(
    ledger: BudgetLedger, labeler: Labeler, ids: list[str], texts: list[str]
) -> tuple[list[int], bool]:
    """Reserve documents in order until one does not fit -> (admitted positions, stopped)."""
    return admit(ledger, labeler.teachers, ids, labeler.estimate(ids, texts))


def _settle(
    ledger: BudgetLedger, config: LabelmillConfig, labeler: Labeler, ids: list[str]
) -> None:
    """Settle the open keys of ``ids`` at their votes' tokens (release those never sent)."""
    spend = {t: vote_spend(config, t, set(ids)) for t in labeler.teachers}
    settle(ledger, labeler.teachers, ids, spend)


def dry_run(config: LabelmillConfig, labeler: Labeler, view: CampaignView) -> dict[str, Any]:
    """Estimated cost of the planned documents (:func:`labelmill.campaign_cost.dry_run_cost`):
    the candidates are counted on the cluster, only the price sample reaches the driver."""
    c = config.campaign
    candidates = view.count_candidates(relabeled=set())
    planned = min(candidates, c.rounds * docs_per_round(config, view.n_docs))
    ids, texts = view.first_candidates(set(), min(candidates, DRY_RUN_SAMPLE))
    estimates = labeler.estimate(ids, texts)
    return {
        "rounds": c.rounds,
        "candidates": candidates,
        "documents": planned,
        **dry_run_cost(estimates, len(ids), planned),
        "max_tokens": c.budget.max_tokens,
        "max_cost": c.budget.max_cost,
    }


def run_campaign(
    config: LabelmillConfig,
    labeler: Labeler | None = None,
    dry: bool = False,
    evaluated: bool = False,
) -> CampaignSummary:
    """Run (or with ``dry``, price) the campaign of ``config`` (see the module docstring).

    ``evaluated``: the caller has just evaluated the current student (``labelmill run``), so
    round 0 takes its figures from that evaluation instead of running it again.
    """
    c = config.campaign
    if not c.teachers:
        raise ConfigError("campaign.teachers is empty: name the teachers that relabel")
    labeler = labeler or TeacherLabeler(config)
    summary = CampaignSummary(
        report_uri=campaign_uri(config, "report.json"),
        html_uri=campaign_uri(config, "report.html"),
    )
    with ray_session(config.ray):
        view = CampaignView(config, aggregate_labels_uri(config))
        if dry:
            summary.dry_run = dry_run(config, labeler, view)
            return summary
        bulk = _bulk_teachers(config, view)
        ledger = BudgetLedger(campaign_uri(config, "ledger"), make_budget(config))
        state = read_json(campaign_uri(config, "state.json")) or {"rounds": []}
        pending = state.get("pending")
        _recover(ledger, config, set(pending["ids"]) if pending else set())
        rounds: list[dict[str, Any]] = state["rounds"]
        if not rounds:
            from labelmill.pipelines.evaluate import run_evaluate_job

            metrics = {}
            # without gold the report has spend, no quality
            if has_gold(config.gold, config.corpus):
                if not evaluated:
                    run_evaluate_job(config)
                metrics = _metrics(config)
            rounds.append(_record(0, c.strategy, 0, 0, ledger, metrics, None))
            write_json(campaign_uri(config, "state.json"), state)
        current = student_dir(config) if len(rounds) == 1 else rounds[-1]["student"]
        relabeled = view.relabeled()  # bounded by the budget
        stopped = rounds[-1].get("stopped")
        for r in range(len(rounds), c.rounds + 1):
            if stopped:
                break
            started = time.perf_counter()
            round_config = _round_config(config, r, bulk + list(c.teachers))
            view = CampaignView(config, aggregate_labels_uri(config))  # re-aggregated last round
            if pending and pending["round"] == r:  # resume the interrupted round as admitted
                admitted, stopped = list(pending["ids"]), pending["stopped"]
            else:
                k = docs_per_round(config, view.n_docs)
                ids = rank_candidates(config, view, relabeled, current, r, k)
                if r == 1:  # the seed first, within the round's count unless it is larger
                    seeds = view.seed_first(relabeled)
                    ids = seeds + [i for i in ids if i not in set(seeds)]
                    ids = ids[: max(k, len(seeds))]
                positions, hit_cap = _admit(ledger, labeler, ids, view.texts(ids))
                admitted = [ids[p] for p in positions]
                stopped = "budget" if hit_cap else None
                state["pending"] = {"round": r, "ids": admitted, "stopped": stopped}
                write_json(campaign_uri(config, "state.json"), state)
            if admitted:
                labeler.label(admitted, view.texts(admitted), campaign_uri(config, f"round-{r}"))
                _settle(ledger, config, labeler, admitted)
                relabeled |= set(admitted)
            else:
                stopped = stopped or "no candidates"
            metrics: dict[str, Any] = {}
            if admitted and c.retrain:
                metrics = _retrain_and_evaluate(round_config)
                current = student_dir(round_config)
                _copy_metrics(round_config, campaign_uri(config, f"round-{r}", "metrics.json"))
            record = _record(r, c.strategy, len(admitted), len(relabeled), ledger, metrics, stopped)
            record["student"] = current
            record["seconds"] = round(time.perf_counter() - started, 1)
            rounds.append(record)
            state.pop("pending", None)
            pending = None
            write_json(campaign_uri(config, "state.json"), state)
            _write_report(config, rounds, ledger)
        summary.rounds = rounds
        summary.ledger = ledger.summary()
        summary.stopped = stopped
        _write_report(config, rounds, ledger)
    return summary


def _record(
    r: int,
    strategy: str,
    selected: int,
    relabeled: int,
    ledger: BudgetLedger,
    metrics: dict[str, Any],
    stopped: str | None,
) -> dict[str, Any]:
    tokens, cost = ledger.spent()
    return {
        "round": r,
        "strategy": strategy,
        "docs_selected": selected,
        "docs_relabeled_total": relabeled,
        "tokens_spent": int(tokens),
        "cost_spent": float(cost),
        **{
            k: metrics.get(k)
            for k in (
                "student_micro_f1",
                "student_macro_f1",
                "aggregate_micro_f1",
                "aggregate_macro_f1",
            )
        },
        "stopped": stopped,
    }


def _copy_metrics(config: LabelmillConfig, target: str) -> None:
    doc = read_json(f"{eval_dir(config)}/metrics.json")
    if doc is not None:
        write_json(target, doc)


def _write_report(
    config: LabelmillConfig, rounds: list[dict[str, Any]], ledger: BudgetLedger
) -> None:
    ledger_summary = ledger.summary()
    payload: dict[str, Any] = {"rounds": rounds, "ledger": ledger_summary}
    try:
        payload["gain_per_budget"] = gain_per_budget(rounds)
    except ValueError:
        payload["gain_per_budget"] = None
    write_json(campaign_uri(config, "report.json"), payload)
    fs, path = fsspec.core.url_to_fs(campaign_uri(config, "report.html"))
    with fs.open(path, "w") as handle:
        handle.write(render_campaign_report(rounds, ledger_summary, "labelmill campaign"))
