"""The Ray Train part of `labelmill distill`: the per-worker loop, the trainer, dev scoring.

Each worker reads its shard of the ``train`` and ``dev`` datasets (columns ``text``, ``targets``
(list of K floats), ``weight``), tokenizes in the worker with the backbone's tokenizer, trains
the DDP-wrapped student for an epoch, computes the dev loss summed over all workers, and
reports it; rank 0 attaches a safetensors checkpoint whenever the dev loss improved. All
workers stop together after ``patience`` epochs without improvement (they see the same loss).
On the driver, :func:`fit_student` runs the ``TorchTrainer`` and loads the best checkpoint, and
:func:`score_dev` tunes the thresholds on the dev split.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
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
from labelmill.errors import InputError, JobError
from labelmill.layout import run_path, train_checkpoints_uri

# Key of the reported metric that checkpoints are ranked by (lower is better).
DEV_LOSS_KEY = "dev_loss"


def arrow_to_torch_batch(
    batch: pa.Table, tokenizer: Any, num_labels: int, max_length: int
) -> dict[str, Any]:
    """One Arrow batch -> model inputs (B, L) plus ``targets`` (B, K) and ``weights`` (B,)."""
    import torch

    from labelmill.student.model import tokenize_batch

    rows = batch.num_rows
    flat = pc.list_flatten(batch.column("targets")).to_numpy(zero_copy_only=False)
    if flat.size != rows * num_labels:
        raise ValueError(f"targets must hold {num_labels} values per row, got {flat.size}/{rows}")
    inputs = tokenize_batch(tokenizer, batch.column("text").to_pylist(), max_length)
    inputs["targets"] = torch.from_numpy(flat.reshape(rows, num_labels).astype(np.float32))
    weights = batch.column("weight").to_numpy(zero_copy_only=False).astype(np.float32)
    inputs["weights"] = torch.from_numpy(weights)
    return inputs


def _batches(
    shard: Any, tokenizer: Any, settings: Any, num_labels: int, counter: list[int], seed: int | None
) -> Iterator[dict[str, Any]]:
    """Tokenized batches of a dataset shard; ``counter[0]`` accumulates the rows yielded."""
    shuffle = {"local_shuffle_buffer_size": 4 * settings.batch_size, "local_shuffle_seed": seed}
    for batch in shard.iter_batches(
        batch_size=settings.batch_size,
        batch_format="pyarrow",
        **(shuffle if seed is not None else {}),
    ):
        if batch.num_rows == 0:
            continue
        counter[0] += batch.num_rows
        yield arrow_to_torch_batch(batch, tokenizer, num_labels, settings.max_length)


def _all_reduce_sum(values: list[float]) -> list[float]:
    """Sum ``values`` over all workers (identity when not distributed)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    import ray.train.torch

    tensor = torch.tensor(values, dtype=torch.float64, device=ray.train.torch.get_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.cpu()]


def _dev_sums(module: Any, batches: Iterator[dict[str, Any]], loss_fn: Any) -> tuple[float, float]:
    """(sum of row-weighted dev losses, sum of weights) over this worker's dev shard."""
    import torch

    device = next(module.parameters()).device
    module.eval()
    total, weight = 0.0, 0.0
    with torch.no_grad():
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items() if k not in ("targets", "weights")}
            weights = batch["weights"].to(device)
            logits = module(**inputs).logits.float()
            loss = float(loss_fn(logits, batch["targets"].to(device), weights))
            total += loss * float(weights.sum())
            weight += float(weights.sum())
    return total, weight


def _probe(module: Any, shard: Any, tokenizer: Any, settings: StudentConfig, names: list[str]):
    """The linear probe of LP-FT: fit the head on the frozen encoder's pooled features of the
    whole train split (every worker its shard, gradients summed over workers)."""
    import torch.distributed as dist

    from labelmill.student.model import embed_batches, fit_linear_head

    batches = _batches(shard, tokenizer, settings, len(names), [0], None)
    features, targets, weights = embed_batches(module, batches)
    reduce = None
    if dist.is_available() and dist.is_initialized():

        def reduce(tensor: Any) -> Any:
            tensor = tensor.clone()
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            return tensor

    return fit_linear_head(
        module.classifier, features, targets, weights, settings.probe_l2, all_reduce=reduce
    )


