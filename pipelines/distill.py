"""The distill job (`labelmill distill`): train the student on the aggregate labels, export it.

Ray Data reads the aggregate Parquet and keeps the rows the student may learn from (see
:func:`labelmill.student.training.usable_rows`), splits them into train/dev by id hash and
weights them by confidence; Ray Train's ``TorchTrainer`` trains the student with DDP across
``student.num_workers`` workers (loop in :mod:`labelmill.pipelines.train_loop`), keeping the
checkpoint
with the best dev loss; checkpoints go to the run's storage (``<output_uri>/student-train``, on
s3 too). The driver then tunes per-label thresholds on the (small) dev split and exports a
safetensors Hugging Face directory with ``labelmill.json`` to ``student.output_dir`` or
``<output_uri>/student``, a local path or any fsspec URI (see :mod:`labelmill.artifacts`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelmill.artifacts import remove_dir
from labelmill.config import LabelmillConfig, StudentConfig
from labelmill.errors import ConfigError, JobError
from labelmill.jsonio import read_json
from labelmill.layout import aggregate_file_uri, aggregate_labels_uri, student_dir
from labelmill.models import resolve_model
from labelmill.pipelines.runtime import ray_session
from labelmill.student.training import trust_note, untrusted_warning
from labelmill.taxonomy import Taxonomy

TRAIN_COLUMNS = ["text", "targets", "weight"]
DEV_COLUMNS = [*TRAIN_COLUMNS, "gold", "gold_seed", "aggregate_labels"]
# Rows of the student's own documents that the prevalence thresholds are measured on (dev
# and a sample of train): a 1% label still has about 200 expected positives among them.
THRESHOLD_SAMPLE_ROWS = 20_000
_META_COLUMNS = ["taxonomy_version", "method", "lineage"]


class DistillJobError(JobError):
    """The student could not be trained (no training rows, Ray Train failed, ...)."""


@dataclass
class DistillJobSummary:
    """What one distill run did."""

    output_dir: str
    rows_read: int
    rows_train: int
    rows_dev: int
    epochs_run: int
    best_epoch: int
    best_dev_loss: float
    dev_micro_f1: float
    dev_macro_f1: float
    aggregate_dev_micro_f1: float
    dev_gold_rows: int
    threshold_source: str
    train_seconds: float
    rows_trained: float
    seconds: float

    @property
    def docs_per_s(self) -> float:
        """Training rows processed per second of training (all workers, all epochs)."""
        return self.rows_trained / self.train_seconds if self.train_seconds > 0 else 0.0

    def render(self) -> str:
        """A short human-readable report."""
        return "\n".join(
            [
                f"student exported to {self.output_dir}",
                f"  rows: {self.rows_read} read, {self.rows_train} train, {self.rows_dev} dev",
                f"  epochs run: {self.epochs_run} (best {self.best_epoch}), "
                f"best dev loss {self.best_dev_loss:.4f}",
                f"  thresholds ({self.threshold_source}); dev gold-seed F1: "
                + (
                    "- (no gold-seed row in the dev split)"
                    if np.isnan(self.dev_micro_f1)
                    else f"micro {self.dev_micro_f1:.3f}, macro {self.dev_macro_f1:.3f}"
                ),
                f"  training: {self.train_seconds:.1f} s, {self.docs_per_s:.1f} docs/s; "
                f"job {self.seconds:.1f} s",
                trust_note(self.dev_micro_f1, self.aggregate_dev_micro_f1, self.dev_gold_rows),
            ]
        )

    @property
    def warning(self) -> str | None:
        """A warning line when the student is below its own aggregate on the dev gold rows."""
        return untrusted_warning(self.dev_micro_f1, self.aggregate_dev_micro_f1, self.dev_gold_rows)


def _column(batch: pa.Table, name: str) -> list[Any]:
    """A column as a list, or all-null when the column is absent."""
    if name in batch.column_names:
        return batch.column(name).to_pylist()
    return [None] * batch.num_rows


def prepare_batch(
    batch: pa.Table,
    num_labels: int,
    taxonomy_version: str,
    student: dict[str, Any],
    student_names: list[str] | None = None,
) -> pa.Table:
    """Aggregate rows -> the same rows with text, targets (K,), weight, split, gold, gold_seed and
    the lineage columns. ``split`` is ``train`` or ``dev`` for a usable row and null otherwise
    (rows made under another taxonomy version are never usable: the job reports them). With
    ``student_names`` (taxonomy order), gold-seed rows' targets are their gold labels."""
    from labelmill.student.training import training_rows

    rows = training_rows(
        [str(v) for v in _column(batch, "id")],
        _column(batch, "text"),
        _column(batch, "probs"),
        _column(batch, "error"),
        _column(batch, "gold"),
        _column(batch, "gold_seed"),
        _column(batch, "taxonomy_version"),
        taxonomy_version,
        num_labels,
        student_names,
        StudentConfig.model_validate(student),
    )
    texts, gold, seed = _column(batch, "text"), _column(batch, "gold"), _column(batch, "gold_seed")
    return pa.table(
        {
            "text": pa.array(texts, pa.string()),
            "targets": pa.array(rows.targets, pa.list_(pa.float64())),
            "weight": pa.array(rows.weights, pa.float32()),
            "split": pa.array(rows.split, pa.string()),
            "gold": pa.array(gold, pa.list_(pa.string())),
            "gold_seed": pa.array([bool(v) for v in seed], pa.bool_()),
            "aggregate_labels": pa.array(_column(batch, "labels"), pa.list_(pa.string())),
            **{name: pa.array(_column(batch, name), pa.string()) for name in _META_COLUMNS},
        }
    )


