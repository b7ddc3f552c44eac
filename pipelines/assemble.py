"""Row assembly of the aggregation job: votes in, one row per corpus document, label rows out.

The corpus rows, the gold rows and every teacher's vote rows are normalised to one common schema
(:func:`assembly_schema`, a ``kind`` column telling them apart), unioned, and hash-partitioned by
id: nothing is collected on the driver. Each block, holding every row of its ids, is assembled
at once with Arrow / numpy (:func:`assemble_block`), one row per corpus row of an id
(:func:`assembled_schema`); votes for ids outside the corpus are dropped there.

Votes are read from ``<output_uri>/votes/<teacher>/part-*.parquet``. Only votes of the current
taxonomy version are used; of several rows for the same (id, teacher) the latest ``created_at``
wins. Errored votes and unreadable ones (a label outside the taxonomy, probs of the wrong length)
are abstentions (see :mod:`labelmill.vote_matrix`).

Output side: :func:`label_table` turns an assembled batch plus its probabilities into rows of
:func:`aggregate_label_schema` (written as atomic parts by :mod:`labelmill.part_files`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from labelmill.aggregation import agreement, n_teachers
from labelmill.config import LabelmillConfig
from labelmill.pipelines.corpus import read_corpus
from labelmill.pipelines.gold import corpus_without_gold_column, read_gold
from labelmill.pipelines.votes_io import votes_dir
from labelmill.records import OLDEST_US, counting_vote_rows
from labelmill.taxonomy import multi_hot
from labelmill.vote_matrix import matrix_to_cells, vote_matrix, votes_from_teacher_probs

DOC, GOLD, VOTE = 0, 1, 2
# Vote modes that carry a probability per label (read through the score observation model);
# "set" and the simulations' "simulated" are hard label sets.
SCORE_MODES = ("score", "embedding")
NO_VOTE_ERROR = "no teacher voted"
LINEAGE_KEYS = ("teacher", "model", "mode", "prompt_hash")


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


def lineage_json(batch: pa.Table) -> pa.Array:
    """Each vote row's lineage as JSON (teacher, model, mode, prompt_hash), computed once per
    distinct combination rather than once per row. -> (N,) string"""
    columns = [batch[key].cast(pa.string()).combine_chunks() for key in LINEAGE_KEYS]
    if batch.num_rows == 0:
        return pa.array([], pa.string())
    joined = pc.binary_join_element_wise(
        *columns, "\x1f", null_handling="replace", null_replacement="\x1e"
    )
    encoded = joined.dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    first = np.full(len(encoded.dictionary), -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # one row of each combination
    pairs = list(zip(LINEAGE_KEYS, columns, strict=True))
    texts = [json.dumps({key: col[int(i)].as_py() for key, col in pairs}) for i in first]
    return pa.array(texts, pa.string()).take(encoded.indices)


def vote_rows(batch: pa.Table, teacher: int, names: Sequence[str], version: str) -> pa.Table:
    """Ray Data UDF: vote records of teacher number ``teacher`` -> assembly rows of kind VOTE.

    Rows of another taxonomy version are dropped; each kept row carries its (K,) vector (null
    for an abstention, see :func:`labelmill.vote_matrix.vote_matrix`) and its lineage as JSON.
    """
    batch = batch.filter(pc.equal(batch["taxonomy_version"], version))
    matrix = vote_matrix(batch["labels"], batch["probs"], batch["error"], names)
    n = batch.num_rows
    return _rows_table(
        {
            "id": batch["id"].cast(pa.string()),
            "kind": pa.array(np.full(n, VOTE, np.int8)),
            "teacher": pa.array(np.full(n, teacher, np.int32)),
            "vote": matrix_to_cells(matrix),
            "lineage": lineage_json(batch),
            "created_at": batch["created_at"].cast(pa.timestamp("us", tz="UTC")),
        },
        n,
    )


def _read_parts(batch: dict[str, Any], uri: str) -> Iterator[pa.Table]:
    fs, _ = fsspec.core.url_to_fs(uri)
    for file in batch["path"]:
        with fs.open(str(file), "rb") as handle:
            yield pq.read_table(handle)


def vote_mode(output_uri: str, part: str) -> str | None:
    """The ``mode`` of a teacher's votes, read from the first row of one part (a path as
    :func:`labelmill.part_files.list_parts` gives it: on the run directory's file system,
    without a scheme)."""
    fs, _ = fsspec.core.url_to_fs(output_uri)
    with fs.open(part, "rb") as handle:
        modes = pq.read_table(handle, columns=["mode"]).column("mode")
    return str(modes[0].as_py()) if len(modes) else None


def read_teacher_votes(output_uri: str, teacher: str, files: list[str], cpus: float) -> Any:
    """One teacher's vote parts as a Ray Dataset (one read task per part file)."""
    import ray.data

    uri = votes_dir(output_uri, teacher)
    return ray.data.from_items([{"path": file} for file in files]).map_batches(
        _read_parts, batch_size=1, fn_kwargs={"uri": uri}, num_cpus=cpus
    )


