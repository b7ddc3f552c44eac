"""Model artifacts on any fsspec URI: publish, replace, and fetch once per node into a cache.

A student directory (see :mod:`labelmill.student.export`) may live on a local path or on any
fsspec URI (``s3://bucket/run/student``, ``gs://...``, ``file:///nfs/...``). Readers never load
from a URI directly: :func:`fetch_model` copies one *version* of it into the node's cache,
``$LABELMILL_HOME/cache/models/<version>`` (``~/.cache/labelmill`` without the variable), and
every actor on that node loads the copy. A plain local path is loaded in place (nothing to copy).

The version is the ``model_version`` recorded in ``labelmill.json`` (taxonomy version and a hash
of the weights, written by the export); an older export without one is keyed by a hash of its
``labelmill.json`` and the files' fsspec ``ukey`` (an ETag on s3), so a new export at the same
URI gets a new cache entry, never the stale one. A fetched copy is checked against the recorded
version (the weights are re-hashed), so a directory replaced while it was being copied is refused.

Concurrency: a cache entry appears by one ``rename`` of a complete temporary copy, so a reader
sees it whole or not at all; an ``flock`` on ``<version>.lock`` makes concurrent fetchers on one
node (several actors) wait for the first instead of each downloading.

Publishing writes ``labelmill.json`` last: it is what readers look for first, so a reader of a
half-uploaded directory finds no student (or the previous version's metadata, refused by the
weights check) rather than a mixed one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec

from labelmill.errors import InputError, JobError
from labelmill.jsonio import write_json

METADATA_FILE = "labelmill.json"
# Written into each cache entry: which URI and version it was fetched from, by which process.
FETCH_RECORD = "labelmill-fetch.json"
_HASH_CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FETCH_ATTEMPTS = 3


def is_uri(location: str | Path) -> bool:
    """Whether ``location`` names a URI (``scheme://...``) rather than a plain local path."""
    return "://" in str(location)


def cache_root() -> Path:
    """This node's model cache: ``$LABELMILL_HOME/cache/models`` (``~/.cache/labelmill``)."""
    root = os.environ.get("LABELMILL_HOME")
    base = Path(root) if root else Path.home() / ".cache" / "labelmill"
    return base / "cache" / "models"


def weights_digest(model_dir: str | Path) -> str:
    """SHA-256 hex of ``model.safetensors`` (or of all ``*.safetensors`` shards in name order)."""
    path = Path(model_dir)
    single = path / "model.safetensors"
    files = [single] if single.is_file() else sorted(path.glob("*.safetensors"))
    if not files:
        raise InputError(f"no .safetensors weights in {str(model_dir)!r}")
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def version_of(taxonomy_version: str, model_dir: str | Path) -> str:
    """``<taxonomy version>-<first 12 hex of the weights' SHA-256>`` of a local directory."""
    return f"{taxonomy_version}-{weights_digest(model_dir)[:12]}"


def remove_dir(uri: str | Path) -> None:
    """Delete the directory at ``uri`` (local path or any fsspec URI) if it exists.

    The one way a student directory is deleted before it is replaced.
    """
    fs, path = fsspec.core.url_to_fs(str(uri))
    if fs.exists(path):
        fs.rm(path, recursive=True)


def publish_dir(local_dir: str | Path, uri: str) -> None:
    """Replace the directory at ``uri`` with the files of ``local_dir`` (any fsspec URI).

    The old directory is removed first, then every file is uploaded with ``labelmill.json``
    last (see the module doc for why).
    """
    source = Path(local_dir)
    files = sorted(p for p in source.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == METADATA_FILE)  # stable: the metadata goes last
    remove_dir(uri)
    fs, root = fsspec.core.url_to_fs(uri)
    fs.makedirs(root, exist_ok=True)
    for file in files:
        relative = file.relative_to(source).as_posix()
        if "/" in relative:
            fs.makedirs(f"{root}/{relative.rsplit('/', 1)[0]}", exist_ok=True)
        fs.put_file(str(file), f"{root}/{relative}")


def _remote_files(fs: Any, root: str) -> list[str]:
    """Paths relative to ``root`` of every file under it, sorted (never from a cached listing:
    another process may have published a new version since)."""
    fs.invalidate_cache(root)
    prefix = root.rstrip("/") + "/"
    return sorted(p[len(prefix) :] for p in fs.find(root) if p.startswith(prefix))


def artifact_version(uri: str) -> str:
    """The version of the student directory at ``uri`` (see the module doc); InputError when
    it holds no ``labelmill.json``."""
    fs, root = fsspec.core.url_to_fs(str(uri))
    meta_path = f"{root.rstrip('/')}/{METADATA_FILE}"
    fs.invalidate_cache(root)
    if not fs.exists(meta_path):
        raise InputError(f"no {METADATA_FILE} in {str(uri)!r}: not an exported student")
    raw = fs.cat_file(meta_path)
    try:
        meta = json.loads(raw)
    except ValueError as error:
        raise InputError(f"{uri}/{METADATA_FILE} is not valid JSON: {error}") from error
    recorded = meta.get("model_version") if isinstance(meta, dict) else None
    if isinstance(recorded, str) and recorded:
        return recorded
    root = root.rstrip("/")
    digest = hashlib.sha256(raw)
    for name in _remote_files(fs, root):
        digest.update(f"\x1f{name}\x1f{fs.ukey(root + '/' + name)}".encode())
    return f"legacy-{digest.hexdigest()[:16]}"


def _cache_name(version: str) -> str:
    """A file-system-safe cache entry name for ``version``."""
    if _SAFE_NAME.match(version):
        return version
    return "v-" + hashlib.sha256(version.encode("utf-8")).hexdigest()[:24]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created), held for the block."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(uri: str, target: Path) -> None:
    """Copy every file of the directory at ``uri`` into the (empty) local ``target``."""
    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    for name in _remote_files(fs, root):
        local = target / name
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(f"{root}/{name}", str(local))


