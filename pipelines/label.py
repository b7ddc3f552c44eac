"""The teacher labeling job: every configured teacher over the corpus, resumable.

The corpus is read once per job and materialized in the object store (id, text), shared by every
teacher. For each teacher: keep the corpus rows without a vote of the same prompt hash and
taxonomy version, run the teacher stages, write atomic Parquet parts, and check that every
corpus id has a vote. Both the resume and the check first compare order-free fingerprints of the
corpus ids and the written ids (:mod:`labelmill.id_fingerprint`: a sum over blocks, no shuffle);
only when they differ does a distributed ``left_anti`` join find the rows to label, or name the
missing ones. Nothing per document comes to the driver: only counts, fingerprints, part paths
and per-part summaries. Engine-fatal failures (a
teacher that cannot start, an endpoint that stays down past its retries) stop the job with
:class:`LabelJobError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from labelmill.config import LabelmillConfig, RulesTeacherConfig, TeacherConfig
from labelmill.console import progress
from labelmill.errors import ConfigError, JobError
from labelmill.models import resolve_model
from labelmill.pipelines.corpus import read_corpus
from labelmill.pipelines.embedding_teacher import EmbeddingTeacherRun
from labelmill.pipelines.rules_teacher import rules_stage
from labelmill.pipelines.runtime import ray_session
from labelmill.pipelines.teachers import teacher_votes
from labelmill.pipelines.votes_io import (
    anti_join_ids,
    ids_fingerprint,
    votes_dir,
    write_vote_part,
    written_ids,
)
from labelmill.requests import TeacherPlan
from labelmill.rules import RULES_MODEL
from labelmill.taxonomy import Taxonomy


class LabelJobError(JobError):
    """A teacher failed as a whole (engine could not run, endpoint down, rows lost)."""


@dataclass
class TeacherRunStats:
    """What one teacher did in one run."""

    teacher: str
    mode: str
    rows_in: int
    rows_resumed: int
    rows_labeled: int = 0
    rows_with_errors: int = 0
    rows_truncated: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    cost: float = 0.0
    output: str = ""

    @property
    def docs_per_s(self) -> float:
        """Documents labeled per second of this teacher's run (engine start included)."""
        return self.rows_labeled / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LabelJobSummary:
    """The whole job: one entry per teacher."""

    output_uri: str
    taxonomy_version: str
    teachers: list[TeacherRunStats] = field(default_factory=list)

    def to_json(self) -> str:
        """The summary as JSON (docs_per_s included)."""
        payload = asdict(self)
        for stats, entry in zip(self.teachers, payload["teachers"], strict=True):
            entry["docs_per_s"] = round(stats.docs_per_s, 3)
        return json.dumps(payload, indent=2)


def make_plan(teacher: TeacherConfig, taxonomy: Taxonomy) -> TeacherPlan:
    """Resolve a teacher's model (a bundled name is prepared once) and check it is there."""
    if isinstance(teacher, RulesTeacherConfig):  # no model: the rules are the teacher
        return TeacherPlan(teacher=teacher, taxonomy=taxonomy, model_path=RULES_MODEL)
    if teacher.kind == "openai":
        return TeacherPlan(teacher=teacher, taxonomy=taxonomy, model_path=teacher.model)
    path = resolve_model(teacher.model)
    if "://" not in path and not (Path(path) / "config.json").is_file():
        raise LabelJobError(
            f"teacher {teacher.name!r}: model {teacher.model!r} is not a local model directory "
            "(no config.json); run `labelmill models prepare NAME` or give a local path"
        )
    return TeacherPlan(teacher=teacher, taxonomy=taxonomy, model_path=path)


def teacher_stage(
    config: LabelmillConfig, plan: TeacherPlan, corpus: Any, cpus: float
) -> tuple[str, Callable[[Any], Any]]:
    """A teacher's resume hash and its stage: a dataset of (id, text) -> vote records."""
    if plan.teacher.kind == "embedding":
        run = EmbeddingTeacherRun(
            plan,
            corpus,
            cpus,
            output_uri=config.output_uri,
            gold=config.gold,
            corpus_config=config.corpus,
        )
        return run.prompt_hash, run.votes
    if isinstance(plan.teacher, RulesTeacherConfig):
        return rules_stage(plan.teacher, plan.taxonomy, cpus)
    return plan.prompt_hash, lambda todo: teacher_votes(todo, plan, cpus)


