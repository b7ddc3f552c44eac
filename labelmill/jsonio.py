"""The one JSON helper: read and write JSON documents on any fsspec URI.

Summaries, calibration files, campaign state and ``labelmill.json`` all go through here, so they
share one encoding (UTF-8, indented, numpy scalars as numbers) and one atomic-write rule on local
paths (a reader never sees half a file).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


def _default(value: Any) -> Any:
    """numpy scalars and arrays (and anything with ``tolist``/``__float__``) as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return float(value)


def dumps(payload: Any) -> str:
    """``payload`` as the project's JSON text (indent 2, non-ASCII kept, trailing newline)."""
    return json.dumps(payload, indent=2, ensure_ascii=False, default=_default) + "\n"


def write_json(uri: str, payload: Any) -> None:
    """Write ``payload`` as JSON to ``uri`` (parent directories created).

    Local paths are written to a temporary file and renamed, so the file is either the old or
    the new content; object stores write whole objects anyway.
    """
    text = dumps(payload)
    fs, path = fsspec.core.url_to_fs(uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        fd, tmp = tempfile.mkstemp(dir=parent or ".", prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
        return
    with fs.open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def read_json(uri: str, default: Any = None) -> Any:
    """The JSON document at ``uri``, or ``default`` when the file does not exist.

    A file that exists but is not JSON raises ``ValueError`` (json.JSONDecodeError) naming it.
    """
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        return default
    with fs.open(path, "r", encoding="utf-8") as handle:
        text = handle.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{uri} is not valid JSON: {error}") from error