def select_split(batch: pa.Table, split: str, columns: list[str]) -> pa.Table:
    """The rows of one split (``train`` / ``dev``), with ``columns`` only."""
    return batch.filter(pc.equal(batch.column("split"), split)).select(columns)


def distinct_meta(batch: pa.Table) -> pa.Table:
    """(taxonomy_version, method, lineage) -> the distinct combinations with their row counts."""
    return batch.group_by(_META_COLUMNS, use_threads=False).aggregate([([], "count_all")])


def _lineage_entries(lineages: list[str | None]) -> list[dict[str, Any]]:
    """Distinct {teacher, model, mode, prompt_hash} entries of the rows' lineage JSON strings."""
    seen: dict[str, dict[str, Any]] = {}
    for text in lineages:
        try:
            entries = json.loads(text) if text else []
        except ValueError:
            continue
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                keep = {k: entry.get(k) for k in ("teacher", "model", "mode", "prompt_hash")}
                seen[json.dumps([keep[k] for k in ("teacher", "model", "prompt_hash", "mode")])] = (
                    keep
                )
    return [seen[key] for key in sorted(seen)]


def _read_summary(config: LabelmillConfig) -> dict[str, Any]:
    """The aggregate's summary.json, or {} when it is absent or unreadable."""
    uri = aggregate_file_uri(config, "summary.json")
    try:
        summary = read_json(uri, default={})
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _check_inputs(config: LabelmillConfig) -> tuple[str, str]:
    """The backbone's local path and the export dir (a local path or any fsspec URI);
    ValueError for bad config values."""
    out_dir = student_dir(config)
    backbone = resolve_model(config.student.backbone)
    if not (Path(backbone) / "config.json").is_file():
        raise ConfigError(
            f"student.backbone {config.student.backbone!r} is not a local Hugging Face model "
            "directory (no config.json) nor a bundled model name"
        )
    uri = aggregate_labels_uri(config)
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise DistillJobError(f"no aggregate labels at {uri!r}: run `labelmill aggregate` first")
    return backbone, out_dir


@contextlib.contextmanager
def _ordered_blocks() -> Iterator[None]:
    """Ray Data keeps the blocks in input order (by default a block that finishes first comes
    first): with it, the train split's row order, and so the student, is the same for the
    same ``student.seed``."""
    from ray.data import DataContext

    options = DataContext.get_current().execution_options
    before, options.preserve_order = options.preserve_order, True
    try:
        yield
    finally:
        options.preserve_order = before


