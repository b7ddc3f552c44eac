"""The one atomic Parquet part writer as a Ray ``Datasink``, over the core's part files.

Every stage that writes ``part-*.parquet`` under the run directory writes through here. A part's
name is a digest of the key columns of the rows it holds, so a retried task overwrites its own
part instead of adding a duplicate; a part is written to a hidden temporary name and renamed, so
a killed job leaves no half-written part a reader would see (readers list ``part-*`` only).

The writer and the listing themselves are pure (:mod:`labelmill.part_files`, so the core's
``labelmill status`` lists parts the same way); this module adds the Ray side. Use
:class:`AtomicPartsDatasink` with ``Dataset.write_datasink`` where nothing but the files is
wanted; a map UDF that must also return a per-part summary (the label job's token counts, the
aggregate's tallies) calls :func:`write_part` itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import fsspec
import pyarrow as pa
from ray.data import Datasink

from labelmill.part_files import PART_PREFIX, list_parts, part_digest, write_part

__all__ = [
    "PART_PREFIX",
    "AtomicPartsDatasink",
    "list_parts",
    "part_digest",
    "read_parts_dataset",
    "write_part",
]


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
