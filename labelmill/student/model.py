"""Build, run and train the student: a local Hugging Face encoder with a multi-label head.

Everything here is a plain torch loop on whatever device the model already sits on; Ray and
distributed training live elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _check_texts(texts: object) -> list[str]:
    if not isinstance(texts, list | tuple):
        raise ValueError(f"texts must be a list of str, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be a str, got {type(text).__name__}")
    return list(texts)


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def build_student(backbone_path: str, num_labels: int, id2label: dict[int, str]) -> PreTrainedModel:
    """Load a local encoder checkpoint with a fresh multi-label classification head.

    ``id2label`` must map exactly 0..num_labels-1 to distinct non-empty names (taxonomy order).
    Never runs remote code and never contacts a hub (``local_files_only``).
    """
    path = Path(backbone_path)
    if not path.is_dir():
        raise ValueError(
            f"backbone_path must be an existing local directory, got {backbone_path!r}"
        )
    _check_positive_int(num_labels, "num_labels")
    if not isinstance(id2label, Mapping) or sorted(id2label) != list(range(num_labels)):
        keys = sorted(id2label) if isinstance(id2label, Mapping) else type(id2label).__name__
        raise ValueError(f"id2label keys must be exactly 0..{num_labels - 1}, got {keys!r}")
    names = [id2label[i] for i in range(num_labels)]
    if any(not isinstance(n, str) or not n for n in names) or len(set(names)) != num_labels:
        raise ValueError(f"id2label values must be distinct non-empty str, got {names!r}")
    config = AutoConfig.from_pretrained(
        str(path),
        num_labels=num_labels,
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        problem_type="multi_label_classification",
        trust_remote_code=False,
        local_files_only=True,
    )
    return AutoModelForSequenceClassification.from_pretrained(
        str(path), config=config, trust_remote_code=False, local_files_only=True
    )


def tokenize_batch(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int
) -> dict[str, torch.Tensor]:
    """Tokenize with padding to the longest text and truncation to ``max_length``.

    Returns the tokenizer's model inputs as tensors: input_ids (B, L), attention_mask (B, L)
    and any others it produces (e.g. token_type_ids (B, L)), with L <= max_length.
    """
    texts = _check_texts(texts)
    if not texts:
        raise ValueError("texts must be non-empty, got an empty list")
    _check_positive_int(max_length, "max_length")
    if tokenizer.pad_token is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token before batching")
    encoded = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return {key: value for key, value in encoded.items() if isinstance(value, torch.Tensor)}


def predict_proba(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    batch_size: int,
    max_length: int,
) -> np.ndarray:
    """Per-label probabilities sigmoid(logits), shape (N, K) float32, N = len(texts).

    Runs in eval mode under ``torch.no_grad`` in batches of ``batch_size`` on the model's
    device; the model's previous train/eval mode is restored afterwards.
    """
    texts = _check_texts(texts)
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(max_length, "max_length")
    num_labels = int(model.config.num_labels)
    if not texts:
        return np.zeros((0, num_labels), dtype=np.float32)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    chunks: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                inputs = tokenize_batch(tokenizer, texts[start : start + batch_size], max_length)
                inputs = {key: value.to(device) for key, value in inputs.items()}
                logits = model(**inputs).logits
                chunks.append(torch.sigmoid(logits.float()).cpu().numpy())
    finally:
        model.train(was_training)
    probs = np.concatenate(chunks, axis=0)
    if probs.shape != (len(texts), num_labels):
        raise ValueError(
            f"model produced probabilities of shape {probs.shape}, "
            f"expected {(len(texts), num_labels)}"
        )
    return probs


def train_epoch(
    model: PreTrainedModel,
    batches: Iterable[Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """One pass over ``batches``; returns the row-count-weighted mean of the batch losses.

    Each batch maps input_ids (B, L), attention_mask (B, L), targets (B, K) in [0, 1] and
    optionally weights (B,); any other key (e.g. token_type_ids) is passed to the model too.
    ``loss_fn(logits (B, K), targets (B, K), weights (B,) | None) -> scalar``. Tensors are
    moved to the model's device. ``scheduler`` (if any) steps after every optimizer step.
    Raises FloatingPointError on a non-finite loss.
    """
    device = _model_device(model)
    model.train()
    total, rows = 0.0, 0
    for index, batch in enumerate(batches):
        if not isinstance(batch, Mapping):
            raise ValueError(f"batch {index} must be a mapping, got {type(batch).__name__}")
        missing = [k for k in ("input_ids", "attention_mask", "targets") if k not in batch]
        if missing:
            raise ValueError(f"batch {index} lacks keys {missing}, got {sorted(batch)}")
        inputs = {
            key: value.to(device)
            for key, value in batch.items()
            if key not in ("targets", "weights")
        }
        targets = batch["targets"].to(device=device, dtype=torch.float32)
        weights = batch.get("weights")
        if weights is not None:
            weights = weights.to(device=device, dtype=torch.float32)
        optimizer.zero_grad(set_to_none=True)
        logits = model(**inputs).logits.float()
        loss = loss_fn(logits, targets, weights)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite loss {value!r} at batch {index}")
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        size = int(targets.shape[0])
        total += value * size
        rows += size
    if rows == 0:
        raise ValueError("batches must yield at least one non-empty batch, got none")
    return total / rows
