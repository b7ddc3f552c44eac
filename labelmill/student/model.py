"""Build, run and train the student: a local Hugging Face encoder with a multi-label head.

Everything here is a plain torch loop on whatever device the model already sits on; Ray and
distributed training live elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import SequenceClassifierOutput

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


# Weight names of the classification head inside model.safetensors. Deliberately not
# ``classifier.*``: AutoModelForSequenceClassification would otherwise load them and apply
# them to its [CLS] pooler, which this student never trained (a silently wrong model).
HEAD_PREFIX = "labelmill_head"
WEIGHTS_FILE = "model.safetensors"


class PooledClassifier(torch.nn.Module):
    """An encoder, mean pooling over the attention mask, L2 normalisation, a linear head.

    Sentence encoders such as all-MiniLM-L6-v2 are trained for exactly this pooling (it is
    what the embedding teacher reads), so a fresh head starts from features that already
    separate documents; the [CLS] pooler of ``AutoModelForSequenceClassification`` was never
    trained by them. ``forward(input_ids (B, L), attention_mask (B, L)) -> .logits (B, K)``.
    ``config`` is the encoder's config with the label fields set (num_labels, id2label,
    label2id, problem_type), so callers read it as they would a transformers classifier.
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.classifier = torch.nn.Linear(int(encoder.config.hidden_size), num_labels)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled, L2-normalised token states: (B, L) ids and mask -> (B, H)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **ignored: torch.Tensor
    ) -> SequenceClassifierOutput:
        # Other tokenizer outputs (token_type_ids) are accepted and ignored: single-segment
        # input. Only the two named inputs are graph inputs of the ONNX fast path.
        del ignored
        return SequenceClassifierOutput(
            logits=self.classifier(self.embed(input_ids, attention_mask))
        )

    def save_pretrained(self, directory: str | Path, safe_serialization: bool = True) -> None:
        """config.json and one model.safetensors: the encoder's weights (loadable on their own
        with ``AutoModel``) plus the head under ``labelmill_head.*``."""
        if not safe_serialization:
            raise ValueError("the student is only saved as safetensors")
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(out)
        state = {k: v.detach().contiguous() for k, v in self.encoder.state_dict().items()}
        state[f"{HEAD_PREFIX}.weight"] = self.classifier.weight.detach().contiguous()
        state[f"{HEAD_PREFIX}.bias"] = self.classifier.bias.detach().contiguous()
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})


def _check_id2label(num_labels: int, id2label: Mapping[int, str]) -> list[str]:
    _check_positive_int(num_labels, "num_labels")
    if not isinstance(id2label, Mapping) or sorted(id2label) != list(range(num_labels)):
        keys = sorted(id2label) if isinstance(id2label, Mapping) else type(id2label).__name__
        raise ValueError(f"id2label keys must be exactly 0..{num_labels - 1}, got {keys!r}")
    names = [id2label[i] for i in range(num_labels)]
    if any(not isinstance(n, str) or not n for n in names) or len(set(names)) != num_labels:
        raise ValueError(f"id2label values must be distinct non-empty str, got {names!r}")
    return names


def _encoder(path: Path, config: Any) -> PreTrainedModel:
    """The bare encoder (no pooler: mean pooling replaces it, and an unused pooler would
    leave DDP with parameters that get no gradient)."""
    return AutoModel.from_pretrained(
        str(path),
        config=config,
        trust_remote_code=False,
        local_files_only=True,
        **_no_pooler(config),
    )


def build_student(
    backbone_path: str, num_labels: int, id2label: dict[int, str]
) -> PooledClassifier:
    """Load a local encoder checkpoint with a fresh multi-label head (:class:`PooledClassifier`).

    ``id2label`` must map exactly 0..num_labels-1 to distinct non-empty names (taxonomy order).
    Never runs remote code and never contacts a hub (``local_files_only``).
    """
    path = Path(backbone_path)
    if not path.is_dir():
        raise ValueError(
            f"backbone_path must be an existing local directory, got {backbone_path!r}"
        )
    names = _check_id2label(num_labels, id2label)
    config = AutoConfig.from_pretrained(
        str(path),
        num_labels=num_labels,
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        problem_type="multi_label_classification",
        trust_remote_code=False,
        local_files_only=True,
    )
    return PooledClassifier(_encoder(path, config), num_labels)


