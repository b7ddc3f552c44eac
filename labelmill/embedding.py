"""The `embedding` teacher's core: pooled sentence embeddings, cosine label scores, calibration.

A sentence encoder embeds each document and each label text ("name: description" or the bare
description); a label's raw score is the cosine similarity of the two (mean pooling over the
attention mask, L2-normalised: what sentence-transformers does for all-MiniLM-L6-v2). Scores
become probabilities with one logistic curve per label, fitted by :class:`ScoreCalibrator`:

- ``platt``: logistic regression of gold on the (standardised) score over the gold seed;
  labels without a positive or a negative in the seed fall back to ``prior``.
- ``prior``: with z the score's z-score over the corpus and z* the standard-normal
  ``1 - prior_rate`` quantile, ``p = sigmoid(prior_slope * (z - z*))``: about ``prior_rate`` of
  the documents get p >= 0.5.

Pure numpy (scikit-learn for the Platt fit, imported lazily); the encoder runs in pipelines/.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from labelmill._validation import as_float_array, check_binary

CALIBRATIONS = ("auto", "platt", "prior")
LABEL_TEXTS = ("description", "name_and_description")


def label_texts(names: Sequence[str], descriptions: Sequence[str], style: str) -> list[str]:
    """The text embedded for each label: ``"name: description"`` or the description alone."""
    if style not in LABEL_TEXTS:
        raise ValueError(f"label text style must be one of {LABEL_TEXTS}, got {style!r}")
    if len(names) != len(descriptions):
        raise ValueError(f"got {len(names)} label names but {len(descriptions)} descriptions")
    if style == "description":
        return list(descriptions)
    return [f"{name}: {text}" for name, text in zip(names, descriptions, strict=True)]


def mean_pool(hidden: Any, mask: Any) -> np.ndarray:
    """Mean of the token vectors where the attention mask is set.

    hidden: (N, T, D), mask: (N, T) 0/1 -> (N, D); a row without any token pools to zeros.
    """
    states = as_float_array(hidden, "hidden")
    weights = as_float_array(mask, "mask")
    if states.ndim != 3 or weights.shape != states.shape[:2]:
        raise ValueError(
            f"hidden must be (N, T, D) and mask (N, T), got {states.shape} and {weights.shape}"
        )
    total = np.einsum("ntd,nt->nd", states, weights)
    counts = weights.sum(axis=1, keepdims=True)
    return total / np.maximum(counts, 1e-9)


def l2_normalize(vectors: Any) -> np.ndarray:
    """Rows scaled to unit length. vectors: (N, D) -> (N, D); zero rows stay zero."""
    arr = as_float_array(vectors, "vectors")
    if arr.ndim != 2:
        raise ValueError(f"vectors must have shape (N, D), got {arr.shape}")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


def cosine_scores(documents: Any, labels: Any) -> np.ndarray:
    """Cosine similarity of every document to every label.

    documents: (N, D), labels: (K, D) -> (N, K) in [-1, 1] (0 against a zero vector).
    """
    docs, labs = l2_normalize(documents), l2_normalize(labels)
    if docs.shape[1] != labs.shape[1]:
        raise ValueError(f"documents have dimension {docs.shape[1]} but labels {labs.shape[1]}")
    return np.clip(docs @ labs.T, -1.0, 1.0)


def prior_z_threshold(prior_rate: float) -> float:
    """z* of the prior rule: the standard-normal ``1 - prior_rate`` quantile (0.16 -> ~0.994)."""
    if not 0.0 < prior_rate < 1.0:
        raise ValueError(f"prior_rate must lie strictly in (0, 1), got {prior_rate!r}")
    return NormalDist().inv_cdf(1.0 - prior_rate)


@dataclass(frozen=True)
class ScoreMoments:
    """Per-label sufficient statistics of scores: row count, sums and sums of squares (K,)."""

    count: int
    total: np.ndarray
    total_sq: np.ndarray

    @classmethod
    def of(cls, scores: Any) -> ScoreMoments:
        """Statistics of one shard. scores: (N, K), N may be 0."""
        arr = as_float_array(scores, "scores")
        if arr.ndim != 2:
            raise ValueError(f"scores must have shape (N, K), got {arr.shape}")
        arr = arr.astype(np.float64)
        return cls(arr.shape[0], arr.sum(axis=0), (arr * arr).sum(axis=0))

    def merge(self, other: ScoreMoments) -> ScoreMoments:
        """The statistics of both shards together."""
        if self.total.shape != other.total.shape:
            raise ValueError(f"cannot merge moments of {self.total.shape} and {other.total.shape}")
        return ScoreMoments(
            self.count + other.count, self.total + other.total, self.total_sq + other.total_sq
        )

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-label mean and population standard deviation, each (K,)."""
        if self.count < 1:
            raise ValueError(f"moments need at least one scored row, got count={self.count}")
        mean = self.total / self.count
        var = np.maximum(self.total_sq / self.count - mean * mean, 0.0)
        return mean, np.sqrt(var)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class ScoreCalibrator:
    """Per-label logistic curves from raw cosine scores (N, K) to probabilities (N, K).

    Every label's curve is ``p = sigmoid(coef_[k] * z + intercept_[k])`` with
    ``z = (score - mean_[k]) / std_[k]`` (corpus statistics). ``method_[k]`` says which rule
    fitted label k (``platt`` or ``prior``). ``C`` is the inverse L2 strength of the Platt fit.
    """

    def __init__(
        self,
        calibration: str = "auto",
        prior_rate: float = 0.16,
        prior_slope: float = 2.0,
        C: float = 1.0,
    ) -> None:
        self.calibration = calibration
        self.prior_rate = prior_rate
        self.prior_slope = prior_slope
        self.C = C

    def fit(
        self,
        mean: Any,
        std: Any,
        seed_scores: Any | None = None,
        seed_gold: Any | None = None,
    ) -> ScoreCalibrator:
        """Fit from corpus statistics mean, std (K,) and optional gold seed scores/gold (M, K).

        ``auto`` is ``platt`` when the seed has rows, else ``prior``; ``platt`` without seed
        rows is an error.
        """
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if self.prior_slope <= 0:
            raise ValueError(f"prior_slope must be > 0, got {self.prior_slope!r}")
        z_star = prior_z_threshold(self.prior_rate)
        mean_arr, std_arr = as_float_array(mean, "mean"), as_float_array(std, "std")
        if mean_arr.ndim != 1 or mean_arr.shape != std_arr.shape or np.any(std_arr < 0):
            raise ValueError(
                f"mean and std must be (K,) with std >= 0, got {mean_arr.shape} and {std_arr}"
            )
        k = mean_arr.shape[0]
        scores, gold = _seed_arrays(seed_scores, seed_gold, k)
        method = resolve_calibration(self.calibration, scores.shape[0])
        if method == "platt" and scores.shape[0] == 0:
            raise ValueError("calibration 'platt' needs gold seed rows, got none")
        self.mean_ = mean_arr.astype(np.float64)
        self.std_ = np.where(std_arr > 0, std_arr, 1.0).astype(np.float64)
        self.coef_ = np.full(k, self.prior_slope)
        self.intercept_ = np.full(k, -self.prior_slope * z_star)
        self.method_ = np.array(["prior"] * k, dtype=object)
        self.coef_[std_arr == 0] = 0.0  # a constant score carries no information
        if method == "platt":
            self._fit_platt((scores - self.mean_) / self.std_, gold)
        return self

    def _fit_platt(self, z: np.ndarray, gold: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        for label in range(z.shape[1]):
            positives = int(gold[:, label].sum())
            if positives == 0 or positives == gold.shape[0]:
                continue  # one class only: the prior rule stays
            model = LogisticRegression(C=self.C).fit(z[:, [label]], gold[:, label])
            self.coef_[label] = float(model.coef_[0, 0])
            self.intercept_[label] = float(model.intercept_[0])
            self.method_[label] = "platt"

    def predict_proba(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities. scores: (N, K) -> (N, K) in [0, 1]."""
        if not hasattr(self, "coef_"):
            raise ValueError("ScoreCalibrator is not fitted: call fit first")
        arr = as_float_array(scores, "scores")
        if arr.ndim != 2 or arr.shape[1] != self.coef_.shape[0]:
            raise ValueError(f"scores must have shape (N, {self.coef_.shape[0]}), got {arr.shape}")
        z = (arr - self.mean_) / self.std_
        return _sigmoid(self.coef_ * z + self.intercept_)

    def to_dict(self) -> dict[str, Any]:
        """The fitted curves as JSON-able lists (for the calibration record of a run)."""
        if not hasattr(self, "coef_"):
            raise ValueError("ScoreCalibrator is not fitted: call fit first")
        return {
            "settings": {
                "calibration": self.calibration,
                "prior_rate": self.prior_rate,
                "prior_slope": self.prior_slope,
                "C": self.C,
            },
            "mean": self.mean_.tolist(),
            "std": self.std_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "method": [str(m) for m in self.method_],
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ScoreCalibrator:
        """A fitted calibrator back from :meth:`to_dict`."""
        try:
            calibrator = cls(**payload["settings"])
            calibrator.mean_ = np.asarray(payload["mean"], dtype=np.float64)
            calibrator.std_ = np.asarray(payload["std"], dtype=np.float64)
            calibrator.coef_ = np.asarray(payload["coef"], dtype=np.float64)
            calibrator.intercept_ = np.asarray(payload["intercept"], dtype=np.float64)
            calibrator.method_ = np.array(payload["method"], dtype=object)
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a calibration record: {error!r}") from None
        return calibrator


def _seed_arrays(scores: Any | None, gold: Any | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated seed (scores, gold), each (M, K); M = 0 when there is no seed."""
    if scores is None and gold is None:
        return np.zeros((0, k)), np.zeros((0, k))
    if scores is None or gold is None:
        raise ValueError("seed_scores and seed_gold must be given together")
    arr = as_float_array(scores, "seed_scores")
    if arr.ndim != 2 or arr.shape[1] != k or np.any(~np.isfinite(arr)):
        raise ValueError(f"seed_scores must be finite with shape (M, {k}), got {arr.shape}")
    return arr.astype(np.float64), check_binary(gold, "seed_gold", shape=arr.shape)


def resolve_calibration(calibration: str, seed_rows: int) -> str:
    """``auto`` -> ``platt`` with seed rows, else ``prior``; the others as they are."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    if calibration == "auto":
        return "platt" if seed_rows > 0 else "prior"
    return calibration


def embedding_prompt_hash(
    model: str,
    max_length: int,
    texts: Sequence[str],
    calibration: dict[str, Any],
    source: str,
) -> str:
    """Lineage hash of an embedding teacher: first 16 hex digits of SHA-256.

    Covers the model reference, the encoder input cap, the embedded label texts, the
    calibration settings (resolved method, prior rate and slope) and ``source``, a digest of the
    data the calibration is fitted on (corpus ids, gold seed): equal hashes give equal votes.
    """
    payload = {
        "kind": "embedding",
        "model": model,
        "max_length": max_length,
        "label_texts": list(texts),
        "calibration": calibration,
        "source": source,
        "layout": 1,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def embedding_score_hash(model: str, max_length: int, texts: Sequence[str]) -> str:
    """Key of an encoder's raw scores: first 16 hex digits of SHA-256 of what fixes them.

    The model reference, the input cap and the label texts decide a document's raw cosine
    scores; calibration and the corpus do not, so raw scores survive a new corpus or seed.
    """
    payload = {"model": model, "max_length": max_length, "label_texts": list(texts), "layout": 1}
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def id_digest(ids: Sequence[str]) -> int:
    """Order-free digest of a shard's ids: sum of 64-bit id hashes mod 2**64 (add shards)."""
    total = 0
    for doc_id in ids:
        digest = hashlib.sha256(str(doc_id).encode("utf-8", "surrogatepass")).digest()
        total = (total + int.from_bytes(digest[:8], "big")) % 2**64
    return total
