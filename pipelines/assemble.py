"""Row assembly of the aggregation job: votes in, one row per corpus document, label rows out.

The corpus rows, the gold rows and every teacher's vote rows are normalised to one common schema
(:func:`assembly_schema`, a ``kind`` column telling them apart), unioned, and grouped by id with
a hash shuffle: nothing is collected on the driver. Each group gives one row per corpus row of
that id (:func:`assembled_schema`); votes for ids outside the corpus are dropped there.

Votes are read from ``<output_uri>/votes/<teacher>/part-*.parquet``. Only votes of the current
taxonomy version are used; of several rows for the same (id, teacher) the latest ``created_at``
wins. Errored votes and unreadable ones (a label outside the taxonomy, probs of the wrong length)
are abstentions (see :mod:`labelmill.vote_matrix`).

Output side: :func:`label_table` turns an assembled batch plus its probabilities into rows of
:func:`aggregate_label_schema`, and :func:`write_label_part` writes them as one atomic part.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from labelmill.pipelines.corpus import read_corpus
from labelmill.pipelines.gold import corpus_without_gold_column, read_gold
from labelmill.pipelines.votes_io import votes_dir

from labelmill.aggregation import agreement, n_teachers
from labelmill.config import LabelmillConfig
from labelmill.records import votes_that_count
from labelmill.taxonomy import multi_hot
from labelmill.vote_matrix import (
    label_index,
    vector_to_cell,
    vote_vector,
    votes_from_teacher_probs,
)

DOC, GOLD, VOTE = 0, 1, 2
# Vote modes that carry a probability per label (read through the score observation model);
# "set" and the simulations' "simulated" are hard label sets.
SCORE_MODES = ("score", "embedding")
NO_VOTE_ERROR = "no teacher voted"


def assembly_schema() -> pa.Schema:
    """Common schema of the corpus, gold and vote rows before grouping by id."""
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("kind", pa.int8()),
            pa.field("text", pa.string()),
            pa.field("gold", pa.list_(pa.string())),
            pa.field("gold_seed", pa.bool_()),
            pa.field("teacher", pa.int32()),
            pa.field("vote", pa.list_(pa.float64())),
            pa.field("lineage", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def assembled_schema() -> pa.Schema:
    """Schema of one assembled document: id, text, gold, gold_seed, teacher_probs, lineage."""
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("text", pa.string()),
            pa.field("gold", pa.list_(pa.string())),
            pa.field("gold_seed", pa.bool_()),
            pa.field("teacher_probs", pa.list_(pa.list_(pa.float64()))),
            pa.field("lineage", pa.string()),
        ]
    )


def _rows_table(columns: dict[str, Any], n_rows: int) -> pa.Table:
    """Fill the assembly schema from the given columns (others null)."""
    schema = assembly_schema()
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n_rows, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def doc_rows(batch: pa.Table) -> pa.Table:
    """Ray Data UDF: corpus (id, text) -> assembly rows of kind DOC (text cast to string)."""
    n = batch.num_rows
    return _rows_table(
        {
            "id": batch["id"].cast(pa.string()),
            "kind": pa.array([DOC] * n, pa.int8()),
            "text": batch["text"].cast(pa.string()),
        },
        n,
    )


def gold_rows(batch: pa.Table) -> pa.Table:
    """Ray Data UDF: gold (id, gold, gold_seed) -> assembly rows of kind GOLD."""
    n = batch.num_rows
    return _rows_table(
        {
            "id": batch["id"].cast(pa.string()),
            "kind": pa.array([GOLD] * n, pa.int8()),
            "gold": batch["gold"].cast(pa.list_(pa.string())),
            "gold_seed": batch["gold_seed"].cast(pa.bool_()),
        },
        n,
    )


def vote_rows(batch: pa.Table, teacher: int, names: Sequence[str], version: str) -> pa.Table:
    """Ray Data UDF: vote records of teacher number ``teacher`` -> assembly rows of kind VOTE.

    Rows of another taxonomy version are dropped; each kept row carries its (K,) vector (null
    for an abstention, see :func:`labelmill.vote_matrix.vote_vector`) and its lineage as JSON.
    """
    batch = batch.filter(pc.equal(batch["taxonomy_version"], version))
    index = label_index(names)
    cells, lineage = [], []
    for row in batch.select(
        ["labels", "probs", "error", "teacher", "model", "mode", "prompt_hash"]
    ).to_pylist():
        try:
            vec = vote_vector(row["labels"], row["probs"], row["error"], index)
        except ValueError:  # unreadable vote: an abstention, like an errored one
            vec = None
        cells.append(vector_to_cell(vec))
        lineage.append(
            json.dumps({key: row[key] for key in ("teacher", "model", "mode", "prompt_hash")})
        )
    n = batch.num_rows
    return _rows_table(
        {
            "id": batch["id"].cast(pa.string()),
            "kind": pa.array([VOTE] * n, pa.int8()),
            "teacher": pa.array([teacher] * n, pa.int32()),
            "vote": pa.array(cells, pa.list_(pa.float64())),
            "lineage": pa.array(lineage, pa.string()),
            "created_at": batch["created_at"].cast(pa.timestamp("us", tz="UTC")),
        },
        n,
    )


def list_vote_parts(output_uri: str, teacher: str) -> list[str]:
    """Paths (in the filesystem of the votes URI) of one teacher's vote parts, sorted."""
    fs, path = fsspec.core.url_to_fs(votes_dir(output_uri, teacher))
    fs.invalidate_cache(path)  # parts are written by Ray workers: never a stale listing
    if not fs.exists(path):
        return []
    return sorted(p for p in fs.find(path) if p.rsplit("/", 1)[-1].startswith("part-"))


