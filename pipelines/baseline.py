"""The ``seed-only`` system of ``labelmill evaluate``: reading and embedding the gold rows.

The model and its thresholds are :mod:`labelmill.baseline` (pure); this module collects the
gold-seed rows of the aggregate labels with Ray Data, embeds the seed and the held-out texts
with the student backbone through the one encoder (:class:`SentenceEncoder`), and scores the
baseline on the held-out rows like every other system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelmill.baseline import (
    BASELINE_KIND,
    MIN_SEED_ROWS,
    N_FOLDS,
    SeedBaseline,
    train_seed_baseline,
)
from labelmill.config import LabelmillConfig
from labelmill.documents import check_text
from labelmill.evaluation import gold_matrix, score_system
from labelmill.layout import aggregate_labels_uri

SEED_COLUMNS = ["id", "text", "gold"]
# Fixed, and apart from student.seed: changing the student's seed must not move its yardstick.
RANDOM_STATE = 0


@dataclass
class BaselineResult:
    """The scored ``seed-only`` entry (None when it could not be trained), its threshold
    sources, its lineage and, when it was skipped, why."""

    entry: dict[str, Any] | None = None
    sources: list[str] = field(default_factory=list)
    lineage: dict[str, Any] | None = None
    note: str | None = None


def wants_seed_baseline(config: LabelmillConfig) -> bool:
    """``evaluate.seed_baseline`` is on and the config draws a gold seed."""
    return config.evaluate.seed_baseline and config.gold.seed_fraction > 0


def select_seed(batch: pa.Table) -> pa.Table:
    """Ray Data UDF: keep the gold-seed rows that have gold, as (id, text, gold)."""
    keep = pc.and_(pc.is_valid(batch["gold"]), pc.fill_null(batch["gold_seed"], False))
    return batch.filter(keep).select(SEED_COLUMNS)


def read_seed(config: LabelmillConfig) -> pa.Table | None:
    """The gold-seed rows of the aggregate labels, sorted by id; None when there are none.

    Collected to the driver: the seed is gold, so it is small. Sorted because Ray's read
    order is not fixed, and the baseline's folds must be."""
    import ray.data

    ds = ray.data.read_parquet(aggregate_labels_uri(config)).select_columns(
        [*SEED_COLUMNS, "gold_seed"]
    )
    seed = ds.map_batches(select_seed, batch_format="pyarrow", num_cpus=config.ray.light_stage_cpus)
    tables = [t for t in seed.iter_batches(batch_format="pyarrow", batch_size=None) if t.num_rows]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default").sort_by("id")


def embed_texts(encoder: Any, texts: list[Any]) -> np.ndarray:
    """texts (N) -> (N, H) embeddings, NaN rows for unusable text (missing, empty, ...)."""
    checked = [check_text(t) for t in texts]
    good = [i for i, c in enumerate(checked) if c.error is None]
    out = np.full((len(texts), encoder.model.config.hidden_size), np.nan)
    if good:
        vectors, _, _ = encoder.embed([checked[i].text for i in good])
        out[good] = vectors
    return out


def load_encoder(config: LabelmillConfig) -> tuple[Any, str]:
    """The student backbone as the one sentence encoder, on this process's CPU; and its path.

    In-process on the driver, not an actor pool: the baseline embeds gold rows only (the seed
    and the held-out gold, a few thousand texts at most), less than an actor's start costs."""
    import torch

    from labelmill.models import resolve_model
    from labelmill.pipelines.encoder import SentenceEncoder

    path = resolve_model(config.student.backbone)
    # SentenceEncoder sets torch's thread count for the whole process: keep the driver's.
    threads = torch.get_num_threads()
    return SentenceEncoder(path, config.student.max_length, "cpu", threads), path


def score_seed_baseline(
    config: LabelmillConfig,
    seed: pa.Table | None,
    texts: list[Any],
    y: np.ndarray,
    names: list[str],
) -> BaselineResult:
    """Train ``seed-only`` on ``seed`` (id, text, gold) and score it on the held-out ``texts``
    with gold ``y`` (N, K); a result with a note instead when the seed is too small."""
    if seed is None or seed.num_rows == 0:
        return BaselineResult(note="no gold-seed rows in the aggregate; seed-only not scored")
    encoder, path = load_encoder(config)
    x_seed = embed_texts(encoder, seed["text"].to_pylist())
    usable = ~np.isnan(x_seed).any(axis=1)
    if usable.sum() < MIN_SEED_ROWS:
        return BaselineResult(
            note=f"{int(usable.sum())} gold-seed row(s) with usable text, seed-only needs "
            f"{MIN_SEED_ROWS}; not scored"
        )
    gold = gold_matrix(seed["gold"].to_pylist(), names)[usable]
    template = SeedBaseline(random_state=RANDOM_STATE)
    fit = train_seed_baseline(x_seed[usable], gold, template, N_FOLDS, config.aggregate.threshold)
    cut = fit.thresholds
    x_held = embed_texts(encoder, texts)
    probs = np.full((len(texts), len(names)), np.nan)  # unusable text: unscored, as the student
    ok = ~np.isnan(x_held).any(axis=1)
    probs[ok] = fit.model.predict_proba(x_held[ok])
    entry = score_system(BASELINE_KIND, y, probs, cut.thresholds, names, config.evaluate.n_bins)
    lineage = {
        "backbone": config.student.backbone,
        "backbone_path": path,
        "max_length": config.student.max_length,
        "pooling": "mean over tokens, L2-normalised",
        "model": "scikit-learn LogisticRegression per label (lbfgs, class_weight=None)",
        **fit.model.get_params(),
        "C_selection": "lowest out-of-fold log-loss on the seed",
        "C_log_loss": {str(c): loss for c, loss in fit.log_loss.items()},
        "seed_rows": int(usable.sum()),
        "seed_rows_unusable_text": int((~usable).sum()),
        "seed_positives": dict(zip(names, gold.sum(axis=0).astype(int).tolist(), strict=True)),
        "threshold_folds": min(N_FOLDS, int(usable.sum())),
        "threshold_sources": list(cut.sources),
    }
    return BaselineResult(entry, list(cut.sources), lineage)
