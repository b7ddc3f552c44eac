"""`labelmill run`: the whole loop in one command, on one Ray session, under one run directory.

label (bulk teachers) -> aggregate -> distill -> evaluate (when there is gold) -> campaign
rounds (when ``campaign.teachers`` is set). Each stage writes where it always does under
``output_uri`` (see the README's run directory); ``run_summary.json`` records every stage's
summary and wall time. A stage that fails stops the run with the stage named; running again
resumes (the label job skips documents with votes, the campaign replays its ledger).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labelmill.config import LabelmillConfig
from labelmill.layout import run_path, student_dir
from pipelines.campaign_labeler import write_json
from pipelines.gold import has_gold
from pipelines.runtime import ray_session


@dataclass
class RunSummary:
    """Stage by stage: name, seconds, and the stage's own rendered summary."""

    output_uri: str
    stages: list[dict[str, Any]] = field(default_factory=list)
    summary_uri: str = ""

    def render(self) -> str:
        lines = [f"run: {self.output_uri}"]
        for stage in self.stages:
            lines.append(f"== {stage['stage']} ({stage['seconds']:.1f} s)")
            lines.append(stage["text"])
        lines.append(f"run summary: {self.summary_uri}")
        return "\n".join(lines)


def run_whole(config: LabelmillConfig) -> RunSummary:
    """Run every stage of ``config`` in order (see the module docstring)."""
    from pipelines.aggregate import run_aggregate_job
    from pipelines.campaign import run_campaign
    from pipelines.distill import run_distill_job
    from pipelines.evaluate import run_evaluate_job
    from pipelines.label import run_label_job

    summary = RunSummary(
        output_uri=config.output_uri, summary_uri=run_path(config.output_uri, "run_summary.json")
    )

    def stage(name: str, fn: Any, render: Any) -> None:
        started = time.perf_counter()
        try:
            result = fn()
        except (ValueError, RuntimeError) as error:
            raise type(error)(f"stage {name!r} failed: {error}") from error
        summary.stages.append(
            {"stage": name, "seconds": time.perf_counter() - started, "text": render(result)}
        )
        write_json(
            summary.summary_uri,
            {
                "output_uri": config.output_uri,
                "stages": summary.stages,
                "updated_at": datetime.now(UTC).isoformat(),
            },
        )

    with ray_session(config.ray):
        stage("label", lambda: run_label_job(config), _render_label)
        stage("aggregate", lambda: run_aggregate_job(config), lambda s: s.render())
        stage("distill", lambda: _distill(config, run_distill_job), lambda s: s.render())
        if has_gold(config):
            stage("evaluate", lambda: run_evaluate_job(config), lambda s: s.render())
        if config.campaign.teachers:
            stage("campaign", lambda: run_campaign(config), lambda s: s.render())
    return summary


def _distill(config: LabelmillConfig, run_distill_job: Any) -> Any:
    """Distill, replacing a student exported by an earlier run of the same directory."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(student_dir(config))
    if fs.exists(path):
        fs.rm(path, recursive=True)
    return run_distill_job(config)


def _render_label(summary: Any) -> str:
    return json.dumps(json.loads(summary.to_json()).get("teachers", []), indent=1)[:4000]