def _first_row(keys: np.ndarray, rows: np.ndarray, n_keys: int) -> np.ndarray:
    """Index of the first of ``rows`` for each key (-1 for none). keys: (R,) -> (n_keys,)"""
    first = np.full(n_keys, -1, dtype=np.int64)
    first[keys[::-1]] = rows[::-1]  # the last assignment (the first row) wins
    return first


def _take(column: Any, rows: np.ndarray) -> Any:
    """column[rows] with null where rows is -1."""
    return column.take(pa.array(rows, pa.int64(), mask=rows < 0))


def _lineage_lists(lineage: Any, vote_of: np.ndarray) -> pa.Array:
    """Per key, the JSON list of the counted votes' lineages in teacher order (as
    ``json.dumps`` writes it), built once per distinct combination of lineages.

    lineage: (V,) JSON strings, vote_of: (D, T) vote row or -1 -> (D,) string
    """
    codes = np.full(vote_of.shape, -1, dtype=np.int64)
    present = vote_of >= 0
    encoded = lineage.dictionary_encode()
    codes[present] = encoded.indices.to_numpy(zero_copy_only=False)[vote_of[present]]
    base = len(encoded.dictionary) + 1
    if base ** codes.shape[1] < 2**62:  # one integer per key: a fast 1-D unique
        packed = (codes + 1) @ (base ** np.arange(codes.shape[1], dtype=np.int64))
        _, first, which = np.unique(packed, return_index=True, return_inverse=True)
        combos = codes[first]
    else:
        combos, which = np.unique(codes, axis=0, return_inverse=True)
    texts = encoded.dictionary.to_pylist()
    lists = ["[" + ", ".join(texts[c] for c in combo if c >= 0) + "]" for combo in combos]
    return pa.array(lists, pa.string()).take(pa.array(which.reshape(-1)))


