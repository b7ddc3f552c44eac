"""Where each stage writes under the run directory, and the id-hash splits all stages share.

Run directory (``output_uri``) layout::

    votes/<teacher>/part-*.parquet     teacher votes (labelmill label)
    votes/<teacher>/calibration-<prompt_hash>.json      an embedding teacher's calibration
    embedding-scores/<teacher>/<score_hash>/part-*.parquet  its raw scores, as encoded
    aggregate/labels/part-*.parquet    one soft label set per document (labelmill aggregate)
    aggregate/reliability.json         per-teacher, per-label sensitivity / specificity
    aggregate/summary.json             method, iterations, counts, thresholds
    student/                           exported Hugging Face student (labelmill distill)
    student-train/                     Ray Train checkpoints while distill runs
    eval/metrics.json, eval/report.html                                 (labelmill evaluate)
    predictions/part-*.parquet         batch predictions (labelmill predict)
    campaign/                          ledger, report.json/html, round-<r>/ (labelmill campaign)
    run_summary.json                   the stages of `labelmill run` and their timings
    logs/<command>-<time>-<pid>.log    engines' output of each command

Every run-directory path is built here and nowhere else.

Splits are decided by a hash of the document id alone, so every stage, on any worker, in any
run, puts a document on the same side without coordination.
"""

from __future__ import annotations

import hashlib

from labelmill.config import LabelmillConfig


def run_path(output_uri: str, *parts: str) -> str:
    """``output_uri`` joined with ``parts`` by ``/`` (works for local paths and fsspec URIs)."""
    return "/".join([output_uri.rstrip("/"), *parts])


def votes_dir(output_uri: str, teacher: str | None = None) -> str:
    """The directory of one teacher's vote parts (or, without a teacher, of all votes)."""
    return run_path(output_uri, "votes", *([teacher] if teacher is not None else []))


def aggregate_path(output_uri: str, *parts: str) -> str:
    """A path of the aggregate stage (``labels``, ``summary.json``, ``reliability.json``)."""
    return run_path(output_uri, "aggregate", *parts)


def default_student_dir(output_uri: str) -> str:
    """Where the student is exported when ``student.output_dir`` is not set."""
    return run_path(output_uri, "student")


def train_checkpoints_uri(output_uri: str) -> str:
    """Where Ray Train keeps the student's checkpoints while distill runs."""
    return run_path(output_uri, "student-train")


def eval_path(output_uri: str, *parts: str) -> str:
    """A path of the evaluate stage (``metrics.json``, ``report.html``)."""
    return run_path(output_uri, "eval", *parts)


def campaign_path(output_uri: str, *parts: str) -> str:
    """A path of the campaign (ledger, ``report.json``, ``round-<r>/...``)."""
    return run_path(output_uri, "campaign", *parts)


def run_summary_uri(output_uri: str) -> str:
    """The stages of ``labelmill run`` and their timings."""
    return run_path(output_uri, "run_summary.json")


def logs_dir(output_uri: str) -> str:
    """Where each command's log file goes."""
    return run_path(output_uri, "logs")


def aggregate_labels_uri(config: LabelmillConfig) -> str:
    """Directory of the aggregate label Parquet parts."""
    return aggregate_path(config.output_uri, "labels")


def aggregate_file_uri(config: LabelmillConfig, name: str) -> str:
    """A file of the aggregate stage (``reliability.json``, ``summary.json``)."""
    return aggregate_path(config.output_uri, name)


def student_dir(config: LabelmillConfig) -> str:
    """Directory of the exported student (a local path or any fsspec URI)."""
    return config.student.output_dir or default_student_dir(config.output_uri)


def eval_dir(config: LabelmillConfig) -> str:
    """Directory of ``metrics.json`` and ``report.html``."""
    return eval_path(config.output_uri)


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
    return run_path(votes_dir(output_uri, teacher), f"calibration-{prompt_hash}.json")
