"""Atomic Parquet part files under the run directory: the one writer and the one listing.

A part's name is a digest of the key columns of the rows it holds, so a retried task overwrites
its own part instead of adding a duplicate; a part is written to a hidden temporary name and
renamed, so a killed job leaves no half-written part a reader would see (readers list
``part-*`` only). Pure fsspec + pyarrow: the Ray Datasink over it is
:mod:`labelmill.pipelines.parts`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

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
