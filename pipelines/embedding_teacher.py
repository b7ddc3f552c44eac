"""The `embedding` teacher on Ray Data: encoder actors, calibration by map/reduce, vote records.

Three steps. (1) An actor pool (:class:`EncodeDocuments`, the encoder loaded once per replica)
turns each document without a persisted raw score into K raw cosine scores, and every encoded
batch is written at once as an atomic part under
``embedding-scores/<teacher>/<score_hash>/`` (:func:`labelmill.layout.embedding_scores_uri`;
the score hash covers model, input cap and label texts only): a killed job keeps what it
encoded, and a rerun encodes only the documents with no raw score (a distributed anti-join).
(2) The driver fits a :class:`~labelmill.embedding.ScoreCalibrator` from the persisted scores
of the corpus: per-batch score moments (sums and sums of squares, reduced on the driver: the
corpus is never collected) and the gold seed rows' scores (small); it is written beside the
votes as ``calibration-<prompt_hash>.json`` (lineage). (3) The persisted scores of the
documents still to vote become vote records batch by batch.

Placement follows the teacher config: ``accelerator: gpu`` puts each replica on a GPU
(``num_gpus=1``) and fails early on a cluster without GPUs; ``accelerator: cpu`` reserves
``cpus_per_replica`` CPUs per replica and uses as many torch threads.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelmill.config import CorpusConfig, GoldConfig
from labelmill.documents import check_text
from labelmill.embedding import (
    ScoreCalibrator,
    ScoreMoments,
    cosine_scores,
    embedding_prompt_hash,
    embedding_score_hash,
    id_digest,
    label_texts,
)
from labelmill.errors import ConfigError, InputError, JobError
from labelmill.jsonio import write_json
from labelmill.layout import embedding_calibration_uri, embedding_scores_uri
from labelmill.pipelines.encoder import SentenceEncoder
from labelmill.pipelines.gold import read_gold
from labelmill.pipelines.parts import read_parts_dataset, write_part
from labelmill.pipelines.votes_io import anti_join_ids, semi_join_ids
from labelmill.records import vote_schema
from labelmill.requests import TeacherPlan


def scored_schema() -> pa.Schema:
    """Pass-1 rows: id, raw cosine scores (K, null on error), error, truncated, prompt_tokens."""
    return pa.schema(
        [
            ("id", pa.string()),
            ("scores", pa.list_(pa.float64())),
            ("error", pa.string()),
            ("truncated", pa.bool_()),
            ("prompt_tokens", pa.int64()),
        ]
    )


class EmbeddingTeacherError(JobError):
    """The encoder could not score the corpus (job-fatal)."""


class EncodeDocuments(SentenceEncoder):
    """Ray Data UDF (actor): (id, text) batches -> raw cosine scores against every label."""

    def __init__(self, texts: list[str], **encoder: Any) -> None:
        super().__init__(**encoder)
        self.label_vectors, _, _ = self.embed(texts)

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch["id"].to_pylist()
        checked = [check_text(value) for value in batch["text"].to_pylist()]
        good = [i for i, c in enumerate(checked) if c.error is None]
        scores: list[list[float] | None] = [None] * len(ids)
        tokens, truncated = [0] * len(ids), [False] * len(ids)
        if good:
            vectors, used, cut = self.embed([checked[i].text for i in good])
            matrix = cosine_scores(vectors, self.label_vectors)
            for row, index in enumerate(good):
                scores[index] = matrix[row].tolist()
                tokens[index], truncated[index] = used[row], cut[row]
        return pa.Table.from_pydict(
            {
                "id": ids,
                "scores": scores,
                "error": [c.error for c in checked],
                "truncated": truncated,
                "prompt_tokens": tokens,
            },
            schema=scored_schema(),
        )


class EncodeAndPersist(EncodeDocuments):
    """Ray Data UDF (actor): encode a batch, write its scored rows at once as an atomic part
    under ``scores_uri`` (the resume point: a batch is kept the moment it is encoded, not when
    the task or the job ends) and return one summary row (``rows``)."""

    def __init__(self, scores_uri: str, **encoder: Any) -> None:
        super().__init__(**encoder)
        self.scores_uri = scores_uri

    def __call__(self, batch: pa.Table) -> pa.Table:
        scored = super().__call__(batch)
        if scored.num_rows:
            write_part(scored, self.scores_uri, key_columns=("id",))
        return pa.table({"rows": [scored.num_rows]})


def score_moments_batch(batch: pa.Table, k: int) -> pa.Table:
    """Ray Data UDF: one row of score moments (count, total (K), total_sq (K)) of a batch."""
    good = [s for s in batch["scores"].to_pylist() if s is not None]
    moments = ScoreMoments.of(np.asarray(good, dtype=np.float64).reshape(len(good), k))
    return pa.table(
        {
            "count": [moments.count],
            "total": [moments.total.tolist()],
            "total_sq": [moments.total_sq.tolist()],
        }
    )


def id_digest_batch(batch: pa.Table) -> pa.Table:
    """Ray Data UDF: one row with the order-free digest of a batch's ids (as a string)."""
    return pa.table({"digest": [str(id_digest(batch["id"].to_pylist()))]})


