"""A campaign round's inputs and its ranking of the candidate documents.

The driver holds, per corpus document, the aggregate's teacher probabilities and labels, the
current student's probabilities and a sentence embedding: O(N * (T*K + D)) floats (about 50 MB
for 30,000 documents with a 384-d encoder). Student probabilities come from the batch predict
job (actor pool) and embeddings from an encoder pass on Ray Data (computed once, cached under
``campaign/embeddings/``); the scoring itself is :mod:`labelmill.selection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from labelmill.pipelines.encoder import SentenceEncoder
from labelmill.pipelines.parts import AtomicPartsDatasink, list_parts

from labelmill.config import LabelmillConfig
from labelmill.documents import is_usable_text
from labelmill.errors import InputError
from labelmill.layout import campaign_path
from labelmill.selection import (
    disagreement_scores,
    label_issue_scores,
    out_of_fold_probs,
    priority_scores,
    select_diverse,
    select_random,
    uncertainty_scores,
)


@dataclass
class CampaignInputs:
    """Per-document arrays of the current aggregate, in one fixed order (N documents)."""

    ids: list[str]
    texts: list[str]
    teachers: list[str]
    teacher_probs: np.ndarray  # (N, T, K), NaN where a teacher abstained
    labels: np.ndarray  # (N, K) 0/1 aggregate labels
    gold_seed: np.ndarray  # (N,) bool
    held_out: np.ndarray  # (N,) bool: gold documents outside the seed (the evaluation set)
    valid: np.ndarray  # (N,) bool: a usable text
    seed_first_enabled: bool

    @property
    def n_docs(self) -> int:
        return len(self.ids)

    def candidates(self, relabeled: set[str]) -> list[int]:
        """Positions of documents a round may select."""
        return [
            i
            for i in range(self.n_docs)
            if self.valid[i] and not self.held_out[i] and self.ids[i] not in relabeled
        ]

    def is_seed(self, i: int) -> bool:
        return bool(self.gold_seed[i])

    def seed_first(self, relabeled: set[str]) -> list[int]:
        """Seed documents to relabel before anything else (the `rates` anchor needs them)."""
        if not self.seed_first_enabled:
            return []
        return [i for i in self.candidates(relabeled) if self.gold_seed[i]]

    def relabeled(self, config: LabelmillConfig) -> set[str]:
        """Ids that already have a vote of a campaign teacher."""
        from labelmill.pipelines.votes_io import read_votes

        done: set[str] = set()
        for teacher in config.campaign.teachers:
            done |= set(read_votes(config.output_uri, teacher, ["id"])["id"].to_pylist())
        return done


def _read_dir(uri: str, columns: list[str] | None = None) -> pa.Table:
    fs, _ = fsspec.core.url_to_fs(uri)
    files = list_parts(uri)
    if not files:
        raise InputError(f"no Parquet parts under {uri!r}")
    tables = []
    for file in files:
        with fs.open(file, "rb") as handle:
            tables.append(pq.read_table(handle, columns=columns))
    return pa.concat_tables(tables)


def load_inputs(config: LabelmillConfig, labels_uri: str) -> CampaignInputs:
    """The aggregate labels (``labelmill aggregate`` output) as arrays, sorted by id."""
    names = [label.name for label in config.taxonomy.labels]
    index = {name: k for k, name in enumerate(names)}
    table = _read_dir(labels_uri).sort_by("id")
    rows = table.to_pylist()
    teachers = next((r["teachers"] for r in rows if r["teachers"]), [])
    n, t, k = len(rows), len(teachers), len(names)
    probs = np.full((n, t, k), np.nan)
    labels = np.zeros((n, k))
    for i, row in enumerate(rows):
        for j, vote in enumerate(row["teacher_probs"] or []):
            if vote is not None:
                probs[i, j] = vote
        for name in row["labels"] or []:
            labels[i, index[name]] = 1.0
    agg = config.aggregate
    return CampaignInputs(
        ids=[r["id"] for r in rows],
        texts=[r["text"] or "" for r in rows],
        teachers=list(teachers),
        teacher_probs=probs,
        labels=labels,
        gold_seed=np.array([bool(r["gold_seed"]) for r in rows], dtype=bool),
        held_out=np.array([r["gold"] is not None and not r["gold_seed"] for r in rows], dtype=bool),
        valid=np.array([bool(r["text"] and r["text"].strip()) for r in rows], dtype=bool),
        seed_first_enabled=agg.method == "dawid_skene"
        and agg.gold_anchor == "rates"
        and agg.use_gold_seed
        and config.gold.seed_fraction > 0,
    )


class EmbedTexts(SentenceEncoder):
    """Ray Data UDF (actor): (id, text) -> L2-normalised mean-pooled sentence embeddings;
    unusable texts embed as a single space (they still need a row)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = [t if is_usable_text(t) else " " for t in batch["text"].to_pylist()]
        vectors, _, _ = self.embed(texts)
        return pa.table(
            {"id": batch["id"], "embedding": pa.array(vectors.astype(np.float32).tolist())}
        )


