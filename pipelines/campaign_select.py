"""A campaign round's view of the aggregate and its distributed ranking of the candidates.

Nothing per document is collected to the driver. The aggregate labels (``labelmill
aggregate`` output) stay a Ray Dataset; the student's probabilities (batch predict job) and the
sentence embeddings (an encoder pass, cached under ``campaign/embeddings/``) are joined to it
by id on the cluster, and each batch is scored there (:mod:`labelmill.selection`). The driver
holds only bounded state (:mod:`labelmill.selection_sketch`): the label-issue fold models, fit
on an id-hash sample of at most ``campaign.oof_sample`` documents; one histogram per score
component (the rank normalization's CDF); the best ``k * SELECT_OVERSAMPLE`` candidates by
priority and their embeddings, on which :func:`labelmill.selection.select_diverse` runs.
Driver memory is O(k + oof_sample + relabeled), not O(N).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from labelmill.config import LabelmillConfig
from labelmill.documents import is_usable_text
from labelmill.errors import InputError
from labelmill.layout import campaign_path
from labelmill.pipelines.encoder import SentenceEncoder
from labelmill.pipelines.parts import AtomicPartsDatasink, list_parts, read_parts_dataset
from labelmill.pipelines.votes_io import join_partitions
from labelmill.selection import (
    disagreement_scores,
    issue_thresholds,
    label_issue_scores,
    select_diverse,
    uncertainty_scores,
)
from labelmill.selection_sketch import (
    SELECT_OVERSAMPLE,
    FoldModels,
    fit_fold_models,
    fold_model_probs,
    hash_folds,
    id_hashes,
    merge_top,
    rank_histogram,
    sample_cutoff,
    sketch_priority,
    top_rows,
)
from labelmill.taxonomy import multi_hot

LABEL_COLUMNS = ["id", "text", "teacher_probs", "labels", "gold", "gold_seed"]
COMPONENTS = ("uncertainty", "disagreement", "label_issue")


def candidate_mask(batch: pa.Table, relabeled: set[str]) -> np.ndarray:
    """(B,) bool: a usable text, not held-out gold (the evaluation set), not relabeled before."""
    ids = batch["id"].to_pylist()
    texts = batch["text"].to_pylist()
    gold = batch["gold"].to_pylist()
    seed = batch["gold_seed"].to_pylist()
    return np.array(
        [
            bool(t and t.strip()) and not (g is not None and not s) and i not in relabeled
            for i, t, g, s in zip(ids, texts, gold, seed, strict=True)
        ],
        dtype=bool,
    )


def _label_matrix(batch: pa.Table, names: list[str]) -> np.ndarray:
    """(B, K) 0/1 aggregate labels of a batch."""
    return multi_hot([row or [] for row in batch["labels"].to_pylist()], names)[0]


def _teacher_probs(batch: pa.Table, n_teachers: int, k: int) -> np.ndarray:
    """(B, T, K) teacher probabilities, NaN where a teacher abstained."""
    out = np.full((batch.num_rows, n_teachers, k), np.nan)
    for i, row in enumerate(batch["teacher_probs"].to_pylist()):
        for j, vote in enumerate(row or []):
            if vote is not None:
                out[i, j] = vote
    return out


def _vectors(column: pa.ChunkedArray, width: int, fill: float) -> np.ndarray:
    """A list<float> column as (B, width); a null row becomes ``fill`` everywhere."""
    rows = column.to_pylist()
    return np.asarray([r if r is not None else [fill] * width for r in rows], dtype=np.float64)


class CampaignView:
    """The aggregate labels as a dataset plus the few scalars a campaign needs on the driver."""

    def __init__(self, config: LabelmillConfig, labels_uri: str) -> None:
        self.config = config
        self.uri = labels_uri
        if not list_parts(labels_uri):
            raise InputError(f"no Parquet parts under {labels_uri!r}")
        self.names = [label.name for label in config.taxonomy.labels]
        self.n_docs = self.dataset(["id"]).count()  # Parquet metadata, no rows read
        first = self.dataset(["teachers"]).filter(lambda row: bool(row["teachers"])).take(1)
        self.teachers: list[str] = list(first[0]["teachers"]) if first else []
        agg = config.aggregate
        self.seed_first_enabled = (
            agg.method == "dawid_skene"
            and agg.gold_anchor == "rates"
            and agg.use_gold_seed
            and config.gold.seed_fraction > 0
        )

    def dataset(self, columns: list[str] | None = None) -> Any:
        return read_parts_dataset(self.uri, columns)

    def _light(self) -> dict[str, Any]:
        return {"batch_format": "pyarrow", "num_cpus": self.config.ray.light_stage_cpus}

    def count_candidates(self, relabeled: set[str]) -> int:
        """Candidates, counted on the cluster."""
        rows = self.dataset(LABEL_COLUMNS).map_batches(
            _count_candidates, fn_kwargs={"relabeled": relabeled}, **self._light()
        )
        return int(sum(r["n"] for r in rows.take_all()))  # one row per batch

    def first_candidates(self, relabeled: set[str], n: int) -> tuple[list[str], list[str]]:
        """(ids, texts) of up to ``n`` candidates (the dry run's price sample)."""
        rows = (
            self.dataset(LABEL_COLUMNS)
            .map_batches(_candidates, fn_kwargs={"relabeled": relabeled}, **self._light())
            .take(n)
        )
        return [r["id"] for r in rows], [r["text"] for r in rows]

    def texts(self, ids: list[str]) -> list[str]:
        """Texts of the given (bounded) ids, in their order."""
        wanted = set(ids)
        rows = (
            self.dataset(["id", "text"])
            .map_batches(_rows_with_ids, fn_kwargs={"wanted": wanted}, **self._light())
            .take_all()
        )
        text_of = {r["id"]: r["text"] or "" for r in rows}
        return [text_of[i] for i in ids]

    def seed_first(self, relabeled: set[str]) -> list[str]:
        """Seed candidates to relabel before anything else (the `rates` anchor needs them)."""
        if not self.seed_first_enabled:
            return []
        rows = (
            self.dataset(LABEL_COLUMNS)
            .map_batches(
                _candidates, fn_kwargs={"relabeled": relabeled, "seed_only": True}, **self._light()
            )
            .take_all()
        )
        return sorted(r["id"] for r in rows)

    def relabeled(self) -> set[str]:
        """Ids that already have a vote of a campaign teacher (bounded by the budget)."""
        from labelmill.pipelines.votes_io import read_votes

        done: set[str] = set()
        for teacher in self.config.campaign.teachers:
            done |= set(read_votes(self.config.output_uri, teacher, ["id"])["id"].to_pylist())
        return done


def _count_candidates(batch: pa.Table, relabeled: set[str]) -> pa.Table:
    return pa.table({"n": [int(candidate_mask(batch, relabeled).sum())]})


def _candidates(batch: pa.Table, relabeled: set[str], seed_only: bool = False) -> pa.Table:
    keep = candidate_mask(batch, relabeled)
    if seed_only:
        keep &= np.array([bool(s) for s in batch["gold_seed"].to_pylist()], dtype=bool)
    return batch.select(["id", "text"]).filter(pa.array(keep))


def _rows_with_ids(batch: pa.Table, wanted: set[str]) -> pa.Table:
    return batch.filter(pa.array([i in wanted for i in batch["id"].to_pylist()], type=pa.bool_()))


class EmbedTexts(SentenceEncoder):
    """Ray Data UDF (actor): (id, text) -> L2-normalised mean-pooled sentence embeddings;
    unusable texts embed as a single space (they still need a row)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = [t if is_usable_text(t) else " " for t in batch["text"].to_pylist()]
        vectors, _, _ = self.embed(texts)
        return pa.table(
            {"id": batch["id"], "embedding": pa.array(vectors.astype(np.float32).tolist())}
        )


def embeddings_uri(config: LabelmillConfig, view: CampaignView) -> str:
    """The campaign's embeddings (id, embedding) on storage, computed once on the cluster."""
    from labelmill.models import resolve_model

    uri = campaign_path(config.output_uri, "embeddings")
    if not list_parts(uri):
        model = resolve_model(config.student.backbone)
        gpu = config.predict.use_gpu  # the campaign's other encoder pass (predict) is there
        view.dataset(["id", "text"]).map_batches(
            EmbedTexts,
            fn_constructor_kwargs={
                "model_path": model,
                "max_length": config.student.max_length,
                "device": "cuda" if gpu else "cpu",
                "threads": max(1, int(config.predict.cpus_per_replica)),
            },
            batch_format="pyarrow",
            batch_size=config.predict.batch_size,
            concurrency=1,
            num_cpus=config.predict.cpus_per_replica,
            num_gpus=1 if gpu else 0,
        ).write_datasink(AtomicPartsDatasink(uri))
    return uri


def predictions_uri(config: LabelmillConfig, model_dir: str, r: int) -> str:
    """Probabilities of the student in ``model_dir`` for every document (batch predict job)."""
    from labelmill.pipelines.predict import run_predict_job

    out = campaign_path(config.output_uri, f"round-{r}", "selection-predictions")
    predict = config.predict.model_copy(update={"model_dir": model_dir, "output_uri": out})
    run_predict_job(config.model_copy(update={"predict": predict}))
    return out


def _sample_rows(batch: pa.Table, cutoff: int, names: list[str] | None) -> pa.Table:
    """Ray Data UDF: the batch's rows whose label-issue hash is <= cutoff, with that hash.

    On the labels (``names`` given): usable documents only, with their (B, K) labels ``y``;
    on the embeddings (``names`` None): id, hash and embedding.
    """
    ids = batch["id"].to_pylist()
    hashes = id_hashes(ids, "oof")
    keep = hashes <= np.uint64(cutoff)
    columns: dict[str, Any] = {}
    if names is not None:
        keep &= np.array([bool(t and t.strip()) for t in batch["text"].to_pylist()], dtype=bool)
        columns["y"] = pa.array(_label_matrix(batch, names)[keep].tolist(), pa.list_(pa.float64()))
    else:
        columns["embedding"] = batch["embedding"].filter(pa.array(keep))
    return pa.table(
        {
            "id": batch["id"].filter(pa.array(keep)),
            "hash": pa.array(hashes[keep], type=pa.uint64()),
            **columns,
        }
    )


def fit_label_issue(
    config: LabelmillConfig, view: CampaignView, emb: Any
) -> tuple[int, FoldModels, tuple[np.ndarray, np.ndarray]] | None:
    """Fold models on an id-hash sample, and the issue thresholds of its out-of-fold probs.

    -> (sample cutoff, models, (t1, t0)), or None when the sample is smaller than the folds.
    Both sides are filtered by the same hash on the cluster, so only about ``oof_sample`` rows
    of each come back (the driver's one sized collection) and no shuffle is needed.
    """
    c = config.campaign
    _, fraction = sample_cutoff(np.zeros(0, np.uint64), view.n_docs, c.oof_sample)
    loose = 2**64 - 1 if fraction >= 1.0 else int(fraction * 2.0**64) - 1
    light = view._light()
    labels = view.dataset(["id", "text", "labels"]).map_batches(
        _sample_rows, fn_kwargs={"cutoff": loose, "names": view.names}, **light
    )
    rows = labels.take_all()
    cutoff, _ = sample_cutoff(
        np.array([r["hash"] for r in rows], np.uint64), view.n_docs, c.oof_sample
    )
    rows = sorted((r for r in rows if r["hash"] <= cutoff), key=lambda r: r["id"])
    vectors = {
        r["id"]: r["embedding"]
        for r in emb.map_batches(
            _sample_rows, fn_kwargs={"cutoff": cutoff, "names": None}, **light
        ).take_all()
    }
    rows = [r for r in rows if r["id"] in vectors]
    if len(rows) < c.oof_folds:
        return None
    x = np.asarray([vectors[r["id"]] for r in rows], dtype=np.float64)
    y = np.asarray([r["y"] for r in rows], dtype=np.float64)
    folds = hash_folds([r["id"] for r in rows], c.oof_folds)
    models = fit_fold_models(x, y, folds, c.oof_folds)
    oof = fold_model_probs(models, x, folds)
    return cutoff, models, issue_thresholds(oof, y)


def _score_batch(
    batch: pa.Table,
    relabeled: set[str],
    names: list[str],
    n_teachers: int,
    issue: tuple[int, FoldModels, tuple[np.ndarray, np.ndarray]] | None,
    n_folds: int,
) -> pa.Table:
    """Ray Data UDF: a joined batch (labels + probs + embedding) -> id, the three components
    and ``candidate``. A missing student probability counts as 0.5, a missing embedding as 0."""
    k = len(names)
    ids = batch["id"].to_pylist()
    valid = np.array([bool(t and t.strip()) for t in batch["text"].to_pylist()], dtype=bool)
    probs = _vectors(batch["probs"], k, 0.5)
    label_issue = np.zeros(batch.num_rows)
    if issue is not None and valid.any():
        cutoff, models, thresholds = issue
        x = _vectors(batch["embedding"], models.weights.shape[2], 0.0)[valid]
        vids = [i for i, v in zip(ids, valid, strict=True) if v]
        sampled = id_hashes(vids, "oof") <= np.uint64(cutoff)
        folds = np.where(sampled, hash_folds(vids, n_folds), -1)
        oof = fold_model_probs(models, x, folds)
        label_issue[valid] = label_issue_scores(oof, _label_matrix(batch, names)[valid], thresholds)
    return pa.table(
        {
            "id": batch["id"],
            "uncertainty": uncertainty_scores(probs),
            "disagreement": disagreement_scores(_teacher_probs(batch, n_teachers, k)),
            "label_issue": label_issue,
            "candidate": candidate_mask(batch, relabeled),
        }
    )


def _histograms(batch: pa.Table) -> pa.Table:
    """Ray Data UDF: one row of per-component histograms over the batch's candidates."""
    keep = batch["candidate"].to_numpy(zero_copy_only=False)
    row = {c: [rank_histogram(batch[c].to_numpy()[keep]).tolist()] for c in COMPONENTS}
    return pa.table(row)


def _batch_top(batch: pa.Table, histograms: np.ndarray, weights: Any, m: int) -> pa.Table:
    """Ray Data UDF: the batch's best ``m`` candidates by sketch priority (id, priority)."""
    keep = batch["candidate"].to_numpy(zero_copy_only=False)
    ids = [i for i, k in zip(batch["id"].to_pylist(), keep, strict=True) if k]
    parts = [batch[c].to_numpy()[keep] for c in COMPONENTS]
    priority = sketch_priority(parts, histograms, weights)
    best = top_rows(priority, ids, m)
    return pa.table({"id": [ids[i] for i in best], "priority": priority[best]})


def _random_top(batch: pa.Table, relabeled: set[str], salt: str, m: int) -> pa.Table:
    """Ray Data UDF: the batch's ``m`` candidates with the smallest random key (hash of id)."""
    keep = candidate_mask(batch, relabeled)
    ids = [i for i, k in zip(batch["id"].to_pylist(), keep, strict=True) if k]
    priority = 1.0 - id_hashes(ids, salt).astype(np.float64) / 2.0**64
    best = top_rows(priority, ids, m)
    return pa.table({"id": [ids[i] for i in best], "priority": priority[best]})


def _merge_stream(rows: Any, m: int) -> tuple[np.ndarray, list[str]]:
    """Fold a stream of per-batch winners into the best ``m`` (priorities, ids), best first;
    the driver holds at most ``m`` + one batch of them."""
    kept: tuple[np.ndarray, list[str]] = (np.zeros(0), [])
    for batch in rows.iter_batches(batch_format="pyarrow", batch_size=4096):
        kept = merge_top(kept, (batch["priority"].to_numpy(), batch["id"].to_pylist()), m)
    return kept


def rank_candidates(
    config: LabelmillConfig,
    view: CampaignView,
    relabeled: set[str],
    model_dir: str,
    r: int,
    k: int,
) -> list[str]:
    """The first ``k`` candidate ids in selection order (targeted or random)."""
    c = config.campaign
    light = view._light()
    if c.strategy == "random":
        winners = view.dataset(LABEL_COLUMNS).map_batches(
            _random_top,
            fn_kwargs={"relabeled": relabeled, "salt": f"random:{c.seed + r}", "m": k},
            **light,
        )
        return _merge_stream(winners, k)[1]
    emb = read_parts_dataset(embeddings_uri(config, view))
    preds = read_parts_dataset(predictions_uri(config, model_dir, r), ["id", "probs"])
    issue = fit_label_issue(config, view, emb)
    parts = join_partitions(view.n_docs)
    joined = (
        view.dataset(LABEL_COLUMNS)
        .join(preds, join_type="left_outer", num_partitions=parts, on=("id",))
        .join(emb, join_type="left_outer", num_partitions=parts, on=("id",))
    )
    scores = joined.map_batches(
        _score_batch,
        fn_kwargs={
            "relabeled": relabeled,
            "names": view.names,
            "n_teachers": len(view.teachers),
            "issue": issue,
            "n_folds": c.oof_folds,
        },
        **light,
    ).materialize()  # id + 3 floats per document, on the object store: read twice below
    totals = np.zeros((len(COMPONENTS), 0))
    for row in scores.map_batches(_histograms, **light).iter_rows():
        h = np.asarray([row[name] for name in COMPONENTS], dtype=np.int64)
        totals = h if totals.size == 0 else totals + h
    if totals.size == 0 or totals[0].sum() == 0:
        return []
    m = k * SELECT_OVERSAMPLE
    winners = scores.map_batches(
        _batch_top, fn_kwargs={"histograms": totals, "weights": c.weights, "m": m}, **light
    )
    priority, pool = _merge_stream(winners, m)  # best first: select_diverse's ties go to ids
    if not pool:
        return []
    vectors = {
        r["id"]: r["embedding"]
        for r in emb.map_batches(
            _rows_with_ids, fn_kwargs={"wanted": set(pool)}, **light
        ).take_all()
    }
    dim = len(next(iter(vectors.values()))) if vectors else 1
    x = np.asarray([vectors.get(i, [0.0] * dim) for i in pool], dtype=np.float32)
    picks = select_diverse(priority, x, k, c.diversity)
    return [pool[i] for i in picks]