def keep_ids(batch: pa.Table, ids: pa.Array, keep: bool) -> pa.Table:
    """Rows of ``batch`` whose id is in ``ids`` (``keep``) or not in it (``not keep``)."""
    member = pc.is_in(batch["id"], value_set=ids)
    return batch.filter(member if keep else pc.invert(member))


def vote_records_batch(
    batch: pa.Table, calibration: dict[str, Any], lineage: dict[str, Any], names: list[str]
) -> pa.Table:
    """Ray Data UDF: scored rows -> vote records (probs calibrated, labels where p >= 0.5)."""
    calibrator = ScoreCalibrator.from_dict(calibration)
    rows = batch.to_pylist()
    good = [row for row in rows if row["scores"] is not None]
    probs = calibrator.predict_proba(
        np.asarray([row["scores"] for row in good], dtype=np.float64).reshape(len(good), len(names))
    )
    by_id = {row["id"]: p for row, p in zip(good, probs, strict=True)}
    now = datetime.now(UTC)
    records = []
    for row in rows:
        record = {
            **lineage,
            "id": row["id"],
            "labels": [],
            "probs": None,
            "raw_output": None,
            "error": row["error"],
            "truncated": bool(row["truncated"]),
            "prompt_tokens": int(row["prompt_tokens"] or 0),
            "output_tokens": 0,
            "created_at": now,
        }
        if row["scores"] is not None:
            p = by_id[row["id"]]
            record.update(
                probs=[float(v) for v in p],
                labels=[name for name, v in zip(names, p, strict=True) if v >= 0.5],
                raw_output=json.dumps([round(s, 4) for s in row["scores"]]),
            )
        records.append(record)
    return pa.Table.from_pylist(records, schema=vote_schema())