def _run_teacher(config: LabelmillConfig, plan: TeacherPlan, corpus: Corpus) -> TeacherRunStats:
    """One teacher over the materialized corpus."""
    teacher = plan.teacher
    cpus = config.ray.light_stage_cpus
    rows_in = corpus.rows
    prompt_hash, to_votes = teacher_stage(config, plan, corpus.data, cpus)
    version = plan.taxonomy.version
    done = written_ids(config.output_uri, teacher.name, prompt_hash, version, cpus)
    stats = TeacherRunStats(
        teacher=teacher.name,
        mode=teacher.vote_mode,
        rows_in=rows_in,
        rows_resumed=0,
        output=votes_dir(config.output_uri, teacher.name),
    )
    started = time.perf_counter()
    if done is None:  # nothing written yet: no join
        todo, remaining = corpus.data, rows_in
    elif ids_fingerprint(done, cpus) == corpus.fingerprint(cpus):  # every row voted, once
        todo, remaining = None, 0
    else:  # materialized: counted once, then labeled without a second join
        todo = anti_join_ids(corpus.data, done, rows_in).materialize()
        remaining = todo.count()
    stats.rows_resumed = rows_in - remaining
    if remaining > 0:
        summaries = to_votes(todo).map_batches(
            write_vote_part,
            fn_kwargs={"output_uri": config.output_uri, "teacher": teacher.name},
            batch_format="pyarrow",
            batch_size=teacher.batch_size,  # resume granularity follows the engine batch
            num_cpus=cpus,
        )
        try:
            with progress(f"label {teacher.name}", remaining) as bar:
                for part in summaries.iter_rows():
                    stats.rows_labeled += part["rows"]
                    stats.rows_with_errors += part["errors"]
                    stats.rows_truncated += part["truncated"]
                    stats.prompt_tokens += part["prompt_tokens"]
                    stats.output_tokens += part["output_tokens"]
                    bar.update(part["rows"])
        except Exception as error:  # engine-fatal: re-raised with the teacher named
            raise LabelJobError(
                f"teacher {teacher.name!r} failed: {type(error).__name__}: {error}"
            ) from error
    stats.seconds = time.perf_counter() - started
    stats.cost = teacher.cost(stats.prompt_tokens, stats.output_tokens)
    if remaining > 0:  # with nothing to do, the resume (fingerprint or join) was the check
        check_every_row_voted(config, plan, prompt_hash, corpus, stats.rows_labeled)
    return stats


def check_every_row_voted(
    config: LabelmillConfig,
    plan: TeacherPlan,
    prompt_hash: str,
    corpus: Corpus,
    rows_labeled: int,
) -> None:
    """Rows in == rows out, by distributed counts: no corpus id may lack a vote row.

    Written ids with the corpus's fingerprint pass at once. Otherwise the corpus ids are
    anti-joined with the written ids on the cluster (extra or duplicate vote rows alone are
    allowed: the aggregate de-duplicates them); only the count of the missing ones (and three of
    them for the message) reaches the driver.
    """
    name = plan.teacher.name
    cpus = config.ray.light_stage_cpus
    rows_in = corpus.rows
    written = written_ids(config.output_uri, name, prompt_hash, plan.taxonomy.version, cpus)
    if written is not None and ids_fingerprint(written, cpus) == corpus.fingerprint(cpus):
        return
    ids = corpus.data.select_columns(["id"])
    missing = ids if written is None else anti_join_ids(ids, written, rows_in)
    missing = missing.materialize()
    n_missing = missing.count()
    if n_missing:
        examples = sorted(row["id"] for row in missing.take(3))
        raise LabelJobError(
            f"teacher {name!r}: {n_missing} of {rows_in} documents have no vote row "
            f"(e.g. {examples}; {rows_labeled} labeled in this run)"
        )


@dataclass
class Corpus:
    """The job's corpus: ``data`` (id, text) materialized, its row count, its id fingerprint."""

    data: Any
    rows: int
    _fingerprint: tuple[int, int] | None = None

    def fingerprint(self, cpus: float) -> tuple[int, int]:
        """The corpus ids' fingerprint, computed on first use (one pass over the blocks)."""
        if self._fingerprint is None:
            self._fingerprint = ids_fingerprint(self.data, cpus)
        return self._fingerprint


def read_corpus_once(config: LabelmillConfig) -> Corpus:
    """The corpus (id, text) materialized in the object store, with its row count.

    Every teacher, its resume and its final check reuse it, so the corpus files are read once
    per job; the blocks live on the cluster (spilled to disk past the object store), the driver
    holds their references only.
    """
    data = read_corpus(config.corpus, config.ray.light_stage_cpus)
    data = data.select_columns(["id", "text"]).materialize()
    return Corpus(data, data.count())


def run_label_job(
    config: LabelmillConfig,
    teachers: list[str] | None = None,
    summary_path: str = "label_summary.json",
) -> LabelJobSummary:
    """Run teachers of ``config`` over its corpus; return what each did.

    ``teachers``: the names to run; by default every configured teacher except the campaign
    teachers (``campaign.teachers`` relabel only what a campaign selects). The summary is
    written to ``<output_uri>/<summary_path>``.
    """
    if not config.teachers:
        raise ConfigError("teachers: at least one teacher is needed to label, got none")
    taxonomy = Taxonomy.from_config(config.taxonomy)
    if teachers is None:
        teachers = [t.name for t in config.teachers if t.name not in config.campaign.teachers]
    unknown = sorted(set(teachers) - {t.name for t in config.teachers})
    if unknown:
        raise ConfigError(f"teachers {unknown} are not configured")
    plans = [make_plan(t, taxonomy) for t in config.teachers if t.name in teachers]
    summary = LabelJobSummary(output_uri=config.output_uri, taxonomy_version=taxonomy.version)
    with ray_session(config.ray):
        corpus = read_corpus_once(config)
        for plan in plans:
            summary.teachers.append(_run_teacher(config, plan, corpus))
    fs, path = fsspec.core.url_to_fs(f"{config.output_uri.rstrip('/')}/{summary_path}")
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as handle:
        handle.write(summary.to_json())
    return summary
