"""Pure helpers of student training: which rows train, how much each weighs, when to stop.

Only numpy at import time (the row helpers run in Ray Data tasks); torch is imported by
:func:`loss_function` when it is called.

Nothing here knows about Ray; the distill pipeline (``pipelines/distill.py``) applies these to
Arrow batches on Ray Data workers and inside the Ray Train loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from labelmill._validation import check_probs
from labelmill.aggregate import threshold_probs, tune_thresholds
from labelmill.config import StudentConfig
from labelmill.layout import is_dev
from labelmill.metrics import precision_recall_f1

if TYPE_CHECKING:
    import torch

    from labelmill.student.model import LossFn


def row_weights(probs: Any, confidence_weighting: bool, min_row_weight: float) -> np.ndarray:
    """Confidence weight of each training row.

    probs: (N, K) soft targets in [0, 1] -> (N,) float32. With ``confidence_weighting`` a row
    weighs ``max(mean_k |2 p_k - 1|, min_row_weight)`` (a row whose labels sit at 0.5 is pure
    noise, one at 0/1 is certain); without it every row weighs 1.
    """
    if not (isinstance(min_row_weight, int | float) and 0.0 < min_row_weight <= 1.0):
        raise ValueError(f"min_row_weight must lie in (0, 1], got {min_row_weight!r}")
    arr = check_probs(probs)
    if np.isnan(arr).any():
        raise ValueError("probs must not contain NaN (drop all-error rows first)")
    if not confidence_weighting:
        return np.ones(arr.shape[0], dtype=np.float32)
    if arr.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    confidence = np.abs(2.0 * arr - 1.0).mean(axis=1)
    return np.maximum(confidence, min_row_weight).astype(np.float32)


def _usable_probs(value: Any, num_labels: int) -> bool:
    if value is None:
        return False
    values = list(value)
    if len(values) != num_labels:
        raise ValueError(
            f"probs must have {num_labels} values (one per taxonomy label), got {len(values)}; "
            "were the aggregate labels made under another taxonomy?"
        )
    return all(v is not None and math.isfinite(v) and 0.0 <= v <= 1.0 for v in values)


def usable_rows(
    texts: Sequence[str | None],
    probs: Sequence[Sequence[float] | None],
    errors: Sequence[str | None],
    has_gold: Sequence[bool],
    gold_seed: Sequence[bool | None],
    num_labels: int,
    exclude_eval_gold: bool,
) -> np.ndarray:
    """Which aggregate rows the student may learn from -> (N,) bool.

    A row is used when its text is not null, its ``probs`` are K finite values in [0, 1], its
    ``error`` is null and, with ``exclude_eval_gold``, it is not a held-out gold document
    (a row with gold that is not in the gold seed). ``probs`` of another length than K raise
    ``ValueError`` (a taxonomy mismatch, not a bad row).
    """
    columns = {"probs": probs, "errors": errors, "has_gold": has_gold, "gold_seed": gold_seed}
    for name, column in columns.items():
        if len(column) != len(texts):
            raise ValueError(f"{name} has {len(column)} rows, texts has {len(texts)}")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be an int >= 1, got {num_labels!r}")
    keep = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        held_out = exclude_eval_gold and bool(has_gold[i]) and not bool(gold_seed[i])
        keep[i] = (
            text is not None
            and errors[i] is None
            and not held_out
            and _usable_probs(probs[i], num_labels)
        )
    return keep


def dev_mask(ids: Sequence[str], dev_fraction: float) -> np.ndarray:
    """(N,) bool: which documents form the dev split (by id hash, see ``layout.is_dev``)."""
    return np.fromiter((is_dev(str(i), dev_fraction) for i in ids), dtype=bool, count=len(ids))


class EarlyStopping:
    """Tracks the dev loss per epoch; stops after ``patience`` epochs without improvement.

    An epoch improves when its loss is below ``best_loss - min_delta``. Attributes:
    ``best_loss``, ``best_epoch`` (1-based, 0 before any), ``epochs_run``, ``bad_epochs``.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an int >= 1, got {patience!r}")
        if not (isinstance(min_delta, int | float) and min_delta >= 0.0):
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best_loss = math.inf
        self.best_epoch = 0
        self.epochs_run = 0
        self.bad_epochs = 0

    def update(self, loss: float) -> bool:
        """Record one epoch's dev loss; return whether it is the new best."""
        if not (isinstance(loss, int | float) and math.isfinite(loss)):
            raise ValueError(f"dev loss must be a finite number, got {loss!r}")
        self.epochs_run += 1
        if loss < self.best_loss - self.min_delta:
            self.best_loss = float(loss)
            self.best_epoch = self.epochs_run
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` epochs in a row brought no improvement."""
        return self.bad_epochs >= self.patience


class ThresholdTargets(NamedTuple):
    """Dev rows to tune thresholds on: ``rows`` (M,) indices, ``targets`` (M, K) 0/1, source."""

    rows: np.ndarray
    targets: np.ndarray
    source: str


def choose_threshold_targets(
    agg_probs: Any,
    gold: Sequence[Sequence[str] | None],
    gold_seed: Sequence[bool | None],
    names: Sequence[str],
    threshold: float,
    min_gold_rows: int,
) -> ThresholdTargets:
    """What the student's thresholds are tuned against on the dev split.

    agg_probs: (N, K) aggregate probabilities, gold: N label lists (None: no gold), gold_seed:
    (N,). With at least ``min_gold_rows`` gold seed rows, the targets are their gold labels
    (source ``gold_seed``; names outside ``names`` are ignored); otherwise every row's hard
    aggregate labels ``agg_probs >= threshold`` (source ``aggregate``; NaN rows left out).
    """
    p = check_probs(agg_probs, "agg_probs")
    n, k = p.shape
    if len(names) != k:
        raise ValueError(f"names has {len(names)} labels, agg_probs has {k}")
    if len(gold) != n or len(gold_seed) != n:
        raise ValueError(f"gold ({len(gold)}) and gold_seed ({len(gold_seed)}) need {n} rows")
    if not (isinstance(threshold, int | float) and 0.0 < threshold < 1.0):
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    if isinstance(min_gold_rows, bool) or not isinstance(min_gold_rows, int) or min_gold_rows < 1:
        raise ValueError(f"min_gold_rows must be an int >= 1, got {min_gold_rows!r}")
    seed_rows = [i for i in range(n) if gold[i] is not None and bool(gold_seed[i])]
    if len(seed_rows) >= min_gold_rows:
        index = {name: j for j, name in enumerate(names)}
        targets = np.zeros((len(seed_rows), k), dtype=np.float64)
        for row, i in enumerate(seed_rows):
            for label in gold[i] or []:
                if label in index:
                    targets[row, index[label]] = 1.0
        return ThresholdTargets(np.asarray(seed_rows, dtype=np.int64), targets, "gold_seed")
    rows = np.flatnonzero(~np.isnan(p).any(axis=1))
    targets = (p[rows] >= threshold).astype(np.float64)
    return ThresholdTargets(rows.astype(np.int64), targets, "aggregate")


def is_head_parameter(name: str) -> bool:
    """Whether a named parameter belongs to the pooler or the classification head."""
    parts = name.split(".")
    return parts[0] in ("classifier", "pre_classifier", "score") or "pooler" in parts


def parameter_groups(model: Any, config: StudentConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups: the encoder at ``learning_rate``, the pooler and head at
    ``head_learning_rate`` (both with ``weight_decay``). Names may carry a DDP ``module.``
    prefix. Raises ValueError when no head parameter is found (not a classification model)."""
    body, head = [], []
    for name, parameter in model.named_parameters():
        bare = name.removeprefix("module.")
        (head if is_head_parameter(bare) else body).append(parameter)
    if not head:
        raise ValueError(
            f"no classification head parameters in {type(model).__name__} "
            "(expected names starting with classifier/pre_classifier/score or a pooler)"
        )
    return [
        {"params": body, "lr": config.learning_rate, "weight_decay": config.weight_decay},
        {"params": head, "lr": config.head_learning_rate, "weight_decay": config.weight_decay},
    ]


def loss_function(config: StudentConfig) -> LossFn:
    """The configured row-weighted loss: ``(logits (B, K), targets (B, K), weights (B,)) -> ()``.

    Imports torch lazily, so that the row helpers above stay light in Ray Data tasks.
    """
    from labelmill.student.losses import asymmetric_loss, soft_bce_loss

    if config.loss == "bce":
        return soft_bce_loss
    if config.loss == "asymmetric":

        def asl(
            logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None
        ) -> torch.Tensor:
            return asymmetric_loss(
                logits,
                targets,
                weights,
                gamma_pos=config.asl_gamma_pos,
                gamma_neg=config.asl_gamma_neg,
                clip=config.asl_clip,
            )

        return asl
    raise ValueError(f"student.loss must be 'bce' or 'asymmetric', got {config.loss!r}")


class DevScores(NamedTuple):
    """Tuned thresholds (K,) and the dev F1 they reach against the chosen targets."""

    thresholds: np.ndarray
    micro_f1: float
    macro_f1: float
    source: str
    rows: int


def tune_on_dev(
    student_probs: Any,
    agg_probs: Any,
    gold: Sequence[Sequence[str] | None],
    gold_seed: Sequence[bool | None],
    names: Sequence[str],
    threshold: float,
    min_gold_rows: int,
) -> DevScores:
    """Per-label thresholds of the student on the dev split, and its F1 at them.

    student_probs: (N, K) the student's dev probabilities; agg_probs, gold, gold_seed: the
    same N rows' aggregate probabilities and gold (see :func:`choose_threshold_targets`, which
    decides what the thresholds are tuned and scored against) -> DevScores.
    """
    probs = check_probs(student_probs, "student_probs")
    if probs.shape != np.shape(agg_probs):
        raise ValueError(
            f"student_probs shape {probs.shape} does not match agg_probs {np.shape(agg_probs)}"
        )
    chosen = choose_threshold_targets(agg_probs, gold, gold_seed, names, threshold, min_gold_rows)
    if chosen.rows.size == 0:
        raise ValueError("no dev rows to tune thresholds on (every aggregate row is NaN)")
    dev = probs[chosen.rows]
    thresholds = tune_thresholds(dev, chosen.targets)
    scores = precision_recall_f1(chosen.targets, threshold_probs(dev, thresholds).astype(float))
    return DevScores(
        thresholds,
        scores["micro_f1"],
        scores["macro_f1"],
        chosen.source,
        int(chosen.rows.size),
    )