def _report_epoch(module: Any, metrics: dict[str, Any], improved: bool, rank: int) -> None:
    """Report an epoch's metrics; rank 0 attaches a checkpoint when the dev loss improved."""
    import ray.train

    if improved and rank == 0:
        with tempfile.TemporaryDirectory(prefix="labelmill-ckpt-") as tmp:
            module.save_pretrained(tmp, safe_serialization=True)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def _seed_everything(settings: StudentConfig) -> None:
    """``student.seed`` fixes the head, dropout and shuffles; deterministic kernels where
    torch has them (warn_only: a GPU op without one warns instead of failing the run)."""
    import torch

    if not settings.use_gpu:
        torch.set_num_threads(max(1, int(settings.cpus_per_worker)))
    torch.manual_seed(settings.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def train_student_worker(loop_config: dict[str, Any]) -> dict[str, float]:
    """Ray Train entry point; ``loop_config`` holds ``student`` (StudentConfig dump),
    ``backbone_path``, ``names`` (taxonomy order) and ``rows_train`` (for the schedule).

    Epoch 0 is the linear probe (with ``student.linear_probe``): the head fitted on frozen
    features, scored and checkpointed like any epoch, so fine-tuning is kept only where it
    lowers the dev loss below the probe's."""
    import ray.train
    import ray.train.torch
    from transformers import AutoTokenizer

    from labelmill.student.model import build_student
    from labelmill.student.training import (
        EarlyStopping,
        loss_function,
    )

    settings = StudentConfig.model_validate(loop_config["student"])
    names: list[str] = list(loop_config["names"])
    _seed_everything(settings)
    tokenizer = AutoTokenizer.from_pretrained(
        str(loop_config["backbone_path"]), local_files_only=True
    )
    model = build_student(str(loop_config["backbone_path"]), len(names), dict(enumerate(names)))
    model = ray.train.torch.prepare_model(model)
    module = getattr(model, "module", model)
    loss_fn = loss_function(settings)
    train_shard = ray.train.get_dataset_shard("train")
    dev_shard = ray.train.get_dataset_shard("dev")
    rank = ray.train.get_context().get_world_rank()

    def dev_loss() -> float:
        batches = _batches(dev_shard, tokenizer, settings, len(names), [0], None)
        total, weight = _all_reduce_sum(list(_dev_sums(module, batches, loss_fn)))
        if weight <= 0.0:
            raise InputError("the dev split yielded no rows to compute a dev loss on")
        return total / weight

    tracker = EarlyStopping(settings.patience)
    train_seconds = 0.0
    if settings.linear_probe:
        started = time.perf_counter()
        probe_loss = _probe(module, train_shard, tokenizer, settings, names)
        train_seconds += time.perf_counter() - started
        loss = dev_loss()
        tracker.record_baseline(loss)
        metrics = {"epoch": 0, "train_loss": probe_loss, DEV_LOSS_KEY: loss, "best_dev_loss": loss}
        extra = {"best_epoch": 0, "train_seconds": train_seconds, "rows_trained": 0.0}
        _report_epoch(module, {**metrics, **extra}, True, rank)
    context = {"tokenizer": tokenizer, "shard": train_shard, "rank": rank, "dev_loss": dev_loss}
    return _fine_tune(model, module, settings, names, loop_config, tracker, context, train_seconds)


def _fine_tune(
    model: Any,
    module: Any,
    settings: StudentConfig,
    names: list[str],
    loop_config: dict[str, Any],
    tracker: Any,
    context: dict[str, Any],
    train_seconds: float,
) -> dict[str, float]:
    """The fine-tuning epochs after the probe (early stopping on the dev loss); -> the
    worker's summary."""
    import torch

    from labelmill.student.model import train_epoch
    from labelmill.student.training import (
        loss_function,
        lr_multiplier,
        parameter_groups,
        training_schedule,
    )

    optimizer = torch.optim.AdamW(parameter_groups(model, settings))
    epochs, total_steps, warmup = training_schedule(int(loop_config["rows_train"]), settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, warmup)
    )
    loss_fn, rows_trained = loss_function(settings), 0.0
    for epoch in range(1, epochs + 1):
        counter = [0]
        started = time.perf_counter()
        batches = _batches(
            context["shard"],
            context["tokenizer"],
            settings,
            len(names),
            counter,
            settings.seed + epoch,
        )
        local_train_loss = train_epoch(model, batches, optimizer, loss_fn, scheduler)
        train_seconds += time.perf_counter() - started
        loss_sum, epoch_rows = _all_reduce_sum([local_train_loss * counter[0], float(counter[0])])
        rows_trained += epoch_rows
        loss = context["dev_loss"]()
        improved = tracker.update(loss)
        metrics = {
            "epoch": epoch,
            "train_loss": loss_sum / max(epoch_rows, 1.0),
            DEV_LOSS_KEY: loss,
            "best_dev_loss": tracker.best_loss,
            "best_epoch": tracker.best_epoch,
            "train_seconds": train_seconds,
            "rows_trained": rows_trained,
        }
        _report_epoch(module, metrics, improved, context["rank"])
        if tracker.should_stop:
            break
    return {
        "epochs_run": tracker.epochs_run,
        "best_epoch": tracker.best_epoch,
        "best_dev_loss": tracker.best_loss,
        "train_seconds": train_seconds,
        "rows_trained": rows_trained,
    }


def _ordered_ingest() -> Any:
    """Ray Train's data config with ``preserve_order``: each epoch reads the blocks in one
    order, so that ``student.seed`` fixes the batches (with one worker; several workers get
    their shards from Ray Data's dynamic split)."""
    import ray.train

    options = ray.train.DataConfig.default_ingest_options()
    options.preserve_order = True
    return ray.train.DataConfig(execution_options=options)