def _copy_matches(copy: Path, version: str) -> bool:
    """Whether a fetched copy holds the weights its (recorded) ``version`` names."""
    meta = json.loads((copy / METADATA_FILE).read_text(encoding="utf-8"))
    recorded = meta.get("model_version")
    if not isinstance(recorded, str) or not recorded:
        return True  # an older export: nothing recorded to check against
    taxonomy = meta.get("taxonomy") or {}
    return recorded == version and version_of(str(taxonomy.get("version")), copy) == version


def fetch_model(
    uri: str | Path, version: str | None = None, cache: str | Path | None = None
) -> Path:
    """A local directory holding the student at ``uri``: ``uri`` itself for a plain local path,
    else this node's cached copy of its version (fetched once per node; see the module doc).

    ``version``: the version the caller expects (the driver reads it once with
    :func:`artifact_version` and hands it to every actor); a directory at ``uri`` that now holds
    another version raises JobError rather than serving a different model than the job
    reported. ``cache``: the cache root (default :func:`cache_root`).
    """
    if not is_uri(uri):
        return Path(uri)
    uri = str(uri).rstrip("/")
    expected = version or artifact_version(uri)
    root = Path(cache) if cache is not None else cache_root()
    name = _cache_name(expected)
    target = root / name
    if (target / METADATA_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{name}.lock"):
        if (target / METADATA_FILE).is_file():  # another actor on this node fetched it
            return target
        for _attempt in range(_FETCH_ATTEMPTS):
            copy = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
            try:
                _download(uri, copy)
                if not (copy / METADATA_FILE).is_file():
                    raise InputError(f"no {METADATA_FILE} in {uri!r}: not an exported student")
                if _copy_matches(copy, expected):
                    record = {"source": uri, "version": expected, "pid": os.getpid()}
                    write_json(str(copy / FETCH_RECORD), record)
                    os.rename(copy, target)
                    return target
            finally:
                if copy.exists():
                    shutil.rmtree(copy, ignore_errors=True)
            if version is not None and artifact_version(uri) != expected:
                break  # replaced by another version: retrying cannot give the expected one
    raise JobError(
        f"the copy of the student at {uri!r} does not hold version {expected!r} (now "
        f"{artifact_version(uri)!r}): it was replaced or is incomplete; run the job again"
    )