def assemble_block(block: pa.Table, n_teachers: int) -> pa.Table:
    """map_batches UDF over whole blocks that hold every row of their ids (hash-partitioned by
    id): assembly rows -> one assembled row per corpus row, vectorized over the block.

    Gold comes from the first gold row of an id; per (id, teacher) the vote that counts is kept
    (:func:`labelmill.records.counting_vote_rows`), an abstention if its vote is null. Ids
    without a corpus row give nothing (votes for unknown ids); a duplicated corpus id gives one
    row per corpus row, each with that id's votes.
    """
    if block.num_rows == 0:
        return assembled_schema().empty_table()
    encoded = block["id"].combine_chunks().dictionary_encode()
    keys = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    n_keys = len(encoded.dictionary)
    kind = block["kind"].to_numpy()
    is_doc, is_gold, is_vote = (pa.array(kind == k) for k in (DOC, GOLD, VOTE))
    docs = block.select(["id", "text"]).filter(is_doc).combine_chunks()
    golds = block.select(["gold", "gold_seed"]).filter(is_gold).combine_chunks()
    votes = block.select(["teacher", "vote", "lineage", "created_at"]).filter(is_vote)
    votes = votes.combine_chunks()
    vote_keys = keys[kind == VOTE]
    teacher = votes["teacher"].to_numpy().astype(np.int64)
    lineage = votes["lineage"].chunk(0) if votes.num_rows else pa.array([], pa.string())
    counted = counting_vote_rows(
        vote_keys,
        teacher,
        votes["created_at"].cast(pa.int64()).fill_null(int(OLDEST_US)).to_numpy(),
        lineage,
    )
    counted = counted[votes["vote"].is_valid().to_numpy(zero_copy_only=False)[counted]]
    vote_of = np.full((n_keys, n_teachers), -1, dtype=np.int64)  # (D, T) counted vote row
    vote_of[vote_keys[counted], teacher[counted]] = counted
    doc_keys = keys[kind == DOC]
    cells = _take(votes["vote"].combine_chunks(), vote_of[doc_keys].reshape(-1))
    offsets = pa.array(np.arange(docs.num_rows + 1, dtype=np.int32) * n_teachers, pa.int32())
    gold_keys = keys[kind == GOLD]
    gold_row = _first_row(gold_keys, np.arange(len(gold_keys)), n_keys)[doc_keys]
    columns = {
        "id": docs["id"],
        "text": docs["text"],
        "gold": _take(golds["gold"].combine_chunks(), gold_row),
        "gold_seed": _take(golds["gold_seed"].combine_chunks(), gold_row).fill_null(False),
        "teacher_probs": pa.ListArray.from_arrays(offsets, cells),
        "lineage": _lineage_lists(lineage, vote_of).take(pa.array(doc_keys)),
    }
    schema = assembled_schema()
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def colocate_ids(ds: Any, num_partitions: int) -> Any:
    """Hash-partition ``ds`` by id so that every row of an id lies in one block (as Ray's own
    ``groupby().map_groups`` does before its per-group calls); a sort under other shuffle
    strategies. Read it with ``batch_size=None``: one batch per block."""
    from ray.data.context import DataContext, ShuffleStrategy

    hashed = (ShuffleStrategy.HASH_SHUFFLE, ShuffleStrategy.SHUFFLE_V2, ShuffleStrategy.GPU_SHUFFLE)
    if DataContext.get_current().shuffle_strategy in hashed:
        return ds.repartition(num_partitions, keys=["id"])
    return ds.sort("id")


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
    return colocate_ids(union, num_partitions).map_batches(
        assemble_block,
        batch_size=None,
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
    hard = np.where(np.isnan(probs), False, probs >= threshold) & ~none[:, None]
    flat = np.asarray(probs, dtype=np.float64).reshape(-1)
    n_labels = len(spec.names)
    probs_offsets = pa.array(np.arange(n_docs + 1, dtype=np.int32) * n_labels, pa.int32())
    label_offsets = np.zeros(n_docs + 1, dtype=np.int32)
    np.cumsum(hard.sum(axis=1), out=label_offsets[1:])
    which = np.nonzero(hard)[1]  # row-major: each row's labels in taxonomy order
    n_teach = len(spec.teachers)
    teacher_offsets = pa.array(np.arange(n_docs + 1, dtype=np.int32) * n_teach, pa.int32())
    teacher_names = pa.array(np.tile(np.arange(n_teach), n_docs)).cast(pa.int64())
    columns = {
        "id": batch["id"],
        "text": batch["text"],
        "gold": batch["gold"],
        "gold_seed": batch["gold_seed"].fill_null(False),
        "teachers": pa.ListArray.from_arrays(
            teacher_offsets, pa.array(spec.teachers, pa.string()).take(teacher_names)
        ),
        "teacher_probs": batch["teacher_probs"],
        "probs": pa.ListArray.from_arrays(
            probs_offsets,
            pa.array(flat, pa.float64(), mask=np.isnan(flat)),
            mask=pa.array(none),
        ),
        "labels": pa.ListArray.from_arrays(
            pa.array(label_offsets), pa.array(spec.names, pa.string()).take(pa.array(which))
        ),
        "agreement": pa.array(agree, pa.float64(), mask=np.isnan(agree)),
        "n_teachers": pa.array(voted, pa.int64()),
        "method": pa.repeat(pa.scalar(method, pa.string()), n_docs),
        "taxonomy_version": pa.repeat(pa.scalar(version, pa.string()), n_docs),
        "lineage": batch["lineage"],
        "error": pa.array(np.full(n_docs, NO_VOTE_ERROR), pa.string(), mask=~none),
    }
    schema = aggregate_label_schema()
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