class EmbeddingTeacherRun:
    """One embedding teacher in one label job: its lineage hash and its votes stage.

    ``corpus`` is the job's corpus dataset (id, text), materialized; ``cpus`` is reserved by
    each light task; ``output_uri`` is the run directory, ``gold`` / ``corpus_config`` where the
    gold seed comes from. Building it reads the corpus ids (a map/reduce digest) and the seed.
    """

    def __init__(
        self,
        plan: TeacherPlan,
        corpus: Any,
        cpus: float,
        *,
        output_uri: str,
        gold: GoldConfig,
        corpus_config: CorpusConfig,
    ):
        teacher = plan.teacher
        self.output_uri, self.plan, self.corpus, self.cpus = output_uri, plan, corpus, cpus
        settings = teacher.embedding
        self.texts = label_texts(
            plan.taxonomy.names, plan.taxonomy.descriptions, settings.label_text
        )
        self.seed_ids, self.seed_gold = read_seed(gold, corpus_config, plan, cpus)
        if settings.calibration == "platt" and not self.seed_ids:
            raise InputError(
                f"teacher {teacher.name!r}: calibration 'platt' needs gold seed documents "
                f"(gold.seed_fraction > 0 and gold labels), got {len(self.seed_ids)}"
            )
        source = {
            "corpus_ids": corpus_digest(corpus, cpus),
            "seed": seed_digest(self.seed_ids, self.seed_gold),
        }
        self.calibration_settings = {
            "calibration": settings.calibration,
            "prior_rate": settings.prior_rate,
            "prior_slope": settings.prior_slope,
        }
        self.prompt_hash = embedding_prompt_hash(
            teacher.model,
            settings.max_length,
            self.texts,
            self.calibration_settings,
            json.dumps(source, sort_keys=True),
        )
        self.score_hash = embedding_score_hash(teacher.model, settings.max_length, self.texts)
        self.rows = corpus.count()  # materialized: metadata only

    def calibration_uri(self) -> str:
        """Where the fitted calibration of this prompt hash is kept."""
        return embedding_calibration_uri(self.output_uri, self.plan.teacher.name, self.prompt_hash)

    def scores_uri(self) -> str:
        """Directory of this teacher's persisted raw scores (see :func:`scored_schema`)."""
        return embedding_scores_uri(self.output_uri, self.plan.teacher.name, self.score_hash)

    def encode(self, docs: Any) -> Any:
        """Dataset of (id, text) -> dataset of one ``rows`` summary per encoded batch, each
        batch's scored rows (:func:`scored_schema`) written under :meth:`scores_uri`."""
        teacher = self.plan.teacher
        gpu = teacher.accelerator == "gpu"
        if gpu:
            import ray

            if ray.cluster_resources().get("GPU", 0) < 1:
                raise ConfigError(
                    f"teacher {teacher.name!r}: accelerator 'gpu' but the Ray cluster has no "
                    "GPU; set accelerator: cpu"
                )
        return docs.select_columns(["id", "text"]).map_batches(
            EncodeAndPersist,
            fn_constructor_kwargs={
                "scores_uri": self.scores_uri(),
                "model_path": self.plan.model_path,
                "max_length": teacher.embedding.max_length,
                "texts": self.texts,
                "device": "cuda" if gpu else "cpu",
                "threads": max(1, int(teacher.cpus_per_replica)),
            },
            batch_format="pyarrow",
            batch_size=teacher.batch_size,
            concurrency=teacher.concurrency,
            num_cpus=teacher.cpus_per_replica,
            num_gpus=1 if gpu else 0,
        )

    def encode_missing(self) -> int:
        """Encode the corpus documents without a persisted raw score, writing each batch as it
        is encoded; returns how many were encoded (0 when every score exists)."""
        have = read_parts_dataset(self.scores_uri(), columns=["id"])
        missing = self.corpus if have is None else anti_join_ids(self.corpus, have, self.rows)
        if have is not None:
            missing = missing.materialize()
            if missing.count() == 0:
                return 0
        from ray.exceptions import RayError

        try:  # one summary row per batch reaches the driver, never a score
            return sum(row["rows"] for row in self.encode(missing).iter_rows())
        except RayError as error:
            raise EmbeddingTeacherError(
                f"teacher {self.plan.teacher.name!r}: encoding the corpus failed: "
                f"{type(error).__name__}: {error}"
            ) from error

    def corpus_scores(self) -> Any:
        """The persisted scored rows of this job's corpus (a semi-join on id)."""
        scored = read_parts_dataset(self.scores_uri())
        if scored is None:
            raise EmbeddingTeacherError(
                f"teacher {self.plan.teacher.name!r}: no raw scores under {self.scores_uri()!r}"
            )
        return semi_join_ids(scored, self.corpus.select_columns(["id"]), self.rows)

    def fit(self, scored: Any) -> ScoreCalibrator:
        """Fit the calibration from a scored corpus (moments reduced on the driver, seed rows)."""
        k = len(self.plan.taxonomy)
        moments = ScoreMoments(0, np.zeros(k), np.zeros(k))
        for row in scored.map_batches(
            score_moments_batch, fn_kwargs={"k": k}, batch_format="pyarrow", num_cpus=self.cpus
        ).iter_rows():
            moments = moments.merge(
                ScoreMoments(row["count"], np.asarray(row["total"]), np.asarray(row["total_sq"]))
            )
        if moments.count == 0:
            raise InputError(
                f"teacher {self.plan.teacher.name!r}: no document has usable text to score"
            )
        mean, std = moments.mean_std()
        seed_scores, seed_gold = None, None
        if self.seed_ids:
            gold_of = dict(zip(self.seed_ids, self.seed_gold, strict=True))
            rows = [
                r
                for r in scored.map_batches(
                    keep_ids,
                    fn_kwargs={"ids": pa.array(self.seed_ids, pa.string()), "keep": True},
                    batch_format="pyarrow",
                    num_cpus=self.cpus,
                ).take_all()
                if r["scores"] is not None
            ]
            if rows:
                rows.sort(key=lambda r: r["id"])  # the fit must not depend on block order
                seed_scores = np.asarray([r["scores"] for r in rows], dtype=np.float64)
                seed_gold = np.asarray([gold_of[r["id"]] for r in rows], dtype=np.float64)
        settings = self.plan.teacher.embedding
        return ScoreCalibrator(settings.calibration, settings.prior_rate, settings.prior_slope).fit(
            mean, std, seed_scores, seed_gold
        )

    def votes(self, todo: Any) -> Any:
        """Dataset of (id, text) still to vote -> dataset of vote records (one per document).

        Encodes what has no raw score yet (persisted as it goes), fits the calibration from
        the corpus' persisted scores, then turns the scores of ``todo``'s documents into votes.
        """
        self.encode_missing()
        scored = self.corpus_scores().materialize()  # used by the fit and by the votes
        calibrator = self.fit(scored)
        write_json(self.calibration_uri(), calibrator.to_dict())
        if todo is not self.corpus:  # a resumed job: only the documents without a vote
            scored = semi_join_ids(scored, todo.select_columns(["id"]), self.rows)
        lineage = {
            "teacher": self.plan.teacher.name,
            "model": self.plan.teacher.model,
            "mode": "embedding",
            "prompt_hash": self.prompt_hash,
            "taxonomy_version": self.plan.taxonomy.version,
        }
        return scored.map_batches(
            vote_records_batch,
            fn_kwargs={
                "calibration": calibrator.to_dict(),
                "lineage": lineage,
                "names": list(self.plan.taxonomy.names),
            },
            batch_format="pyarrow",
            num_cpus=self.cpus,
        )