def _read_parts(batch: dict[str, Any], uri: str) -> Iterator[pa.Table]:
    fs, _ = fsspec.core.url_to_fs(uri)
    for file in batch["path"]:
        with fs.open(str(file), "rb") as handle:
            yield pq.read_table(handle)


def vote_mode(output_uri: str, part: str) -> str | None:
    """The ``mode`` of a teacher's votes, read from the first row of one part (a path as
    :func:`list_vote_parts` gives it: on the run directory's file system, without a scheme)."""
    fs, _ = fsspec.core.url_to_fs(output_uri)
    with fs.open(part, "rb") as handle:
        modes = pq.read_table(handle, columns=["mode"]).column("mode")
    return str(modes[0].as_py()) if len(modes) else None


def read_teacher_votes(output_uri: str, teacher: str, files: list[str], cpus: float) -> Any:
    """One teacher's vote parts as a Ray Dataset (one read task per part file)."""
    import ray.data

    uri = votes_dir(output_uri, teacher)
    fs, _ = fsspec.core.url_to_fs(uri)
    if getattr(fs, "protocol", None) in ("memory", ("memory",)):  # workers cannot see it
        tables = [t for t in _read_parts({"path": files}, uri)]
        return ray.data.from_arrow(pa.concat_tables(tables, promote_options="default"))
    return ray.data.from_items([{"path": file} for file in files]).map_batches(
        _read_parts, batch_size=1, fn_kwargs={"uri": uri}, num_cpus=cpus
    )


def assemble_group(group: pa.Table, n_teachers: int) -> pa.Table:
    """map_groups UDF: all rows of one id -> one assembled row per corpus row of that id.

    Gold comes from the first gold row; per teacher the vote that counts is kept
    (:func:`labelmill.records.votes_that_count`). No corpus row: nothing (votes for unknown ids).
    """
    rows = group.to_pylist()
    docs = [r for r in rows if r["kind"] == DOC]
    if not docs:
        return assembled_schema().empty_table()
    gold = next((r for r in rows if r["kind"] == GOLD), None)
    votes = [r for r in rows if r["kind"] == VOTE]
    counted = votes_that_count(
        [v["teacher"] for v in votes],
        [v["created_at"] for v in votes],
        [v["lineage"] for v in votes],
    )
    latest = {teacher: votes[i] for teacher, i in counted.items()}
    cells: list[list[float | None] | None] = [None] * n_teachers
    lineage = []
    for t in range(n_teachers):
        row = latest.get(t)
        if row is not None and row["vote"] is not None:
            cells[t] = row["vote"]
            lineage.append(json.loads(row["lineage"]))
    n = len(docs)
    return pa.table(
        {
            "id": [d["id"] for d in docs],
            "text": [d["text"] for d in docs],
            "gold": [None if gold is None else gold["gold"]] * n,
            "gold_seed": [bool(gold is not None and gold["gold_seed"])] * n,
            "teacher_probs": [cells] * n,
            "lineage": [json.dumps(lineage)] * n,
        },
        schema=assembled_schema(),
    )


def assemble_votes(
    config: LabelmillConfig,
    teachers: Sequence[str],
    vote_files: Sequence[list[str]],
    version: str,
    num_partitions: int,
) -> Any:
    """The (lazy) assembled dataset: one row per corpus document, teachers in the given order."""
    cpus = config.ray.light_stage_cpus
    names = [label.name for label in config.taxonomy.labels]
    corpus = read_corpus(corpus_without_gold_column(config.corpus), cpus)
    parts = [corpus.map_batches(doc_rows, batch_format="pyarrow", num_cpus=cpus)]
    gold = read_gold(config.gold, config.corpus, names, cpus)
    if gold is not None:
        parts.append(gold.map_batches(gold_rows, batch_format="pyarrow", num_cpus=cpus))
    for t, (teacher, files) in enumerate(zip(teachers, vote_files, strict=True)):
        votes = read_teacher_votes(config.output_uri, teacher, files, cpus)
        parts.append(
            votes.map_batches(
                vote_rows,
                batch_format="pyarrow",
                fn_kwargs={"teacher": t, "names": names, "version": version},
                num_cpus=cpus,
            )
        )
    union = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return union.groupby("id", num_partitions=num_partitions).map_groups(
        assemble_group,
        batch_format="pyarrow",
        fn_kwargs={"n_teachers": len(teachers)},
        num_cpus=cpus,
    )