@dataclass
class FitResult:
    """The best student of a Ray Train run (loaded on the driver) and its training figures."""

    model: Any
    epochs_run: int
    best_epoch: int
    best_dev_loss: float
    train_seconds: float
    rows_trained: float


@dataclass(frozen=True)
class TrainStorage:
    """Where Ray Train keeps a distill run's checkpoints (see :func:`storage_for`)."""

    uri: str  # the storage dir as a local path or fsspec URI (cleanup goes through fsspec)
    path: str  # RunConfig.storage_path: ``uri``, or without its scheme when filesystem is set
    filesystem: Any  # a pyarrow filesystem for RunConfig.storage_filesystem, or None


def _remove_run(run_dir: str, storage: TrainStorage) -> None:
    """Delete a finished run's checkpoints, and the storage dir when nothing else is in it."""
    remove_dir(run_dir)
    fs, path = fsspec.core.url_to_fs(storage.uri)
    if fs.exists(path) and not fs.ls(path):
        fs.rm(path, recursive=True)


def fit_student(
    train_ds: Any,
    dev_ds: Any,
    student: StudentConfig,
    backbone_path: str,
    names: list[str],
    storage: TrainStorage,
) -> FitResult:
    """Run the TorchTrainer over ``train``/``dev`` (columns ``TRAIN_COLUMNS``) and load the best
    checkpoint; the run's storage is removed afterwards unless training failed. Ray Train
    errors (``ray.train.TrainingFailedError``) propagate."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from labelmill.student.model import load_pooled_classifier

    name = f"distill-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    trainer = TorchTrainer(
        train_student_worker,
        train_loop_config={
            "student": student.model_dump(),
            "backbone_path": backbone_path,
            "names": names,
            "rows_train": train_ds.count(),
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=student.num_workers,
            use_gpu=student.use_gpu,
            resources_per_worker={"CPU": student.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage.path,
            storage_filesystem=storage.filesystem,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=DEV_LOSS_KEY, checkpoint_score_order="min"
            ),
        ),
        datasets={"train": train_ds, "dev": dev_ds},
        dataset_config=_ordered_ingest(),
    )
    result = trainer.fit()
    checkpoint = result.get_best_checkpoint(DEV_LOSS_KEY, "min") or result.checkpoint
    final = result.return_value
    if checkpoint is None or not isinstance(final, dict):
        raise JobError(f"the Ray Train run {name!r} reported no checkpoint or no summary")
    with checkpoint.as_directory() as ckpt_dir:
        model = load_pooled_classifier(ckpt_dir)
    _remove_run(run_path(storage.uri, name), storage)
    return FitResult(
        model=model,
        epochs_run=int(final["epochs_run"]),
        best_epoch=int(final["best_epoch"]),
        best_dev_loss=float(final["best_dev_loss"]),
        train_seconds=float(final["train_seconds"]),
        rows_trained=float(final["rows_trained"]),
    )


def storage_for(output_uri: str) -> TrainStorage:
    """Where Ray Train keeps its checkpoints: ``<output_uri>/student-train``.

    ``s3://``: an explicit pyarrow ``S3FileSystem`` that honours ``AWS_ENDPOINT_URL`` (any
    S3-compatible endpoint; a plain ``s3://`` path would leave that to pyarrow's version).
    Other URIs: the URI itself, resolved by Ray Train's pyarrow.
    """
    if output_uri.startswith(("s3://", "s3a://")):
        import pyarrow.fs

        uri = train_checkpoints_uri(output_uri)
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        options: dict[str, Any] = {}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            options = {"endpoint_override": host or scheme, "scheme": scheme if host else "https"}
        filesystem = pyarrow.fs.S3FileSystem(**options)
        return TrainStorage(uri, uri.split("://", 1)[1], filesystem)
    if "://" in output_uri:
        uri = train_checkpoints_uri(output_uri)
        return TrainStorage(uri, uri, None)
    path = str(Path(output_uri, "student-train").resolve())
    return TrainStorage(path, path, None)


def score_dev(
    model: Any,
    tokenizer: Any,
    dev_rows: list[dict[str, Any]],
    train_sample: list[dict[str, Any]],
    config: LabelmillConfig,
) -> Any:
    """The best student's probabilities on the dev rows and a sample of its train rows ->
    per-label thresholds and dev F1 (DevScores, see
    :func:`labelmill.student.training.student_thresholds`)."""
    from labelmill.student.model import predict_proba
    from labelmill.student.training import student_thresholds

    names = [label.name for label in config.taxonomy.labels]
    rows = [*dev_rows, *train_sample]
    probs = predict_proba(
        model,
        tokenizer,
        [row["text"] for row in rows],
        config.student.batch_size,
        config.student.max_length,
    )
    targets = np.asarray([row["targets"] for row in rows], dtype=np.float64)
    dev = len(dev_rows)
    return student_thresholds(
        probs[:dev],
        [row["gold"] for row in dev_rows],
        [row["gold_seed"] for row in dev_rows],
        names,
        probs,
        targets.reshape(len(rows), len(names)),
    )