def embeddings(config: LabelmillConfig, inputs: CampaignInputs) -> np.ndarray:
    """(N, D) embeddings in ``inputs`` order, computed once per campaign and cached."""
    import ray

    from labelmill.models import resolve_model

    uri = campaign_path(config.output_uri, "embeddings")
    if not list_parts(uri):
        model = resolve_model(config.student.backbone)
        docs = ray.data.from_arrow(pa.table({"id": inputs.ids, "text": inputs.texts}))
        gpu = config.predict.use_gpu  # the campaign's other encoder pass (predict) is there
        docs.map_batches(
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
    table = _read_dir(uri)
    by_id = dict(zip(table["id"].to_pylist(), table["embedding"].to_pylist(), strict=True))
    return np.asarray([by_id[i] for i in inputs.ids], dtype=np.float32)


def student_probs(
    config: LabelmillConfig, inputs: CampaignInputs, model_dir: str, r: int
) -> np.ndarray:
    """(N, K) probabilities of the student in ``model_dir`` (batch predict job); 0.5 if missing."""
    from labelmill.pipelines.predict import run_predict_job

    out = campaign_path(config.output_uri, f"round-{r}", "selection-predictions")
    predict = config.predict.model_copy(update={"model_dir": model_dir, "output_uri": out})
    run_predict_job(config.model_copy(update={"predict": predict}))
    table = _read_dir(out, ["id", "probs"])
    by_id = dict(zip(table["id"].to_pylist(), table["probs"].to_pylist(), strict=True))
    k = inputs.labels.shape[1]
    return np.asarray(
        [by_id.get(i) if by_id.get(i) is not None else [0.5] * k for i in inputs.ids],
        dtype=np.float64,
    )


def score_components(
    config: LabelmillConfig, inputs: CampaignInputs, model_dir: str, r: int
) -> dict[str, Any]:
    """Uncertainty, disagreement and label-issue scores (N,) and the embeddings (N, D)."""
    vectors = embeddings(config, inputs)
    probs = student_probs(config, inputs, model_dir, r)
    valid = np.flatnonzero(inputs.valid)
    issue = np.zeros(inputs.n_docs)
    if len(valid) >= config.campaign.oof_folds:
        oof = out_of_fold_probs(
            vectors[valid].astype(np.float64),
            inputs.labels[valid],
            n_folds=config.campaign.oof_folds,
        )
        issue[valid] = label_issue_scores(oof, inputs.labels[valid])
    return {
        "uncertainty": uncertainty_scores(probs),
        "disagreement": disagreement_scores(inputs.teacher_probs),
        "label_issue": issue,
        "embeddings": vectors,
    }


def rank_candidates(
    config: LabelmillConfig,
    inputs: CampaignInputs,
    relabeled: set[str],
    model_dir: str,
    r: int,
    k: int,
) -> list[int]:
    """The first ``k`` candidate positions in selection order (targeted or random)."""
    c = config.campaign
    candidates = np.asarray(inputs.candidates(relabeled), dtype=np.int64)
    if len(candidates) == 0:
        return []
    if c.strategy == "random":
        return candidates[select_random(len(candidates), k, c.seed + r)].tolist()
    parts = score_components(config, inputs, model_dir, r)
    priority = priority_scores(
        parts["uncertainty"][candidates],
        parts["disagreement"][candidates],
        parts["label_issue"][candidates],
        c.weights,
    )
    picks = select_diverse(priority, parts["embeddings"][candidates], k, c.diversity)
    return candidates[picks].tolist()
