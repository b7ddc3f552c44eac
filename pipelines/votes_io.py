"""Teacher-vote Parquet I/O: atomic part files, resume keys as datasets, reading votes back.

Layout: ``<output_uri>/votes/<teacher>/part-<digest>.parquet``, written by
:func:`labelmill.pipelines.parts.write_part` (atomic; the digest of the (id, prompt_hash) pairs
a part holds names it, so a retried task overwrites its own part).

Resume never brings the written ids to the driver: :func:`written_ids` is a Ray Dataset of them
and :func:`anti_join_ids` keeps the corpus rows without a vote by a hash-partitioned
``left_anti`` join (both sides are shuffled by id; each partition is joined on its own task).
:func:`ids_fingerprint` sums an order-free fingerprint of a dataset's ids over its blocks (no
shuffle), so the label job skips both joins when the written ids are exactly the corpus ids.
"""

from __future__ import annotations

from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from labelmill.id_fingerprint import combine_fingerprints, id_fingerprint
from labelmill.layout import votes_dir
from labelmill.pipelines.parts import list_parts, read_parts_dataset, write_part
from labelmill.records import vote_schema

# Rows per join partition: bounds a join task's memory (about 100 bytes an id row, a few KiB a
# text row) independently of the corpus size; more rows mean more partitions, not bigger ones.
ROWS_PER_JOIN_PARTITION = 250_000


def read_votes(output_uri: str, teacher: str, columns: list[str] | None = None) -> pa.Table:
    """All vote rows written so far for one teacher (an empty table when there are none).

    Driver-side: for tests, reports and small campaign subsets, never in the label job.
    """
    uri = votes_dir(output_uri, teacher)
    fs, _ = fsspec.core.url_to_fs(uri)
    tables = []
    for file in list_parts(uri):
        with fs.open(file, "rb") as handle:
            tables.append(pq.read_table(handle, columns=columns))
    if not tables:
        schema = vote_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        return schema.empty_table()
    return pa.concat_tables(tables)


def keep_lineage(batch: pa.Table, prompt_hash: str, taxonomy_version: str) -> pa.Table:
    """Ray Data UDF: the ``id`` column of the vote rows of this prompt hash and taxonomy version."""
    mask = pc.and_(
        pc.equal(batch["prompt_hash"], prompt_hash),
        pc.equal(batch["taxonomy_version"], taxonomy_version),
    )
    return batch.filter(mask).select(["id"])


def written_ids(
    output_uri: str, teacher: str, prompt_hash: str, taxonomy_version: str, cpus: float = 1.0
) -> Any | None:
    """Dataset (column ``id``) of the ids written for this prompt hash and taxonomy version.

    None when the teacher has no part yet (no join is needed then). Only the part paths are
    listed on the driver.
    """
    ds = read_parts_dataset(
        votes_dir(output_uri, teacher), columns=["id", "prompt_hash", "taxonomy_version"]
    )
    if ds is None:
        return None
    return ds.map_batches(
        keep_lineage,
        fn_kwargs={"prompt_hash": prompt_hash, "taxonomy_version": taxonomy_version},
        batch_format="pyarrow",
        num_cpus=cpus,
    )


def join_partitions(rows: int) -> int:
    """Partitions of an id join over about ``rows`` rows: ``ceil(rows / 250,000)``, at least 1."""
    return max(1, -(-int(rows) // ROWS_PER_JOIN_PARTITION))


def anti_join_ids(left: Any, ids: Any, rows: int) -> Any:
    """Rows of dataset ``left`` whose ``id`` is not in dataset ``ids`` (distributed, on id).

    ``rows`` (the larger side's row count, roughly) sizes the partitions.
    """
    return left.join(ids, join_type="left_anti", num_partitions=join_partitions(rows), on=("id",))


def _block_fingerprint(batch: pa.Table) -> pa.Table:
    count, total = id_fingerprint(batch["id"].to_pylist())
    return pa.table({"count": pa.array([count], pa.int64()), "sum": pa.array([total], pa.uint64())})


def ids_fingerprint(ds: Any, cpus: float = 1.0) -> tuple[int, int]:
    """The :mod:`labelmill.id_fingerprint` of the ``id`` column of dataset ``ds``.

    One row per block comes to the driver (``batch_size=None``: a whole block per call).
    """
    rows = ds.map_batches(
        _block_fingerprint, batch_format="pyarrow", batch_size=None, num_cpus=cpus
    ).iter_rows()
    return combine_fingerprints((row["count"], row["sum"]) for row in rows)


def semi_join_ids(left: Any, ids: Any, rows: int) -> Any:
    """Rows of dataset ``left`` whose ``id`` is in dataset ``ids`` (distributed, on id)."""
    return left.join(ids, join_type="left_semi", num_partitions=join_partitions(rows), on=("id",))


def write_vote_part(batch: pa.Table, output_uri: str, teacher: str) -> pa.Table:
    """Ray Data UDF: write a batch of vote records as one atomic part; return its summary row."""
    if batch.num_rows == 0:
        return summary_table(None)
    table = batch.select(vote_schema().names).cast(vote_schema())
    write_part(table, votes_dir(output_uri, teacher), key_columns=("id", "prompt_hash"))
    return summary_table(table)


def summary_table(table: pa.Table | None) -> pa.Table:
    """One summary row for a written part (zeros for none): rows, errors, truncated, tokens."""
    if table is None:
        counts = dict.fromkeys(("rows", "errors", "truncated", "prompt_tokens", "output_tokens"), 0)
    else:
        counts = {
            "rows": table.num_rows,
            "errors": table.num_rows - table["error"].null_count,
            "truncated": pc.sum(table["truncated"].cast(pa.int64())).as_py() or 0,
            "prompt_tokens": pc.sum(table["prompt_tokens"]).as_py() or 0,
            "output_tokens": pc.sum(table["output_tokens"]).as_py() or 0,
        }
    return pa.table({name: [value] for name, value in counts.items()})
