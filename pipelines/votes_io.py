"""Teacher-vote Parquet I/O: atomic part files, resume keys, reading votes back.

Layout: ``<output_uri>/votes/<teacher>/part-<digest>.parquet``. A part's name is a digest of the
(id, prompt_hash) pairs it holds, so a retried task overwrites its own part instead of adding a
duplicate; a part is written to a hidden temporary name and renamed, so a killed job leaves no
half-written part that a reader would see.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from labelmill.records import vote_schema


def votes_dir(output_uri: str, teacher: str) -> str:
    """The directory URI holding one teacher's vote parts."""
    return f"{output_uri.rstrip('/')}/votes/{teacher}"


def _part_files(fs: Any, path: str) -> list[str]:
    fs.invalidate_cache(path)  # parts are written by Ray workers: never a stale listing
    if not fs.exists(path):
        return []
    return sorted(p for p in fs.find(path) if p.rsplit("/", 1)[-1].startswith("part-"))


def read_votes(output_uri: str, teacher: str, columns: list[str] | None = None) -> pa.Table:
    """All vote rows written so far for one teacher (an empty table when there are none)."""
    fs, path = fsspec.core.url_to_fs(votes_dir(output_uri, teacher))
    tables = []
    for file in _part_files(fs, path):
        with fs.open(file, "rb") as handle:
            tables.append(pq.read_table(handle, columns=columns))
    if not tables:
        schema = vote_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        return schema.empty_table()
    return pa.concat_tables(tables)


def done_ids(output_uri: str, teacher: str, prompt_hash: str, taxonomy_version: str) -> pa.Array:
    """Ids already written for this teacher with the same prompt hash and taxonomy version."""
    table = read_votes(output_uri, teacher, ["id", "prompt_hash", "taxonomy_version"])
    mask = pc.and_(
        pc.equal(table["prompt_hash"], prompt_hash),
        pc.equal(table["taxonomy_version"], taxonomy_version),
    )
    return pc.unique(table.filter(mask)["id"].combine_chunks())


def drop_done(batch: pa.Table, done: pa.Array) -> pa.Table:
    """Keep the id and text of the rows of ``batch`` whose id is not in ``done``."""
    batch = batch.select(["id", "text"])
    if len(done) == 0:
        return batch
    return batch.filter(pc.invert(pc.is_in(batch["id"], value_set=done)))


def write_vote_part(batch: pa.Table, output_uri: str, teacher: str) -> pa.Table:
    """Ray Data UDF: write a batch of vote records as one atomic part; return its summary row."""
    if batch.num_rows == 0:
        return summary_table(None)
    fs, path = fsspec.core.url_to_fs(votes_dir(output_uri, teacher))
    fs.makedirs(path, exist_ok=True)
    table = batch.select(vote_schema().names).cast(vote_schema())
    keys = sorted(
        f"{i}\x1f{h}"
        for i, h in zip(table["id"].to_pylist(), table["prompt_hash"].to_pylist(), strict=True)
    )
    digest = hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()[:24]
    temporary = f"{path}/.tmp-{uuid.uuid4().hex}.parquet"
    with fs.open(temporary, "wb") as handle:
        pq.write_table(table, handle)
    fs.mv(temporary, f"{path}/part-{digest}.parquet")
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