def read_seed(
    gold_config: GoldConfig, corpus_config: CorpusConfig, plan: TeacherPlan, cpus: float
) -> tuple[list[str], list[list[int]]]:
    """The gold seed on the driver (it is small): ids and multi-hot gold (K per id)."""
    gold = read_gold(gold_config, corpus_config, plan.taxonomy.names, cpus)
    if gold is None or gold_config.seed_fraction <= 0:
        return [], []
    ids: list[str] = []
    hot: list[list[int]] = []
    for batch in gold.iter_batches(batch_format="pyarrow", batch_size=4096):
        seeds = batch.filter(batch["gold_seed"])
        for doc_id, labels in zip(seeds["id"].to_pylist(), seeds["gold"].to_pylist(), strict=True):
            ids.append(doc_id)
            hot.append(plan.taxonomy.to_multi_hot(labels))
    return ids, hot


def corpus_digest(corpus: Any, cpus: float) -> str:
    """Order-free digest of a corpus' ids, map/reduced (16 hex digits)."""
    parts = corpus.map_batches(id_digest_batch, batch_format="pyarrow", num_cpus=cpus)
    return f"{sum(int(row['digest']) for row in parts.iter_rows()) % 2**64:016x}"


def seed_digest(ids: list[str], gold: list[list[int]]) -> str:
    """Digest of the gold seed: its (id, multi-hot gold) pairs in id order (16 hex digits)."""
    key = "\n".join(
        f"{doc_id}\x1f{''.join(map(str, row))}"
        for doc_id, row in sorted(zip(ids, gold, strict=True))
    )
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
