"""The ``seed-only`` baseline: what the gold seed alone teaches a linear model.

The loop (teachers -> aggregate -> student) costs teacher calls and a fine-tuning run; the
gold seed it anchors on could also train a classifier by itself. ``labelmill evaluate`` scores
that classifier beside every other system, so a glance says whether the loop earned its cost:
one logistic regression per label (scikit-learn, ``class_weight=None``, a fixed
``random_state``) on the student backbone's mean-pooled, L2-normalised embeddings, fitted on
the seed's gold and nothing else.

Its regularisation C is chosen on the seed alone (:func:`train_seed_baseline`): the C of
:data:`C_GRID` whose out-of-fold probabilities have the lowest log-loss. A fixed C is not
neutral: on unit-length embeddings scikit-learn's default ``C=1.0`` shrinks every probability
towards the label's prior, and a rule that cuts by expected F1 then cuts too high (measured on
the demo's held-out gold: ROC-AUC 0.84 at every C, micro-F1 0.37 at C=1, 0.52 at C=10, the C
its seed's log-loss picks).

Thresholds follow the one per-label rule of every system (:mod:`labelmill.aggregation`), but
the seed is this model's own training data: its in-sample probabilities would tune thresholds
on rows it has memorised. They are tuned instead on **out-of-fold** probabilities of the seed
(:func:`out_of_fold_proba`, shuffled K-fold). A label with no positive in the training rows
(of a fold, or of the whole seed) is not fitted: its probability is 0, and where the whole seed
has no positive the label is never predicted (threshold 1); a label that every training row
has gets probability 1.

Pure numpy + scikit-learn: no Ray, torch or transformers (the embedding is in pipelines/).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from labelmill._validation import check_binary, check_finite
from labelmill.aggregation import ThresholdChoice, choose_thresholds, threshold_stats
from labelmill.errors import InputError

BASELINE_NAME = "seed-only"
BASELINE_KIND = "baseline"
N_FOLDS = 5
# The C grid, one value a decade around scikit-learn's default of 1.0; the seed picks.
C_GRID = (0.1, 1.0, 10.0, 100.0)
# Out-of-fold probabilities need one row to predict and one to learn from.
MIN_SEED_ROWS = 2
NO_SEED_POSITIVE = "no_seed_positive"


def _check_embeddings(embeddings: Any, name: str = "embeddings") -> np.ndarray:
    """(N, H) finite floats, else ValueError naming the argument."""
    return check_finite(embeddings, name, "N, H")


def _check_pair(embeddings: Any, gold: Any) -> tuple[np.ndarray, np.ndarray]:
    """embeddings (N, H), gold (N, K) 0/1 with N >= 1 and K >= 1 -> both as float arrays."""
    x = _check_embeddings(embeddings)
    y = check_binary(gold, "gold")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"gold must have {x.shape[0]} rows like embeddings, got {y.shape}")
    if x.shape[0] == 0 or y.shape[1] == 0:
        raise InputError(f"the seed needs at least one row and one label, got gold {y.shape}")
    return x, y


class SeedBaseline(BaseEstimator):
    """One logistic regression per label on sentence embeddings (scikit-learn shaped).

    ``fit(embeddings: (N, H), gold: (N, K)) -> self``;
    ``predict_proba(embeddings: (M, H)) -> (M, K)`` in [0, 1].

    A label with one class in the training rows is not fitted: it predicts that class (0 or 1).

    Args:
        C: inverse L2 strength of every regression (> 0).
        max_iter: lbfgs iterations at most (>= 1).
        random_state: passed to every regression, so a refit gives the same model.

    Fitted attributes: ``estimators_`` (K, a ``LogisticRegression`` or ``None`` for a
    one-class label), ``constant_`` ((K,) the predicted value of one-class labels, NaN for
    fitted ones), ``n_features_in_`` (H), ``n_labels_`` (K).
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000, random_state: int = 0) -> None:
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def _check_params(self) -> None:
        C = self.C
        if isinstance(C, bool) or not isinstance(C, numbers.Real) or not (0 < C < math.inf):
            raise ValueError(f"C must be a finite number > 0, got {C!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int):
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")

    def fit(self, embeddings: Any, gold: Any) -> SeedBaseline:
        """embeddings: (N, H), gold: (N, K) 0/1 -> self (fitted)."""
        self._check_params()
        x, y = _check_pair(embeddings, gold)
        self.estimators_: list[LogisticRegression | None] = []
        self.constant_ = np.full(y.shape[1], np.nan)
        for k in range(y.shape[1]):
            column = y[:, k]
            if column.min() == column.max():  # nothing to separate: predict the one class
                self.estimators_.append(None)
                self.constant_[k] = column[0]
                continue
            model = LogisticRegression(
                C=float(self.C),
                class_weight=None,
                max_iter=self.max_iter,
                random_state=self.random_state,
            )
            self.estimators_.append(model.fit(x, column))
        self.n_features_in_ = x.shape[1]
        self.n_labels_ = y.shape[1]
        return self

    def predict_proba(self, embeddings: Any) -> np.ndarray:
        """embeddings: (M, H) -> (M, K) probability of each label."""
        check_is_fitted(self, "estimators_")
        x = _check_embeddings(embeddings)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"embeddings have {x.shape[1]} features, the model was fitted on "
                f"{self.n_features_in_}"
            )
        out = np.empty((x.shape[0], self.n_labels_))
        for k, model in enumerate(self.estimators_):
            if model is None or x.shape[0] == 0:
                out[:, k] = self.constant_[k]
            else:
                out[:, k] = model.predict_proba(x)[:, 1]  # classes_ are [0., 1.]
        return out


