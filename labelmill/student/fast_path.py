"""The student's CPU fast path: a faster runtime chosen at export, by measured figures.

Candidates (:data:`RUNTIMES`): ``torch-float32`` (the reference), ``torch-int8`` (torch dynamic
quantization of every ``nn.Linear``; re-derived from the float weights at load, so it adds no
file), ``onnx-float32`` and ``onnx-int8`` (ONNX Runtime; the graph exported with
``torch.onnx.export``, int8 by ``onnxruntime.quantization.quantize_dynamic``, stored beside the
safetensors as ``model-<name>.onnx``: protobuf, not pickle).

:func:`build_runtime` scores the dev rows with every candidate, keeps those within the accuracy
guard (max |p - p_float32| <= :data:`MAX_ABS_DIFF` and micro-F1 change <= :data:`MAX_F1_CHANGE`)
and picks the fastest; when none beats float32 within the guard, float32 stays and the record
says why. The record (figures of every candidate included) is the optional ``runtime`` entry
of ``labelmill.json``; :func:`load_runner` turns it back into a runner at load (CPU only).
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelmill.documents import is_usable_text
from labelmill.jsonio import write_json

RUNTIMES = ("torch-float32", "torch-int8", "onnx-float32", "onnx-int8")
REFERENCE = "torch-float32"
# The accuracy guard of the issue: scores and decisions must not move more than this.
MAX_ABS_DIFF = 0.02
MAX_F1_CHANGE = 0.01
# Speed is measured on at most this many dev rows (accuracy on all of them).
_SPEED_ROWS = 256
_ONNX_OPSET = 17
_HASH_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _micro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Micro-F1 of 0/1 matrices (N, K); 1.0 when neither has a positive (nothing to miss)."""
    tp = float((truth * pred).sum())
    wrong = float(((1 - truth) * pred).sum() + (truth * (1 - pred)).sum())
    return 1.0 if tp + wrong == 0 else 2 * tp / (2 * tp + wrong)


def _input_names(model: Any, tokenizer: Any) -> list[str]:
    """The tokenizer outputs the model's forward takes, in forward-signature order."""
    import inspect

    params = list(inspect.signature(model.forward).parameters)
    produced = set(tokenizer.model_input_names)
    return [name for name in params if name in produced]


