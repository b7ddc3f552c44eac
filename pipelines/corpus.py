"""Reading a corpus (Parquet / JSONL / CSV on any fsspec URI) into a Ray Dataset.

Output columns: ``id`` (string; the configured id column, or a content hash of the text where
there is none or it is null), ``text`` (as read: validated later, so bad rows are kept), and
``gold`` (list of label names) when a gold column is configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from labelmill.config import CorpusConfig
from labelmill.documents import content_id
from labelmill.errors import InputError


def _filesystem(uri: str) -> tuple[Any, str]:
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def list_corpus_files(fs: Any, path: str) -> list[str]:
    """The data files of a corpus URI: the file itself, or every non-hidden file under it."""
    if fs.isfile(path):
        return [path]
    files = sorted(p for p in fs.find(path) if not p.rsplit("/", 1)[-1].startswith((".", "_")))
    if not files:
        raise InputError(f"no files under corpus uri {path!r}")
    return files


def read_corpus_file(fs: Any, file: str, fmt: str) -> Iterator[pa.Table]:
    """Yield one file's rows as Arrow tables (Parquet by row group)."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    with fs.open(file, "rb") as handle:
        if fmt == "parquet":
            reader = pq.ParquetFile(handle)
            for group in range(reader.num_row_groups):
                yield reader.read_row_group(group)
        elif fmt == "jsonl":
            yield pajson.read_json(handle)
        else:
            yield pacsv.read_csv(handle)


def _read_files_batch(batch: dict[str, Any], uri: str, fmt: str) -> Iterator[pa.Table]:
    fs, _ = _filesystem(uri)
    for file in batch["path"]:
        yield from read_corpus_file(fs, str(file), fmt)


def read_corpus(config: CorpusConfig, cpus: float = 1.0) -> Any:
    """Open the corpus as a Ray Dataset with columns id, text[, gold]; ``cpus`` per read task.

    Files are listed on the driver and read by Ray tasks (one file per task), each reserving
    ``cpus`` (a process-local ``memory://`` URI is refused at config load: workers cannot see
    it).
    """
    import ray.data

    fs, path = _filesystem(config.uri)
    if not fs.exists(path):
        raise InputError(f"corpus uri {config.uri!r} does not exist")
    fmt = config.resolved_format
    files = list_corpus_files(fs, path)
    ds = ray.data.from_items([{"path": file} for file in files]).map_batches(
        _read_files_batch,
        batch_size=1,
        fn_kwargs={"uri": config.uri, "fmt": fmt},
        num_cpus=cpus,
    )
    columns = set(ds.schema().names)
    for field, column in (
        ("text_column", config.text_column),
        ("gold_column", config.gold_column),
        ("id_column", None if config.id_column == "id" else config.id_column),
    ):
        if column is not None and column not in columns:
            raise InputError(
                f"corpus.{field} {column!r} is not a column of {config.uri!r}; "
                f"columns: {sorted(columns)}"
            )
    if config.limit is not None:
        ds = ds.limit(config.limit)
    return ds.map_batches(
        normalize_corpus_batch,
        batch_format="pyarrow",
        fn_kwargs={"config": config},
        num_cpus=cpus,
    )


def normalize_corpus_batch(batch: pa.Table, config: CorpusConfig) -> pa.Table:
    """Rename/complete a raw batch to id, text[, gold]; missing ids become content hashes."""
    columns = set(batch.column_names)
    if config.text_column not in columns:
        raise InputError(
            f"corpus has no text column {config.text_column!r}; columns: {sorted(columns)}"
        )
    texts = batch.column(config.text_column)
    if config.id_column is not None and config.id_column in columns:
        ids = pc.cast(batch.column(config.id_column), pa.string()).to_pylist()
    elif config.id_column is not None and config.id_column != "id":
        raise InputError(
            f"corpus has no id column {config.id_column!r}; columns: {sorted(columns)}"
        )
    else:
        ids = [None] * batch.num_rows
    text_values = texts.to_pylist()
    ids = [
        i if i not in (None, "") else content_id(t) for i, t in zip(ids, text_values, strict=True)
    ]
    out = {"id": pa.array(ids, pa.string()), "text": texts}
    if config.gold_column is not None:
        if config.gold_column not in columns:
            raise InputError(
                f"corpus has no gold column {config.gold_column!r}; columns: {sorted(columns)}"
            )
        out["gold"] = batch.column(config.gold_column)
    return pa.table(out)