def out_of_fold_proba(
    estimator: SeedBaseline,
    embeddings: Any,
    gold: Any,
    n_folds: int = N_FOLDS,
    random_state: int = 0,
) -> np.ndarray:
    """Each seed row's probabilities from a clone of ``estimator`` fitted on the other folds.

    embeddings: (N, H), gold: (N, K) -> (N, K). Folds: shuffled ``KFold`` with
    ``min(n_folds, N)`` splits (leave-one-out on a seed smaller than ``n_folds``); no
    stratification, so a fold's training rows may hold one class of a label, which the
    estimator predicts as that class.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds must be an int >= 2, got {n_folds!r}")
    x, y = _check_pair(embeddings, gold)
    if x.shape[0] < MIN_SEED_ROWS:
        raise InputError(
            f"out-of-fold probabilities need at least {MIN_SEED_ROWS} seed rows, got {x.shape[0]}"
        )
    folds = KFold(n_splits=min(n_folds, x.shape[0]), shuffle=True, random_state=random_state)
    out = np.empty(y.shape)
    for train, test in folds.split(x):
        out[test] = clone(estimator).fit(x[train], y[train]).predict_proba(x[test])
    return out


def seed_thresholds(oof: Any, gold: Any, fixed: float | None = None) -> ThresholdChoice:
    """Per-label thresholds by the rule of every system, from the seed's out-of-fold ``oof``.

    oof: (N, K), gold: (N, K) -> ThresholdChoice (K,). Every seed row counts as gold seed;
    ``fixed`` (``aggregate.threshold``) overrides the rule as for every system. A label with no
    seed positive gets threshold 1 (source ``no_seed_positive``): its probability is 0, so it
    is never predicted, whatever the rule makes of an all-zero column.
    """
    y = check_binary(gold, "gold")
    choice = choose_thresholds(threshold_stats(oof, y), fixed=fixed)
    if fixed is not None:
        return choice
    empty = y.sum(axis=0) == 0
    sources = tuple(
        NO_SEED_POSITIVE if empty[k] else source for k, source in enumerate(choice.sources)
    )
    criterion = np.where(empty, np.nan, choice.criterion)
    return ThresholdChoice(np.where(empty, 1.0, choice.thresholds), sources, criterion)


@dataclass(frozen=True)
class BaselineFit:
    """The baseline fitted on the whole seed, its thresholds, and how its C was chosen.

    model: fitted :class:`SeedBaseline`; thresholds: ThresholdChoice (K,); C: the chosen
    inverse regularisation; log_loss: {C: mean out-of-fold log-loss over the seed's cells}.
    """

    model: SeedBaseline
    thresholds: ThresholdChoice
    C: float
    log_loss: dict[float, float]


def _check_grid(Cs: Sequence[float]) -> tuple[float, ...]:
    grid = tuple(Cs)
    ok = [
        isinstance(c, numbers.Real) and not isinstance(c, bool) and 0 < c < math.inf for c in grid
    ]
    if not grid or not all(ok):
        raise ValueError(f"Cs must be a non-empty sequence of finite numbers > 0, got {Cs!r}")
    return tuple(sorted(float(c) for c in set(grid)))


def train_seed_baseline(
    embeddings: Any,
    gold: Any,
    estimator: SeedBaseline | None = None,
    n_folds: int = N_FOLDS,
    fixed: float | None = None,
    Cs: Sequence[float] = C_GRID,
) -> BaselineFit:
    """Choose C on the seed, tune thresholds out of fold, fit on the whole seed.

    embeddings: (N, H), gold: (N, K) -> BaselineFit. For every C of ``Cs`` the seed's
    out-of-fold probabilities are computed (the same folds, drawn with the estimator's
    ``random_state``); the C with the lowest mean log-loss over all (row, label) cells wins
    (ties: the smaller C, the stronger prior), and its out-of-fold probabilities tune the
    thresholds. Only the seed is looked at: held-out gold chooses nothing. ``Cs=(c,)`` fixes C.
    Default estimator: ``SeedBaseline()``.
    """
    template = SeedBaseline() if estimator is None else estimator
    y = check_binary(gold, "gold")
    grid = _check_grid(Cs)
    losses: dict[float, float] = {}
    best: tuple[float, np.ndarray] | None = None
    # Hundreds of small lbfgs fits: a multi-threaded BLAS spends more on its threads than on
    # these (N, H) products (5-20x slower on a busy 2-core machine); one thread while we fit.
    with threadpool_limits(limits=1, user_api="blas"):
        for C in grid:
            candidate = clone(template).set_params(C=C)
            oof = out_of_fold_proba(candidate, embeddings, y, n_folds, template.random_state)
            losses[C] = float(log_loss(y.ravel(), oof.ravel(), labels=[0.0, 1.0]))
            if best is None or losses[C] < losses[best[0]]:
                best = (C, oof)
        C, oof = best
        model = clone(template).set_params(C=C).fit(embeddings, y)
    return BaselineFit(model, seed_thresholds(oof, y, fixed), C, losses)


def _micro_f1(systems: Mapping[str, Any], name: str | None) -> float | None:
    value = (systems.get(name) or {}).get("micro_f1") if name is not None else None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def loop_verdict(document: Mapping[str, Any]) -> str | None:
    """One sentence: did the loop beat ``seed-only`` and the best teacher (micro-F1)?

    The loop is the student when it was scored, else the aggregate. "Beat" means a higher
    micro-F1 at the three decimals shown, so the sentence agrees with its own figures. None
    when there is no loop system or nothing to compare it with.
    """
    systems = document["systems"]
    loop = next((n for n in ("student", "aggregate") if _micro_f1(systems, n) is not None), None)
    if loop is None:
        return None
    mine = round(_micro_f1(systems, loop), 3)
    rivals = []
    if (value := _micro_f1(systems, BASELINE_NAME)) is not None:
        rivals.append((f"{BASELINE_NAME} ({value:.3f})", round(value, 3)))
    best = document.get("best_teacher")
    if (value := _micro_f1(systems, best)) is not None:
        rivals.append((f"the best teacher, {best} ({value:.3f})", round(value, 3)))
    if not rivals:
        return None
    subject = f"The loop ({'its student' if loop == 'student' else 'its aggregate, no student'}"
    subject += f", micro-F1 {mine:.3f})"
    won = [mine > value for _, value in rivals]
    names = [text for text, _ in rivals]
    if len(rivals) == 1:
        return f"{subject} {'beat' if won[0] else 'did not beat'} {names[0]}."
    if all(won):
        return f"{subject} beat both {names[0]} and {names[1]}."
    if not any(won):
        return f"{subject} beat neither {names[0]} nor {names[1]}."
    beaten, other = (names[0], names[1]) if won[0] else (names[1], names[0])
    return f"{subject} beat {beaten} but not {other}."
