"""Loading an exported student for inference, and running it over texts.

An exported directory (see :mod:`labelmill.student.export`) holds safetensors weights, the
tokenizer and ``labelmill.json``. :func:`load_student` reads all three; :func:`predict_sorted`
runs the model over texts sorted by length (less padding) and returns rows in input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelmill.artifacts import version_of
from labelmill.student.export import load_student_metadata


def model_version(model_dir: str | Path) -> str:
    """``<taxonomy version>-<first 12 hex of the SHA-256 of model.safetensors>``.

    A sharded export (no ``model.safetensors``) hashes its ``*.safetensors`` shards in name
    order instead. Identifies exactly which weights produced a prediction.
    """
    meta = load_student_metadata(model_dir)
    return version_of(meta["taxonomy"]["version"], model_dir)


@dataclass
class LoadedStudent:
    """An exported student ready for inference (model in eval mode on ``device``)."""

    model: Any
    tokenizer: Any
    names: list[str]
    thresholds: np.ndarray  # (K,)
    taxonomy_version: str
    model_version: str
    max_length: int
    metadata: dict[str, Any] = field(default_factory=dict)
    runtime: str = "torch-float32"  # the CPU fast path in use (labelmill.student.fast_path)
    runner: Any = None  # its runner; None: plain torch through ``model``


def load_student(
    model_dir: str | Path, max_length: int, device: str = "cpu", runtime: str = "auto"
) -> LoadedStudent:
    """Load model, tokenizer and metadata of an exported student directory.

    ``runtime``: ``auto`` runs on CPU through the fast path recorded in labelmill.json
    (``runtime``, see :mod:`labelmill.student.fast_path`) when there is one, on GPU always
    through torch; ``torch-float32`` always through plain torch.

    Tokens per text: the ``max_length`` the student was trained with when its lineage records
    it (``lineage.student_config.max_length``, written by ``labelmill distill``), else the
    ``max_length`` given; capped by the model's position embeddings. Never runs remote code
    and never contacts a hub.
    """
    from transformers import AutoTokenizer

    from labelmill.student.model import load_pooled_classifier

    path = Path(model_dir)
    if not path.is_dir():
        raise ValueError(f"student directory {str(model_dir)!r} does not exist")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be an int >= 1, got {max_length!r}")
    meta = load_student_metadata(path)
    names = list(meta["taxonomy"]["names"])
    trained = (meta["lineage"].get("student_config") or {}).get("max_length")
    if isinstance(trained, int) and not isinstance(trained, bool) and trained > 0:
        max_length = trained
    model = load_pooled_classifier(path)
    model_names = [model.config.id2label[i] for i in range(int(model.config.num_labels))]
    if model_names != names:
        raise ValueError(
            f"model labels {model_names!r} do not match labelmill.json names {names!r}"
        )
    tokenizer = AutoTokenizer.from_pretrained(
        str(path), trust_remote_code=False, local_files_only=True
    )
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        max_length = min(max_length, positions)
    if runtime not in ("auto", "torch-float32"):
        raise ValueError(f"runtime must be 'auto' or 'torch-float32', got {runtime!r}")
    model.to(device)
    model.eval()
    name, runner = "torch-float32", None
    if runtime == "auto" and device == "cpu" and meta.get("runtime"):
        from labelmill.student.fast_path import load_runner

        name, runner = load_runner(path, meta["runtime"], model, tokenizer, max_length)
    return LoadedStudent(
        model=model,
        tokenizer=tokenizer,
        names=names,
        thresholds=np.asarray(meta["thresholds"], dtype=np.float64),
        taxonomy_version=str(meta["taxonomy"]["version"]),
        model_version=model_version(path),
        max_length=max_length,
        metadata=meta,
        runtime=name,
        runner=runner,
    )


def predict_sorted(student: LoadedStudent, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """sigmoid(logits) for each text, computed in length order. texts: N -> (N, K) float32.

    Texts are sorted by character length so each tokenizer batch pads to similar lengths; the
    result is returned in the input order.
    """
    from labelmill.student.model import predict_proba

    texts = list(texts)
    order = np.argsort([len(t) if isinstance(t, str) else 0 for t in texts], kind="stable")
    if student.runner is not None and texts:
        probs = student.runner.predict([texts[i] for i in order], batch_size)
        out = np.empty_like(probs)
        out[order] = probs
        return out
    probs = predict_proba(
        student.model,
        student.tokenizer,
        [texts[i] for i in order],
        batch_size=batch_size,
        max_length=student.max_length,
    )
    out = np.empty_like(probs)
    out[order] = probs
    return out


def apply_thresholds(
    probs: np.ndarray, thresholds: np.ndarray, names: Sequence[str]
) -> list[list[str]]:
    """Label names whose probability reaches its threshold. probs: (N, K), thresholds: (K,)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(names) or len(thresholds) != len(names):
        raise ValueError(
            f"probs {probs.shape} and thresholds ({len(thresholds)},) must have {len(names)} labels"
        )
    hits = probs >= np.asarray(thresholds, dtype=np.float64)[None, :]
    return [[names[k] for k in np.flatnonzero(row)] for row in hits]


def truncation_flags(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[bool]:
    """Whether each text has more than ``max_length`` tokens (special tokens included).

    A text of at most ``max_length - 4`` UTF-8 bytes cannot (every token covers at least one
    byte and a model adds at most a few special tokens), so only longer texts are tokenized.
    texts: N -> N bools.
    """
    flags = [False] * len(texts)
    long = [i for i, t in enumerate(texts) if len(t.encode("utf-8")) > max_length - 4]
    if long:
        encoded = tokenizer([texts[i] for i in long], add_special_tokens=True, truncation=False)
        for i, ids in zip(long, encoded["input_ids"], strict=True):
            flags[i] = len(ids) > max_length
    return flags