def _prepare_datasets(config: LabelmillConfig, taxonomy: Taxonomy) -> tuple[Any, Any, list[dict]]:
    """Read the aggregate once -> materialized train / dev datasets and the distinct
    (taxonomy_version, method, lineage, count_all) records of all rows read."""
    import ray

    uri = aggregate_labels_uri(config)
    light = {"num_cpus": config.ray.light_stage_cpus, "batch_format": "pyarrow"}
    settings = {
        "num_labels": len(taxonomy),
        "taxonomy_version": taxonomy.version,
        "student": config.student.model_dump(),
        "student_names": list(taxonomy.names),
    }
    prepared = ray.data.read_parquet(uri).map_batches(prepare_batch, fn_kwargs=settings, **light)
    prepared = prepared.materialize()
    meta = prepared.select_columns(_META_COLUMNS).map_batches(distinct_meta, **light).take_all()
    versions = sorted({str(r["taxonomy_version"]) for r in meta})
    if versions and versions != [taxonomy.version]:
        raise DistillJobError(
            f"aggregate labels at {uri!r} were made under taxonomy version(s) {versions}, "
            f"the config's taxonomy is {taxonomy.version!r}: re-run `labelmill aggregate`"
        )
    train_ds, dev_ds = (
        prepared.map_batches(select_split, fn_kwargs={"split": name, "columns": cols}, **light)
        for name, cols in (("train", TRAIN_COLUMNS), ("dev", DEV_COLUMNS))
    )
    return train_ds.materialize(), dev_ds.materialize(), meta


