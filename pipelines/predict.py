"""Batch prediction with the exported student (``labelmill predict``).

The corpus is read as a Ray Dataset and sent through an actor pool of student replicas
(:class:`StudentPredictor`, one model per actor, on a GPU or on CPU), then written as atomic
Parquet parts under :func:`labelmill.layout.predictions_uri`. Output columns: ``id``,
``probs`` (list<float>, one per label in the student's taxonomy order), ``labels``
(list<string>, each label whose probability reaches its exported threshold), ``model_version``
(see :func:`labelmill.student.inference.model_version`) and ``error`` (null, or why the text was
unusable; such a row has null probs and labels). Rows in == rows out, checked.

``predict.model_dir`` (default: the run's student) is a local path or any fsspec URI: the driver
reads only its ``labelmill.json`` and version; each node copies that version once into its cache
and every actor there loads the copy (:func:`labelmill.artifacts.fetch_model`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from labelmill.config import LabelmillConfig
from labelmill.documents import check_text
from labelmill.errors import InputError, JobError
from labelmill.layout import predict_model_dir, predictions_uri
from labelmill.part_files import list_parts, write_part
from labelmill.pipelines.corpus import read_corpus
from labelmill.pipelines.gold import corpus_without_gold_column
from labelmill.pipelines.runtime import ray_session


class PredictJobError(JobError):
    """The prediction job failed as a whole (replicas could not run, rows lost)."""


def prediction_schema() -> pa.Schema:
    """Arrow schema of the prediction Parquet parts."""
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("probs", pa.list_(pa.float32())),
            pa.field("labels", pa.list_(pa.string())),
            pa.field("model_version", pa.string()),
            pa.field("error", pa.string()),
        ]
    )


class StudentPredictor:
    """Ray Data UDF (actor): one loaded student; a batch of (id, text) -> prediction rows."""

    def __init__(
        self,
        model_dir: str,
        max_length: int,
        batch_size: int,
        use_gpu: bool,
        cpus: float,
        version: str | None = None,
    ) -> None:
        import torch

        from labelmill.artifacts import fetch_model
        from labelmill.student.inference import load_student

        if not use_gpu:
            torch.set_num_threads(max(1, int(cpus)))
        # A URI is copied once into this node's cache (keyed by ``version``, the one the driver
        # checked); every actor on the node loads that copy.
        local = fetch_model(model_dir, version)
        self.student = load_student(local, max_length, "cuda" if use_gpu else "cpu")
        self.batch_size = batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        from labelmill.student.inference import apply_thresholds, predict_sorted

        student = self.student
        checked = [check_text(value) for value in batch["text"].to_pylist()]
        good = [i for i, c in enumerate(checked) if c.error is None]
        probs: list[list[float] | None] = [None] * len(checked)
        labels: list[list[str] | None] = [None] * len(checked)
        if good:
            matrix = predict_sorted(student, [checked[i].text for i in good], self.batch_size)
            names = apply_thresholds(matrix, student.thresholds, student.names)
            for row, i in enumerate(good):
                probs[i] = matrix[row].tolist()
                labels[i] = names[row]
        return pa.Table.from_pydict(
            {
                "id": batch["id"].to_pylist(),
                "probs": probs,
                "labels": labels,
                "model_version": [student.model_version] * len(checked),
                "error": [c.error for c in checked],
            },
            schema=prediction_schema(),
        )


def write_prediction_part(batch: pa.Table, output_uri: str) -> pa.Table:
    """Ray Data UDF: write a batch of predictions as one atomic part; return (rows, errors)."""
    if batch.num_rows == 0:
        return pa.table({"rows": [0], "errors": [0]})
    table = batch.select(prediction_schema().names).cast(prediction_schema())
    write_part(table, output_uri)  # named by its ids: a retry overwrites its own part
    errors = table.num_rows - table["error"].null_count
    return pa.table({"rows": [table.num_rows], "errors": [errors]})


def count_written(output_uri: str) -> int:
    """Rows in the prediction parts under ``output_uri`` (from Parquet footers)."""
    fs, _ = fsspec.core.url_to_fs(output_uri)
    total = 0
    for file in list_parts(output_uri):  # a fresh listing: other processes wrote the parts
        with fs.open(file, "rb") as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


@dataclass
class PredictJobSummary:
    """What one prediction run did."""

    rows_in: int
    rows_out: int
    errors: int
    seconds: float
    output_uri: str
    model_dir: str
    model_version: str

    @property
    def docs_per_s(self) -> float:
        """Documents predicted and written per second (replica start-up included)."""
        return self.rows_out / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        """A short human-readable report."""
        return "\n".join(
            [
                f"model: {self.model_dir}  (version {self.model_version})",
                f"{'rows in':>8}{'rows out':>10}{'errors':>8}{'docs/s':>9}",
                f"{self.rows_in:>8}{self.rows_out:>10}{self.errors:>8}{self.docs_per_s:>9.1f}",
                f"predictions: {self.output_uri}",
            ]
        )


def _check_student(config: LabelmillConfig, model_dir: str) -> str:
    """Validate the exported student (local path or fsspec URI; only its metadata is read)
    against the config; return its model version."""
    from labelmill.artifacts import artifact_version, is_uri
    from labelmill.student.export import load_student_metadata
    from labelmill.student.inference import model_version

    fs, path = fsspec.core.url_to_fs(model_dir)
    if not fs.isdir(path):
        raise InputError(
            f"no exported student at {model_dir!r}: run `labelmill distill` first or set "
            "predict.model_dir"
        )
    names = load_student_metadata(model_dir)["taxonomy"]["names"]
    expected = [label.name for label in config.taxonomy.labels]
    if names != expected:
        raise InputError(
            f"the student in {model_dir!r} predicts labels {names!r}, but the config's taxonomy "
            f"is {expected!r}"
        )
    return artifact_version(model_dir) if is_uri(model_dir) else model_version(model_dir)


def run_predict_job(config: LabelmillConfig) -> PredictJobSummary:
    """Run the exported student over the corpus; replace previous predictions."""
    settings = config.predict
    model_dir = predict_model_dir(config)
    version = _check_student(config, model_dir)
    output_uri = predictions_uri(config)
    cpus = config.ray.light_stage_cpus
    resources: dict[str, Any] = (
        {"num_gpus": 1} if settings.use_gpu else {"num_cpus": settings.cpus_per_replica}
    )
    with ray_session(config.ray):
        corpus = read_corpus(corpus_without_gold_column(config.corpus), cpus)
        rows_in = corpus.count()
        fs, path = fsspec.core.url_to_fs(output_uri)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        started = time.perf_counter()
        predictions = corpus.map_batches(
            StudentPredictor,
            fn_constructor_kwargs={
                "model_dir": model_dir,
                "max_length": config.student.max_length,
                "batch_size": settings.batch_size,
                "use_gpu": settings.use_gpu,
                "cpus": settings.cpus_per_replica,
                "version": version,
            },
            batch_size=settings.batch_size,
            batch_format="pyarrow",
            concurrency=settings.concurrency,
            **resources,
        )
        parts = predictions.map_batches(
            write_prediction_part,
            fn_kwargs={"output_uri": output_uri},
            batch_format="pyarrow",
            batch_size=None,
            num_cpus=cpus,
        )
        rows_out = errors = 0
        try:
            for part in parts.iter_rows():
                rows_out += part["rows"]
                errors += part["errors"]
        except Exception as error:  # replica-fatal: re-raised as a job failure
            raise PredictJobError(
                f"prediction with {model_dir!r} failed: {type(error).__name__}: {error}"
            ) from error
        seconds = time.perf_counter() - started
    written = count_written(output_uri)
    if rows_out != rows_in or written != rows_in:
        raise PredictJobError(
            f"rows in ({rows_in}) != rows out ({rows_out} reported, {written} written) "
            f"under {output_uri!r}"
        )
    return PredictJobSummary(
        rows_in=rows_in,
        rows_out=rows_out,
        errors=errors,
        seconds=seconds,
        output_uri=output_uri,
        model_dir=model_dir,
        model_version=version,
    )
