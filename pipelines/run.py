"""`labelmill run`: the whole loop in one command, on one Ray session, under one run directory.

label (bulk teachers) -> aggregate -> distill -> evaluate (when there is gold) -> campaign
rounds (when ``campaign.teachers`` is set). Each stage writes where it always does under
``output_uri`` (see the README's run directory); ``run_summary.json`` records every stage's
summary and wall time. With a console current (the CLI), each stage prints one line when it
starts, its progress, and its summary when it ends; at the end eval/report.html is rewritten
with the teachers' lineage from the vote files and the stage timings. A stage that fails
stops the run with the stage named; running again resumes (the label job skips documents with
votes, the campaign replays its ledger).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import fsspec

from labelmill.config import LabelmillConfig, LLMTeacherConfig, has_gold
from labelmill.console import current, format_duration, format_label_summary
from labelmill.console import stage as console_stage
from labelmill.errors import LabelmillError, with_context
from labelmill.jsonio import read_json, write_json
from labelmill.layout import eval_dir, run_summary_uri
from labelmill.pipelines.runtime import as_job_error, ray_session
from labelmill.report import render_report
from labelmill.status import vote_lineage


@dataclass
class RunSummary:
    """Stage by stage: name, seconds, and the stage's own rendered summary.

    ``live``: the stage summaries were already shown on the console as each stage ended, so
    :meth:`render` gives only the closing lines.
    """

    output_uri: str
    stages: list[dict[str, Any]] = field(default_factory=list)
    summary_uri: str = ""
    report_uri: str | None = None
    live: bool = False

    def render(self) -> str:
        lines = [] if self.live else [f"run: {self.output_uri}"]
        if not self.live:
            for stage in self.stages:
                lines.append(f"== {stage['stage']} ({stage['seconds']:.1f} s)")
                lines.append(stage["text"])
        total = sum(stage["seconds"] for stage in self.stages)
        times = ", ".join(f"{s['stage']} {format_duration(s['seconds'])}" for s in self.stages)
        lines.append(f"run done in {format_duration(total)} ({times})")
        if self.report_uri:
            lines.append(f"report: {self.report_uri}")
        lines.append(f"run summary: {self.summary_uri}")
        return "\n".join(lines)


def run_whole(config: LabelmillConfig) -> RunSummary:
    """Run every stage of ``config`` in order (see the module docstring)."""
    from labelmill.pipelines.aggregate import run_aggregate_job
    from labelmill.pipelines.campaign import run_campaign
    from labelmill.pipelines.distill import run_distill_job
    from labelmill.pipelines.evaluate import run_evaluate_job
    from labelmill.pipelines.label import run_label_job

    console = current()
    summary = RunSummary(
        output_uri=config.output_uri,
        summary_uri=run_summary_uri(config.output_uri),
        live=console is not None,
    )

    def stage(name: str, detail: str, fn: Any, render: Any) -> None:
        console_stage(name, detail)
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as error:  # our errors keep their kind (exit code), Ray's become JobError
            cause = as_job_error(error, f"stage {name!r}")
            if not isinstance(cause, LabelmillError):
                raise  # a bug: its own traceback
            raise with_context(cause, f"stage {name!r} failed") from error
        seconds = time.perf_counter() - started
        text = render(result)
        summary.stages.append({"stage": name, "seconds": seconds, "text": text})
        write_json(
            summary.summary_uri,
            {
                "output_uri": config.output_uri,
                "stages": summary.stages,
                "updated_at": datetime.now(UTC).isoformat(),
            },
        )
        if console is not None:
            console.summary(f"{text}\n({name}: {format_duration(seconds)})")

    bulk = [t.name for t in config.teachers if t.name not in config.campaign.teachers]
    with ray_session(config.ray):
        stage(
            "label",
            f"{len(bulk)} teacher(s) ({', '.join(bulk)}) over {config.corpus.uri}",
            lambda: run_label_job(config),
            format_label_summary,
        )
        stage(
            "aggregate",
            f"{config.aggregate.method} over the teachers' votes",
            lambda: run_aggregate_job(config),
            lambda s: s.render(),
        )
        stage(
            "distill",
            f"student {config.student.backbone} on Ray Train, "
            f"{config.student.num_workers} worker(s)",
            lambda: _distill(config, run_distill_job),
            lambda s: s.render(),
        )
        evaluated = has_gold(config.gold, config.corpus)
        if evaluated:
            stage(
                "evaluate",
                "every teacher, the aggregate and the student on held-out gold",
                lambda: run_evaluate_job(config),
                lambda s: s.render(),
            )
        if config.campaign.teachers:
            stage(
                "campaign",
                f"relabeling rounds with {', '.join(config.campaign.teachers)}",
                lambda: run_campaign(config, evaluated=evaluated),
                lambda s: s.render(),
            )
    summary.report_uri = finish_report(
        config, [{"stage": s["stage"], "seconds": s["seconds"]} for s in summary.stages]
    )
    return summary


def finish_report(config: LabelmillConfig, timings: list[dict[str, Any]] | None) -> str | None:
    """Rewrite eval/report.html with the teachers' lineage read from the vote files (rows,
    errors, tokens, cost) and the run's stage ``timings``; its URI, or None without one."""
    document = read_json(f"{eval_dir(config)}/metrics.json")
    if document is None:
        return None
    prices = teacher_prices(config.teachers)
    teachers = vote_lineage(config.output_uri, document["taxonomy"]["version"], prices)
    uri = f"{eval_dir(config)}/report.html"
    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "w", encoding="utf-8") as handle:
        handle.write(render_report(document, teachers=teachers or None, timings=timings))
    return uri


def _distill(config: LabelmillConfig, run_distill_job: Any) -> Any:
    """Distill; the job itself replaces a student exported by an earlier run."""
    return distill_with_progress(config, run_distill_job)


def distill_with_progress(config: LabelmillConfig, run_distill_job: Any) -> Any:
    """The distill job with the student's epochs and steps on the console's progress bar."""
    from labelmill.pipelines.progress import training_progress

    with training_progress("student"):
        return run_distill_job(config)


def teacher_prices(teachers: Sequence[Any]) -> dict[str, tuple[float, float]]:
    """(input, output) price per 1k tokens of each priced teacher (the LLM kinds); the others
    (embedding, rules) have no price, so the report shows no cost for them."""
    return {
        t.name: (t.price_per_1k_input, t.price_per_1k_output)
        for t in teachers
        if isinstance(t, LLMTeacherConfig)
    }
