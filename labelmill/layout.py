"""Where each stage writes under the run directory, and the id-hash splits all stages share.

Run directory (``output_uri``) layout::

    votes/<teacher>/part-*.parquet     teacher votes (labelmill label)
    votes/<teacher>/calibration-<prompt_hash>.json      an embedding teacher's calibration
    embedding-scores/<teacher>/<score_hash>/part-*.parquet  its raw scores, as encoded
    aggregate/labels/part-*.parquet    one soft label set per document (labelmill aggregate)
    aggregate/reliability.json         per-teacher, per-label sensitivity / specificity
    aggregate/summary.json             method, iterations, counts
    student/                           exported Hugging Face student (labelmill distill)
    eval/metrics.json, eval/report.html                                 (labelmill evaluate)
    predictions/part-*.parquet         batch predictions (labelmill predict)

Splits are decided by a hash of the document id alone, so every stage, on any worker, in any
run, puts a document on the same side without coordination.
"""

from __future__ import annotations

import hashlib

from labelmill.config import LabelmillConfig


def run_path(output_uri: str, *parts: str) -> str:
    """``output_uri`` joined with ``parts`` by ``/`` (works for local paths and fsspec URIs)."""
    return "/".join([output_uri.rstrip("/"), *parts])


def aggregate_labels_uri(config: LabelmillConfig) -> str:
    """Directory of the aggregate label Parquet parts."""
    return run_path(config.output_uri, "aggregate", "labels")


def aggregate_file_uri(config: LabelmillConfig, name: str) -> str:
    """A file of the aggregate stage (``reliability.json``, ``summary.json``)."""
    return run_path(config.output_uri, "aggregate", name)


def student_dir(config: LabelmillConfig) -> str:
    """Directory of the exported student (a local path or any fsspec URI)."""
    return config.student.output_dir or run_path(config.output_uri, "student")


def eval_dir(config: LabelmillConfig) -> str:
    """Directory of ``metrics.json`` and ``report.html``."""
    return run_path(config.output_uri, "eval")


def predictions_uri(config: LabelmillConfig) -> str:
    """Directory of the batch prediction Parquet parts."""
    return config.predict.output_uri or run_path(config.output_uri, "predictions")


def predict_model_dir(config: LabelmillConfig) -> str:
    """The student directory that batch prediction loads."""
    return config.predict.model_dir or student_dir(config)


def id_unit(doc_id: str, salt: str) -> float:
    """A uniform number in [0, 1) from the SHA-256 of ``salt`` and the id (deterministic)."""
    digest = hashlib.sha256(f"{salt}\x1f{doc_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_gold_seed(doc_id: str, seed_fraction: float, salt: str = "gold-seed") -> bool:
    """Whether a gold document belongs to the seed (usable for fitting, never for evaluation);
    ``salt`` is ``gold.seed_salt``."""
    if not 0.0 <= seed_fraction < 1.0:
        raise ValueError(f"seed_fraction must lie in [0, 1), got {seed_fraction!r}")
    return id_unit(doc_id, salt) < seed_fraction


def is_dev(doc_id: str, dev_fraction: float) -> bool:
    """Whether a training document belongs to the student's dev split."""
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction!r}")
    return id_unit(doc_id, "student-dev") < dev_fraction


def embedding_scores_uri(output_uri: str, teacher: str, score_hash: str) -> str:
    """Directory of an embedding teacher's raw score parts (its encoding resume point)."""
    return run_path(output_uri, "embedding-scores", teacher, score_hash)


def embedding_calibration_uri(output_uri: str, teacher: str, prompt_hash: str) -> str:
    """The calibration an embedding teacher fitted for one prompt hash (beside its votes)."""
    return run_path(output_uri, "votes", teacher, f"calibration-{prompt_hash}.json")
