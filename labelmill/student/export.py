"""Export a trained student as a self-describing, pickle-free Hugging Face directory.

The directory holds the safetensors weights and config, the tokenizer, ``labelmill.json``
(taxonomy, per-label thresholds, lineage, metrics, ``model_version``) and a short ``README.md``
model card. ``out_dir`` may be a local path or any fsspec URI (``s3://bucket/run/student``): a
remote export is assembled locally and published with :func:`labelmill.artifacts.publish_dir`.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from labelmill.artifacts import is_uri, publish_dir, version_of
from labelmill.errors import InputError
from labelmill.jsonio import write_json

# Schema identity of labelmill.json (not configuration): bump when its layout changes.
_FORMAT_VERSION = 1
_METADATA_FILE = "labelmill.json"
_REQUIRED_KEYS = ("format_version", "taxonomy", "thresholds", "lineage", "metrics")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _check_thresholds(thresholds: Any, num_labels: int) -> list[float]:
    """thresholds (K,) in [0, 1] -> list of K floats."""
    try:
        arr = np.asarray(thresholds, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"thresholds must be numeric, got {thresholds!r}") from exc
    if arr.shape != (num_labels,):
        raise ValueError(f"thresholds must have shape ({num_labels},), got {arr.shape}")
    bad = ~((arr >= 0.0) & (arr <= 1.0))
    if np.any(bad):
        raise ValueError(f"thresholds must lie in [0, 1], got {float(arr[bad][0])!r}")
    return [float(t) for t in arr]


def _check_descriptions(descriptions: Any, num_labels: int) -> list[str]:
    """descriptions (K,) of str -> list of K str."""
    if isinstance(descriptions, str) or not isinstance(descriptions, Sequence):
        raise ValueError(f"taxonomy descriptions must be a list of str, got {descriptions!r}")
    values = list(descriptions)
    if len(values) != num_labels or any(not isinstance(d, str) for d in values):
        raise ValueError(
            f"taxonomy descriptions must be {num_labels} strings (one per label), got {values!r}"
        )
    return values


def _check_json(value: Any, name: str) -> Any:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be JSON-serializable without NaN/inf: {exc}") from exc


def _check_metrics(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a dict, got {type(metrics).__name__}")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        if not isinstance(key, str) or not ok or not math.isfinite(float(value)):
            raise ValueError(f"metrics must map str to finite numbers, got {key!r}: {value!r}")
        out[key] = float(value)
    return out


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _model_card(meta: dict[str, Any], model_type: str) -> str:
    names = meta["taxonomy"]["names"]
    lines = [
        "# labelmill student",
        "",
        f"A `{model_type}` multi-label text classifier distilled by labelmill from aggregated "
        "teacher pseudo-labels: the encoder's token states are mean-pooled over the attention "
        "mask and L2-normalised, then a linear head gives one logit per label. Load it with "
        "`labelmill.student.model.load_pooled_classifier(path)` (the encoder alone loads with "
        "`transformers.AutoModel`; the head is `labelmill_head.weight` / `.bias` in "
        "`model.safetensors`), apply a sigmoid to the logits and compare each label's "
        "probability to its threshold.",
        "",
        f"Taxonomy version: `{meta['taxonomy']['version']}` ({len(names)} labels).",
        "",
        "| id | label | threshold |",
        "|---:|---|---:|",
    ]
    lines += [
        f"| {i} | {_md(n)} | {t:.4f} |"
        for i, (n, t) in enumerate(zip(names, meta["thresholds"], strict=True))
    ]
    lines += ["", "## Metrics", ""]
    if meta["metrics"]:
        lines += ["| metric | value |", "|---|---:|"]
        lines += [f"| {_md(k)} | {v:.4f} |" for k, v in meta["metrics"].items()]
    else:
        lines.append("No metrics recorded.")
    lines += ["", "## Lineage", ""]
    if meta["lineage"]:
        lines += [f"- **{_md(k)}**: `{_md(json.dumps(v))}`" for k, v in meta["lineage"].items()]
    else:
        lines.append("No lineage recorded.")
    lines += ["", f"Metadata: `{_METADATA_FILE}` (format version {_FORMAT_VERSION}).", ""]
    return "\n".join(lines)


def export_student(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    taxonomy_names: Sequence[str],
    taxonomy_version: str,
    thresholds: Any,
    lineage: dict[str, Any],
    metrics: dict[str, float],
    taxonomy_descriptions: Sequence[str] | None = None,
    fast_path_texts: Sequence[str] | None = None,
    fast_path_labels: Any = None,
) -> Path | str:
    """Write the student to ``out_dir`` (must not exist or be empty) and return its path.

    ``out_dir`` is a local path or an fsspec URI; a URI is replaced as a whole (assembled in a
    local temp dir, then published with ``labelmill.json`` last) and returned as given.

    ``taxonomy_names`` (K,) must equal the model's id2label order; ``thresholds`` is (K,) in
    [0, 1]; ``taxonomy_descriptions`` (K,), when given, is stored beside the names (the
    serving cascade shows them to its teacher). The directory is assembled in a sibling temp
    dir and renamed into place, so it is either complete or absent. Raises RuntimeError if
    any pickle-format file was written.

    ``fast_path_texts`` (the dev rows; ``fast_path_labels`` (N, K) their labels, optional):
    measure the CPU runtimes and record the fastest within the accuracy guard as
    ``runtime`` in labelmill.json (:mod:`labelmill.student.fast_path`).
    """
    config = model.config
    num_labels = int(config.num_labels)
    names = list(taxonomy_names) if not isinstance(taxonomy_names, str) else None
    if names is None or any(not isinstance(n, str) for n in names):
        raise ValueError(f"taxonomy_names must be a sequence of str, got {taxonomy_names!r}")
    model_names = [config.id2label[i] for i in range(num_labels)]
    if names != model_names:
        raise ValueError(f"taxonomy_names {names!r} do not match model id2label {model_names!r}")
    if config.problem_type != "multi_label_classification":
        raise ValueError(
            f"model problem_type must be 'multi_label_classification', got {config.problem_type!r}"
        )
    if not isinstance(taxonomy_version, str) or not taxonomy_version:
        raise ValueError(f"taxonomy_version must be a non-empty str, got {taxonomy_version!r}")
    remote = is_uri(out_dir)
    # A remote export is assembled in a local scratch dir, then published as a whole.
    scratch = Path(tempfile.mkdtemp(prefix="labelmill-export-")) if remote else None
    out = scratch / "student" if scratch is not None else Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out_dir must not exist or be an empty directory, got {str(out)!r}")
    taxonomy: dict[str, Any] = {"names": names, "version": taxonomy_version}
    if taxonomy_descriptions is not None:
        taxonomy["descriptions"] = _check_descriptions(taxonomy_descriptions, len(names))
    meta = {
        "format_version": _FORMAT_VERSION,
        "taxonomy": taxonomy,
        "thresholds": _check_thresholds(thresholds, num_labels),
        "lineage": _check_json(lineage, "lineage"),
        "metrics": _check_metrics(metrics),
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        # What readers key their node caches by (labelmill.artifacts): weights identify it.
        meta["model_version"] = version_of(taxonomy_version, tmp)
        if fast_path_texts is not None:
            from labelmill.student.fast_path import runtime_for_export

            meta["runtime"] = runtime_for_export(
                tmp, model, tokenizer, meta, fast_path_texts, fast_path_labels
            )
        write_json(str(tmp / _METADATA_FILE), meta)
        (tmp / "README.md").write_text(_model_card(meta, config.model_type), encoding="utf-8")
        files = [p for p in tmp.rglob("*") if p.is_file()]
        pickled = sorted(str(p.relative_to(tmp)) for p in files if p.suffix in _PICKLE_SUFFIXES)
        if pickled:
            raise RuntimeError(f"export wrote pickle-format files {pickled}; refusing to publish")
        if not any(p.suffix == ".safetensors" for p in files):
            raise RuntimeError(f"export wrote no .safetensors weights in {str(tmp)!r}")
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    if scratch is not None:
        try:
            publish_dir(out, str(out_dir))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return out_dir  # type: ignore[return-value]
    return out


def _exists(uri: str) -> bool:
    """Whether a file exists at ``uri`` (local path or fsspec URI)."""
    fs, path = fsspec.core.url_to_fs(uri)
    return bool(fs.isfile(path))


def _read_text(uri: str) -> str:
    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "rb") as handle:
        return handle.read().decode("utf-8")


def load_student_metadata(model_dir: str | Path) -> dict[str, Any]:
    """Read and validate ``labelmill.json`` from an exported student directory.

    ``model_dir`` is a local path or an fsspec URI (only the two small JSON files are read).
    Returns the parsed dict; thresholds has one entry per taxonomy name (K,). When the
    directory's ``config.json`` is present its label count must agree too.
    """
    root = str(model_dir).rstrip("/")
    path = f"{root}/{_METADATA_FILE}"
    if not _exists(path):
        raise InputError(f"no {_METADATA_FILE} in {str(model_dir)!r}")
    try:
        meta = json.loads(_read_text(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path!r}: {exc}") from exc
    if not isinstance(meta, dict):
        raise InputError(f"{_METADATA_FILE} must hold a JSON object, got {type(meta).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in meta]
    if missing:
        raise InputError(f"{_METADATA_FILE} lacks keys {missing}, got {sorted(meta)}")
    if meta["format_version"] != _FORMAT_VERSION:
        raise InputError(
            f"unsupported format_version {meta['format_version']!r}, expected {_FORMAT_VERSION}"
        )
    taxonomy = meta["taxonomy"]
    if not isinstance(taxonomy, dict) or not {"names", "version"} <= set(taxonomy):
        raise InputError(f"taxonomy must hold 'names' and 'version', got {taxonomy!r}")
    names = taxonomy["names"]
    if not isinstance(names, list) or not names or any(not isinstance(n, str) for n in names):
        raise InputError(f"taxonomy names must be a non-empty list of str, got {names!r}")
    if not isinstance(meta["thresholds"], list) or len(meta["thresholds"]) != len(names):
        got = meta["thresholds"]
        count = len(got) if isinstance(got, list) else type(got).__name__
        raise InputError(f"thresholds must have {len(names)} entries (one per label), got {count}")
    meta["thresholds"] = _check_thresholds(meta["thresholds"], len(names))
    if "descriptions" in taxonomy:
        taxonomy["descriptions"] = _check_descriptions(taxonomy["descriptions"], len(names))
    config_path = f"{root}/config.json"
    if _exists(config_path):
        try:
            config = json.loads(_read_text(config_path))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read {config_path!r}: {exc}") from exc
        id2label = config.get("id2label", {}) if isinstance(config, dict) else {}
        if len(id2label) != len(names):
            raise InputError(
                f"config.json has {len(id2label)} labels but {_METADATA_FILE} has {len(names)}"
            )
    return meta