def aggregate_label_schema() -> pa.Schema:
    """Schema of the aggregate label Parquet parts (one row per corpus document)."""
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("text", pa.string()),
            pa.field("gold", pa.list_(pa.string())),
            pa.field("gold_seed", pa.bool_()),
            pa.field("teachers", pa.list_(pa.string())),
            pa.field("teacher_probs", pa.list_(pa.list_(pa.float64()))),
            pa.field("probs", pa.list_(pa.float64())),
            pa.field("labels", pa.list_(pa.string())),
            pa.field("agreement", pa.float64()),
            pa.field("n_teachers", pa.int64()),
            pa.field("method", pa.string()),
            pa.field("taxonomy_version", pa.string()),
            pa.field("lineage", pa.string()),
            pa.field("error", pa.string()),
        ]
    )


@dataclass(frozen=True)
class BatchSpec:
    """What every per-batch UDF needs: label and teacher order, gold anchoring, vote model."""

    names: tuple[str, ...]
    teachers: tuple[str, ...]
    use_gold: bool
    soft_votes: str = "score"
    score_teachers: tuple[bool, ...] = ()  # (T,): read through the score observation model


def batch_arrays(
    batch: pa.Table, spec: BatchSpec
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """An assembled batch -> votes (N, T, K), and gold (N, K) / gold_mask (N,) of seed rows."""
    votes = votes_from_teacher_probs(batch["teacher_probs"], len(spec.teachers), len(spec.names))
    if not spec.use_gold:
        return votes, None, None
    gold, has = multi_hot(batch["gold"].to_pylist(), spec.names, what="gold label")
    seed = np.asarray(batch["gold_seed"].fill_null(False).to_numpy(zero_copy_only=False))
    return votes, gold, has & seed.astype(bool)


def label_table(
    batch: pa.Table,
    spec: BatchSpec,
    votes: np.ndarray,
    probs: np.ndarray,
    threshold: Any,
    method: str,
    version: str,
) -> pa.Table:
    """An assembled batch, its votes (N, T, K) and probabilities (N, K) -> aggregate label rows
    (``labels``: ``probs >= threshold``, a scalar or per-label (K,)).

    Rows no teacher voted on get null probs and agreement, no labels, ``error`` NO_VOTE_ERROR.
    """
    n_docs = batch.num_rows
    voted = n_teachers(votes)
    none = voted == 0
    agree = agreement(votes)
    hard = np.where(np.isnan(probs), False, probs >= threshold)
    cells = [
        None if none[n] else [None if np.isnan(p) else float(p) for p in probs[n]]
        for n in range(n_docs)
    ]
    names = np.array(spec.names, dtype=object)
    columns = {
        "id": batch["id"],
        "text": batch["text"],
        "gold": batch["gold"],
        "gold_seed": batch["gold_seed"].fill_null(False),
        "teachers": pa.array([list(spec.teachers)] * n_docs, pa.list_(pa.string())),
        "teacher_probs": batch["teacher_probs"],
        "probs": pa.array(cells, pa.list_(pa.float64())),
        "labels": pa.array(
            [[] if none[n] else names[hard[n]].tolist() for n in range(n_docs)],
            pa.list_(pa.string()),
        ),
        "agreement": pa.array(agree, pa.float64(), mask=np.isnan(agree)),
        "n_teachers": pa.array(voted, pa.int64()),
        "method": pa.array([method] * n_docs, pa.string()),
        "taxonomy_version": pa.array([version] * n_docs, pa.string()),
        "lineage": batch["lineage"],
        "error": pa.array([NO_VOTE_ERROR if e else None for e in none], pa.string()),
    }
    schema = aggregate_label_schema()
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def write_label_part(table: pa.Table, uri: str) -> None:
    """Write one part atomically; its name is a digest of its ids, so a retry overwrites it."""
    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(path, exist_ok=True)
    digest = hashlib.sha256("\n".join(sorted(table["id"].to_pylist())).encode()).hexdigest()[:24]
    temporary = f"{path}/.tmp-{uuid.uuid4().hex}.parquet"
    with fs.open(temporary, "wb") as handle:
        pq.write_table(table, handle)
    fs.mv(temporary, f"{path}/part-{digest}.parquet")
