"""The one atomic Parquet part writer (a Ray ``Datasink`` and its function) and part listing.

Every stage that writes ``part-*.parquet`` under the run directory writes through here. A part's
name is a digest of the key columns of the rows it holds, so a retried task overwrites its own
part instead of adding a duplicate; a part is written to a hidden temporary name and renamed, so
a killed job leaves no half-written part a reader would see (readers list ``part-*`` only).

Use :class:`AtomicPartsDatasink` with ``Dataset.write_datasink`` where nothing but the files is
wanted; a map UDF that must also return a per-part summary (the label job's token counts, the
aggregate's tallies) calls :func:`write_part` itself.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data import Datasink

PART_PREFIX = "part-"


def part_digest(table: pa.Table, key_columns: Sequence[str]) -> str:
    """24 hex digits of the SHA-256 of the table's sorted row keys (order-free, retry-stable).

    A row's key is its ``key_columns`` values joined by ``\\x1f``; keys are joined by newlines.
    """
    columns = [table[name].to_pylist() for name in key_columns]
    keys = sorted("\x1f".join(str(v) for v in row) for row in zip(*columns, strict=True))
    return hashlib.sha256("\n".join(keys).encode("utf-8", "surrogatepass")).hexdigest()[:24]


def write_part(table: pa.Table, dir_uri: str, key_columns: Sequence[str] = ("id",)) -> str:
    """Write ``table`` atomically as ``<dir_uri>/part-<digest>.parquet``; return that path.

    Writes to ``.tmp-<uuid>.parquet`` first and renames, so readers never see half a part.
    """
    fs, path = fsspec.core.url_to_fs(dir_uri)
    fs.makedirs(path, exist_ok=True)
    temporary = f"{path}/.tmp-{uuid.uuid4().hex}.parquet"
    with fs.open(temporary, "wb") as handle:
        pq.write_table(table, handle)
    final = f"{path}/{PART_PREFIX}{part_digest(table, key_columns)}.parquet"
    fs.mv(temporary, final)
    return final


def list_parts(dir_uri: str) -> list[str]:
    """Paths (in the URI's filesystem) of the ``part-*`` files under ``dir_uri``, sorted.

    A missing directory has no parts. Temporary (``.tmp-*``) files are never listed.
    """
    fs, path = fsspec.core.url_to_fs(dir_uri)
    fs.invalidate_cache(path)  # parts are written by Ray workers: never a stale (s3fs) listing
    if not fs.exists(path):
        return []
    return sorted(p for p in fs.find(path) if p.rsplit("/", 1)[-1].startswith(PART_PREFIX))


def read_parts_dataset(dir_uri: str, columns: list[str] | None = None) -> Any | None:
    """The parts under ``dir_uri`` as a Ray Dataset (``columns`` only), or None if none exist.

    Files are listed on the driver (one path per part, not per row) and read by Ray tasks.
    """
    import ray.data

    files = list_parts(dir_uri)
    if not files:
        return None
    fs, _ = fsspec.core.url_to_fs(dir_uri)
    ds = ray.data.read_parquet(files, filesystem=fs)
    return ds if columns is None else ds.select_columns(columns)  # pushed down to the reader


class AtomicPartsDatasink(Datasink[int]):
    """Ray Datasink: each written block becomes one atomic part under ``dir_uri``.

    ``schema`` (optional) is the schema every part is cast to; ``key_columns`` name the part
    (see :func:`part_digest`). Each write task returns the number of rows it wrote.
    """

    def __init__(
        self,
        dir_uri: str,
        key_columns: Sequence[str] = ("id",),
        schema: pa.Schema | None = None,
    ) -> None:
        self.dir_uri = dir_uri
        self.key_columns = tuple(key_columns)
        self.schema = schema
        self.rows_written = 0

    def write(self, blocks: Iterable[Any], ctx: Any) -> int:
        rows = 0
        for block in blocks:
            table = block if isinstance(block, pa.Table) else pa.Table.from_pandas(block)
            if table.num_rows == 0:
                continue
            if self.schema is not None:
                table = table.select(self.schema.names).cast(self.schema)
            write_part(table, self.dir_uri, self.key_columns)
            rows += table.num_rows
        return rows

    def on_write_complete(self, write_result: Any) -> None:
        # Runs on the driver: the per-task row counts (one int per task, not per row).
        self.rows_written = sum(write_result.write_returns)