def _lineage(
    config: LabelmillConfig,
    meta: list[dict],
    fit: Any,
    scores: Any,
    rows: tuple[int, int],
    aggregate_f1: float,
) -> dict[str, Any]:
    """The export's lineage record (see the module doc of labelmill.student.export)."""
    summary = _read_summary(config)
    return {
        "taxonomy_version": Taxonomy.from_config(config.taxonomy).version,
        "aggregate": {
            "uri": aggregate_labels_uri(config),
            "method": summary.get("method") or sorted({str(r["method"]) for r in meta}),
            "teachers": summary.get("teachers"),
            "teacher_lineage": _lineage_entries([r["lineage"] for r in meta]),
        },
        "training_rows": rows[0],
        "dev_rows": rows[1],
        "threshold_source": scores.source,
        "dev_micro_f1": None if np.isnan(scores.micro_f1) else scores.micro_f1,
        "aggregate_dev_micro_f1": None if np.isnan(aggregate_f1) else aggregate_f1,
        "trustworthy": untrusted_warning(scores.micro_f1, aggregate_f1, scores.gold_rows) is None,
        "threshold_gold_rows": scores.gold_rows,
        "threshold_sources": list(scores.sources),
        "backbone": config.student.backbone,
        "student_config": config.student.model_dump(),
        "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _fast_path_rows(dev_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The dev rows the fast path's accuracy guard is measured on: texts and their targets
    (gold on seed rows, the aggregate elsewhere), blank texts left out."""
    rows = [r for r in dev_rows if isinstance(r["text"], str) and r["text"].strip()]
    if not rows:
        return {}
    return {
        "fast_path_texts": [r["text"] for r in rows],
        "fast_path_labels": np.asarray([r["targets"] for r in rows], dtype=np.float64),
    }


def _check_split_sizes(config: LabelmillConfig, rows_train: int, rows_dev: int) -> None:
    """DistillJobError when there are too few training rows for the workers or no dev row."""
    student = config.student
    if rows_train < student.num_workers:
        raise DistillJobError(
            f"{rows_train} usable training rows in {aggregate_labels_uri(config)!r} for "
            f"{student.num_workers} worker(s): rows need text and probabilities and no error"
        )
    if rows_dev == 0:
        raise DistillJobError(
            f"the dev split is empty ({rows_train} training rows, student.dev_fraction="
            f"{student.dev_fraction}): raise dev_fraction or add documents"
        )


def _train_sample(train_ds: Any, rows_train: int, rows_dev: int, seed: int) -> list[dict]:
    """The train rows that join the dev rows for the prevalence thresholds (all of them up to
    THRESHOLD_SAMPLE_ROWS in all, else a seeded random sample)."""
    fraction = max(0, THRESHOLD_SAMPLE_ROWS - rows_dev) / rows_train
    if fraction <= 0:
        return []
    sample = train_ds if fraction >= 1.0 else train_ds.random_sample(fraction, seed=seed)
    return sample.take_all()


def run_distill_job(config: LabelmillConfig) -> DistillJobSummary:
    """Train the student on the aggregate labels with Ray Train and export it (see module doc)."""
    from transformers import AutoTokenizer

    from labelmill.pipelines.train_loop import fit_student, score_dev, storage_for
    from labelmill.student.export import export_student
    from labelmill.student.training import decisions_f1

    started = time.perf_counter()
    taxonomy = Taxonomy.from_config(config.taxonomy)
    backbone, out_dir = _check_inputs(config)
    student = config.student
    with ray_session(config.ray):
        import ray.exceptions
        import ray.train

        with _ordered_blocks():
            train_ds, dev_ds, meta = _prepare_datasets(config, taxonomy)
        rows_train, rows_dev = train_ds.count(), dev_ds.count()
        _check_split_sizes(config, rows_train, rows_dev)
        storage = storage_for(config.output_uri)
        try:
            fit = fit_student(
                train_ds,
                dev_ds.select_columns(TRAIN_COLUMNS),
                student,
                backbone,
                list(taxonomy.names),
                storage,
            )
        except (ray.train.TrainingFailedError, ray.exceptions.RayError, RuntimeError) as exc:
            raise DistillJobError(f"training the student with Ray Train failed: {exc}") from exc
        dev_rows = dev_ds.take_all()
        train_sample = _train_sample(train_ds, rows_train, rows_dev, student.seed)
    tokenizer = AutoTokenizer.from_pretrained(backbone, local_files_only=True)
    scores = score_dev(fit.model, tokenizer, dev_rows, train_sample, config)
    aggregate_f1 = decisions_f1(
        [r["aggregate_labels"] for r in dev_rows],
        [r["gold"] for r in dev_rows],
        [r["gold_seed"] for r in dev_rows],
        list(taxonomy.names),
    )
    metrics = {
        "best_dev_loss": fit.best_dev_loss,
        # dev F1 on the dev split's gold-seed rows; left out when it has none
        "epochs_run": fit.epochs_run,
        "train_seconds": fit.train_seconds,
    }
    if scores.gold_rows:
        metrics.update(dev_micro_f1=scores.micro_f1, dev_macro_f1=scores.macro_f1)
        if not np.isnan(aggregate_f1):
            metrics["aggregate_dev_micro_f1"] = aggregate_f1
    lineage = _lineage(config, meta, fit, scores, (rows_train, rows_dev), aggregate_f1)
    remove_dir(out_dir)  # the one place a student directory is replaced (local or remote)
    export_student(
        fit.model,
        tokenizer,
        out_dir,
        list(taxonomy.names),
        taxonomy.version,
        scores.thresholds,
        lineage,
        metrics,
        taxonomy_descriptions=list(taxonomy.descriptions),
        **_fast_path_rows(dev_rows) if student.fast_path else {},
    )
    return DistillJobSummary(
        output_dir=out_dir,
        rows_read=int(sum(int(r["count_all"]) for r in meta)),
        rows_train=rows_train,
        rows_dev=rows_dev,
        epochs_run=fit.epochs_run,
        best_epoch=fit.best_epoch,
        best_dev_loss=fit.best_dev_loss,
        dev_micro_f1=scores.micro_f1,
        dev_macro_f1=scores.macro_f1,
        aggregate_dev_micro_f1=aggregate_f1,
        dev_gold_rows=scores.gold_rows,
        threshold_source=scores.source,
        train_seconds=fit.train_seconds,
        rows_trained=fit.rows_trained,
        seconds=time.perf_counter() - started,
    )