def load_pooled_classifier(model_dir: str | Path) -> PooledClassifier:
    """A saved :class:`PooledClassifier` back from its directory (the one-line loader of an
    exported student: ``labelmill.student.model.load_pooled_classifier(path)``)."""
    from safetensors import safe_open

    path = Path(model_dir)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ValueError(f"no {WEIGHTS_FILE} in {str(model_dir)!r}")
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    with safe_open(str(weights), framework="pt") as handle:
        keys = set(handle.keys())
        head = {
            name: handle.get_tensor(f"{HEAD_PREFIX}.{name}")
            for name in ("weight", "bias")
            if f"{HEAD_PREFIX}.{name}" in keys
        }
        body = {k: handle.get_tensor(k) for k in keys if not k.startswith(f"{HEAD_PREFIX}.")}
    if len(head) != 2:
        raise ValueError(
            f"{str(weights)!r} holds no labelmill head ({HEAD_PREFIX}.weight / .bias): "
            "not a labelmill student"
        )
    encoder = AutoModel.from_config(config, **_no_pooler(config))
    missing, unexpected = encoder.load_state_dict(body, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{str(weights)!r} does not match its config.json: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )
    model = PooledClassifier(encoder, int(config.num_labels))
    model.classifier.load_state_dict(head)
    return model.eval()


def _no_pooler(config: Any) -> dict[str, bool]:
    """``{"add_pooling_layer": False}`` where the architecture has that option, else {}."""
    import inspect

    from transformers import MODEL_MAPPING

    model_class = MODEL_MAPPING[type(config)]
    has_option = "add_pooling_layer" in inspect.signature(model_class.__init__).parameters
    return {"add_pooling_layer": False} if has_option else {}


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


def _reduce_sum(value: torch.Tensor, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None):
    return value if all_reduce is None else all_reduce(value)


def fit_linear_head(
    head: torch.nn.Linear,
    features: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    l2: float,
    max_iter: int = 200,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """Fit ``head`` in place on frozen features (the linear probe of LP-FT); -> final loss.

    features (N, H), targets (N, K) in [0, 1], weights (N,) >= 0. Minimises the weighted mean
    soft BCE plus ``l2 * |W|^2`` with full-batch L-BFGS, which is deterministic and needs no
    learning rate. ``all_reduce`` (a sum over workers) makes every worker take the same step
    on the union of their shards: loss, weight and gradient sums are reduced before use.
    """
    if not (isinstance(l2, int | float) and l2 >= 0.0):
        raise ValueError(f"l2 must be a number >= 0, got {l2!r}")
    if features.ndim != 2 or targets.shape != (features.shape[0], head.out_features):
        raise ValueError(
            f"features must be (N, H) and targets (N, {head.out_features}), got "
            f"{tuple(features.shape)} and {tuple(targets.shape)}"
        )
    total_weight = float(_reduce_sum(weights.sum().reshape(1).double(), all_reduce)[0])
    if total_weight <= 0.0:
        raise ValueError(f"weights must have a positive sum over all workers, got {total_weight}")
    optimizer = torch.optim.LBFGS(
        head.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def objective() -> torch.Tensor:
        elementwise = torch.nn.functional.binary_cross_entropy_with_logits(
            head(features), targets, reduction="none"
        )
        return (elementwise.mean(dim=1) * weights).sum()  # this worker's weighted sum

    def total(local: torch.Tensor) -> torch.Tensor:
        data = _reduce_sum(local.detach().reshape(1).double(), all_reduce)[0] / total_weight
        return (data + l2 * (head.weight.detach() ** 2).sum()).float()

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=False)
        local = objective()
        local.backward()
        for parameter in head.parameters():
            parameter.grad.copy_(_reduce_sum(parameter.grad, all_reduce) / total_weight)
        head.weight.grad.add_(2.0 * l2 * head.weight.detach())
        return total(local)

    optimizer.step(closure)
    with torch.no_grad():
        return float(total(objective()))


def embed_batches(
    model: PooledClassifier, batches: Iterable[Mapping[str, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frozen pooled features of every batch -> (features (N, H), targets (N, K), weights (N,)).

    Batches as for :func:`train_epoch`; runs in eval mode (no dropout) without gradients.
    """
    device = _model_device(model)
    was_training = model.training
    model.eval()
    features, targets, weights = [], [], []
    try:
        with torch.no_grad():
            for batch in batches:
                ids = batch["input_ids"].to(device)
                mask = batch["attention_mask"].to(device)
                features.append(model.embed(ids, mask).float())
                targets.append(batch["targets"].to(device=device, dtype=torch.float32))
                rows = targets[-1].shape[0]
                weight = batch.get("weights")
                weights.append(
                    torch.ones(rows, device=device) if weight is None else weight.to(device).float()
                )
    finally:
        model.train(was_training)
    if not features:
        raise ValueError("batches must yield at least one non-empty batch, got none")
    return torch.cat(features), torch.cat(targets), torch.cat(weights)