class TorchRunner:
    """The student through torch (float32, or dynamically quantized int8)."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int) -> None:
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length

    def predict(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """texts: N (already length-sorted by the caller) -> (N, K) float32 probabilities."""
        from labelmill.student.model import predict_proba

        return predict_proba(self.model, self.tokenizer, list(texts), batch_size, self.max_length)


class OnnxRunner:
    """The student through an ONNX Runtime CPU session."""

    def __init__(
        self, path: Path, tokenizer: Any, max_length: int, inputs: list[str], threads: int
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Busy-waiting intra-op threads steal the cores the HTTP proxy and tokenizer need on a
        # small machine; a sleeping pool costs little at these batch sizes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer, self.max_length, self.inputs = tokenizer, max_length, inputs

    def predict(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """texts: N (already length-sorted by the caller) -> (N, K) float32 probabilities."""
        texts = list(texts)
        chunks = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            feed = {name: np.asarray(encoded[name], dtype=np.int64) for name in self.inputs}
            logits = self.session.run(["logits"], feed)[0].astype(np.float64)
            chunks.append((1.0 / (1.0 + np.exp(-logits))).astype(np.float32))
        return np.concatenate(chunks, axis=0)


def _quantized_torch(model: Any) -> Any:
    import torch

    return torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
    )


def export_onnx(model: Any, tokenizer: Any, path: Path) -> list[str]:
    """Write the float32 graph (dynamic batch and sequence axes) to ``path``; -> input names."""
    import torch

    inputs = _input_names(model, tokenizer)

    class _Logits(torch.nn.Module):
        # Positional inputs in the forward's order: a dict argument would bind graph inputs
        # to ``input_names`` by position and silently swap attention_mask / token_type_ids.
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(inputs, args, strict=True))).logits

    sample = tokenizer(["a short text", "another text"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    torch.onnx.export(
        _Logits(model).eval(),
        tuple(sample[name] for name in inputs),
        str(path),
        input_names=inputs,
        output_names=["logits"],
        dynamic_axes={**axes, "logits": {0: "batch"}},
        opset_version=_ONNX_OPSET,
        dynamo=False,
    )
    return inputs


def _quantize_onnx(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def build_runtime(
    out_dir: str | Path,
    model: Any,
    tokenizer: Any,
    thresholds: Sequence[float],
    dev_texts: Sequence[str],
    max_length: int,
    dev_labels: Any = None,
    batch_size: int = 16,
    candidates: Sequence[str] = RUNTIMES,
) -> dict[str, Any]:
    """Measure the candidates on the dev rows, write the chosen one's file, return the record.

    ``dev_labels`` (N, K) 0/1 (or soft, cut at 0.5), when given, is what micro-F1 is measured
    against; without it the float32 decisions are the reference (then the change is
    1 - F1(candidate vs float32), a stricter test). Speed: texts/s on the first 256 dev rows
    (length-sorted, ``batch_size`` per pass, this process's torch thread count).
    """
    out = Path(out_dir)
    texts = [t for t in dev_texts if is_usable_text(t)]
    if not texts:
        raise ValueError("dev_texts must hold at least one non-empty text, got none")
    unknown = [c for c in candidates if c not in RUNTIMES]
    if unknown or REFERENCE not in candidates:
        raise ValueError(
            f"candidates must be from {RUNTIMES} and hold {REFERENCE!r}, got {unknown}"
        )
    cut = np.asarray(thresholds, dtype=np.float64)[None, :]
    order = np.argsort([len(t) for t in texts], kind="stable")
    texts = [texts[i] for i in order]
    reference = None
    if dev_labels is not None:
        reference = (np.asarray(dev_labels, dtype=np.float64)[order] >= 0.5).astype(np.float64)
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    threads = _threads()
    figures: dict[str, dict[str, Any]] = {}
    float_probs: np.ndarray | None = None
    with tempfile.TemporaryDirectory(prefix=".fast-path-", dir=out) as scratch:
        files: dict[str, Path] = {}
        inputs: list[str] = []
        if any(c.startswith("onnx-") for c in candidates):
            files["onnx-float32"] = Path(scratch, "model-onnx-float32.onnx")
            inputs = export_onnx(cpu_model, tokenizer, files["onnx-float32"])
            if "onnx-int8" in candidates:
                files["onnx-int8"] = Path(scratch, "model-onnx-int8.onnx")
                _quantize_onnx(files["onnx-float32"], files["onnx-int8"])
        for name in [REFERENCE, *[c for c in candidates if c != REFERENCE]]:
            if name.startswith("onnx-"):
                runner: Any = OnnxRunner(files[name], tokenizer, max_length, inputs, threads)
            elif name == "torch-int8":
                runner = TorchRunner(_quantized_torch(cpu_model), tokenizer, max_length)
            else:
                runner = TorchRunner(cpu_model, tokenizer, max_length)
            runner.predict(texts[:batch_size], batch_size)  # warm-up
            speed_rows = texts[:_SPEED_ROWS]
            started = time.perf_counter()
            runner.predict(speed_rows, batch_size)
            rate = len(speed_rows) / (time.perf_counter() - started)
            probs = runner.predict(texts, batch_size)
            if float_probs is None:
                float_probs = probs
            truth = reference if reference is not None else (float_probs >= cut).astype(float)
            base_f1 = _micro_f1(truth, (float_probs >= cut).astype(float))
            f1_change = abs(base_f1 - _micro_f1(truth, (probs >= cut).astype(float)))
            diff = float(np.abs(probs.astype(np.float64) - float_probs).max())
            passed = diff <= MAX_ABS_DIFF and f1_change <= MAX_F1_CHANGE
            figures[name] = {
                "texts_per_s": round(rate, 2),
                "max_abs_diff": round(diff, 6),
                "micro_f1_change": round(f1_change, 6),
                "within_guard": passed,
            }
        base_rate = figures[REFERENCE]["texts_per_s"]
        fits = [n for n in figures if n != REFERENCE and figures[n]["within_guard"]]
        faster = [n for n in fits if figures[n]["texts_per_s"] > base_rate]
        chosen = max(faster, key=lambda n: figures[n]["texts_per_s"]) if faster else REFERENCE
        if chosen != REFERENCE:
            reason = f"fastest within the guard: {figures[chosen]['texts_per_s'] / base_rate:.2f}x"
        elif not fits:
            reason = "no faster runtime within the accuracy guard: float32 kept"
        else:
            reason = "no runtime within the guard was faster than float32: float32 kept"
        record: dict[str, Any] = {
            "name": chosen,
            "reason": reason,
            "guard": {"max_abs_diff": MAX_ABS_DIFF, "max_micro_f1_change": MAX_F1_CHANGE},
            "dev_rows": len(texts),
            "reference": "dev_labels" if reference is not None else "float32 decisions",
            "threads": threads,
            "batch_size": batch_size,
            "max_length": max_length,
            "candidates": figures,
        }
        if chosen in files:
            target = out / files[chosen].name
            os.replace(files[chosen], target)
            record["file"] = target.name
            record["sha256"] = _sha256(target)
            record["inputs"] = inputs
    return record


def runtime_for_export(
    out_dir: Path, model: Any, tokenizer: Any, meta: dict[str, Any], texts: Any, labels: Any
) -> dict[str, Any]:
    """:func:`build_runtime` from inside ``export_student`` (tokens per text from the lineage)."""
    trained = (meta["lineage"].get("student_config") or {}).get("max_length")
    positions = getattr(model.config, "max_position_embeddings", None) or 512
    max_length = min(int(trained or 256), int(positions))
    return build_runtime(
        out_dir, model, tokenizer, meta["thresholds"], texts, max_length, dev_labels=labels
    )


def load_runner(
    model_dir: str | Path, record: dict[str, Any], model: Any, tokenizer: Any, max_length: int
) -> tuple[str, Any]:
    """(runtime name, runner) for a ``runtime`` record of labelmill.json; runner None = plain.

    Raises ValueError naming the field when the record is malformed or its file is missing or
    altered (its SHA-256 must match: a stale graph would score with other weights).
    """
    if not isinstance(record, dict) or record.get("name") not in RUNTIMES:
        got = record.get("name") if isinstance(record, dict) else record
        raise ValueError(f"labelmill.json runtime.name must be one of {RUNTIMES}, got {got!r}")
    name = record["name"]
    if name == REFERENCE:
        return name, None
    if name == "torch-int8":
        return name, TorchRunner(_quantized_torch(model), tokenizer, max_length)
    path = Path(model_dir) / str(record.get("file"))
    if not path.is_file():
        raise ValueError(f"labelmill.json runtime.file {record.get('file')!r} is missing")
    if _sha256(path) != record.get("sha256"):
        raise ValueError(f"labelmill.json runtime.sha256 does not match {str(path)!r}")
    inputs = record.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ValueError(
            f"labelmill.json runtime.inputs must list the graph inputs, got {inputs!r}"
        )
    return name, OnnxRunner(path, tokenizer, max_length, inputs, _threads())


def add_fast_path(
    model_dir: str | Path,
    dev_texts: Sequence[str],
    dev_labels: Any = None,
    candidates: Sequence[str] = RUNTIMES,
) -> dict[str, Any]:
    """Choose and record the fast path of an already exported student (rewrites labelmill.json).

    The same measurement as at export; a previous fast-path file is removed after the new
    record is in place. Returns the record.
    """
    from labelmill.student.export import load_student_metadata
    from labelmill.student.inference import load_student

    path = Path(model_dir)
    meta = load_student_metadata(path)
    student = load_student(path, max_length=256, runtime=REFERENCE)
    record = build_runtime(
        path,
        student.model,
        student.tokenizer,
        meta["thresholds"],
        dev_texts,
        student.max_length,
        dev_labels=dev_labels,
        candidates=candidates,
    )
    old = (meta.get("runtime") or {}).get("file")
    meta["runtime"] = record
    write_json(str(path / "labelmill.json"), meta)  # atomic: a reader sees old or new
    if old and old != record.get("file"):
        (path / old).unlink(missing_ok=True)
    return record
