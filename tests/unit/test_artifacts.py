"""labelmill.artifacts: publish, version, fetch once per node into a version-keyed cache.

Hand-built student directories (a fake weights file and a labelmill.json whose model_version is
the taxonomy version plus the first 12 hex of the weights' SHA-256); sources on ``memory://``
(one process) and ``file://`` (shared by the processes of the concurrency test).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import fsspec
import pytest

from labelmill import artifacts
from labelmill.artifacts import (
    FETCH_RECORD,
    artifact_version,
    fetch_model,
    publish_dir,
    remove_dir,
    weights_digest,
)
from labelmill.errors import InputError, JobError


def _student(root: Path, weights: bytes, record_version: bool = True) -> Path:
    """A minimal student dir: model.safetensors (``weights``), tokenizer.json, labelmill.json."""
    root.mkdir(parents=True)
    (root / "model.safetensors").write_bytes(weights)
    (root / "tokenizer.json").write_text("{}", encoding="utf-8")
    meta = {"format_version": 1, "taxonomy": {"names": ["a"], "version": "tax1"}}
    if record_version:
        meta["model_version"] = "tax1-" + hashlib.sha256(weights).hexdigest()[:12]
    (root / "labelmill.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def _memory_uri() -> str:
    return f"memory://artifacts-{uuid.uuid4().hex}/student"


def test_weights_digest_is_the_sha256_of_the_weights(tmp_path: Path) -> None:
    src = _student(tmp_path / "s", b"weights-A")
    assert weights_digest(src) == hashlib.sha256(b"weights-A").hexdigest()
    (src / "model.safetensors").unlink()
    (src / "model-00002.safetensors").write_bytes(b"B")
    (src / "model-00001.safetensors").write_bytes(b"A")  # shards hash in name order
    assert weights_digest(src) == hashlib.sha256(b"AB").hexdigest()
    for shard in src.glob("*.safetensors"):
        shard.unlink()
    with pytest.raises(InputError, match=r"no \.safetensors weights"):
        weights_digest(src)


def test_a_plain_local_path_is_loaded_in_place(tmp_path: Path) -> None:
    src = _student(tmp_path / "s", b"w")
    cache = tmp_path / "cache"
    assert fetch_model(str(src), cache=cache) == src
    assert not cache.exists()  # nothing copied


def test_fetch_copies_a_version_once_and_reuses_it(tmp_path: Path) -> None:
    uri = _memory_uri()
    publish_dir(_student(tmp_path / "s", b"weights-A"), uri)
    version = "tax1-" + hashlib.sha256(b"weights-A").hexdigest()[:12]
    assert artifact_version(uri) == version
    cache = tmp_path / "cache"
    first = fetch_model(uri, cache=cache)
    assert first == cache / version
    assert (first / "model.safetensors").read_bytes() == b"weights-A"
    assert (first / "tokenizer.json").is_file()
    record = json.loads((first / FETCH_RECORD).read_text())
    assert record["source"] == uri and record["version"] == version
    remove_dir(uri)  # the cache entry is used as is: the source is not read again
    assert fetch_model(uri, version=version, cache=cache) == first
    assert sorted(p.name for p in cache.iterdir()) == [f".{version}.lock", version]


def test_a_new_version_at_the_same_uri_is_never_served_from_the_old_entry(tmp_path: Path) -> None:
    uri = _memory_uri()
    cache = tmp_path / "cache"
    publish_dir(_student(tmp_path / "a", b"weights-A"), uri)
    old = fetch_model(uri, cache=cache)
    publish_dir(_student(tmp_path / "b", b"weights-B"), uri)
    new = fetch_model(uri, cache=cache)
    assert new != old
    assert new.name == "tax1-" + hashlib.sha256(b"weights-B").hexdigest()[:12]
    assert (new / "model.safetensors").read_bytes() == b"weights-B"
    assert (old / "model.safetensors").read_bytes() == b"weights-A"


def test_an_export_without_a_recorded_version_is_keyed_by_its_content(tmp_path: Path) -> None:
    uri = _memory_uri()
    publish_dir(_student(tmp_path / "a", b"weights-A", record_version=False), uri)
    first = artifact_version(uri)
    assert first.startswith("legacy-") and len(first) == len("legacy-") + 16
    assert artifact_version(uri) == first  # stable while nothing changes
    fs, path = fsspec.core.url_to_fs(uri)
    fs.pipe_file(f"{path}/model.safetensors", b"weights-B")
    assert artifact_version(uri) != first
    assert fetch_model(uri, cache=tmp_path / "c").name == artifact_version(uri)


def test_fetch_refuses_a_version_other_than_the_expected_one(tmp_path: Path) -> None:
    uri = _memory_uri()
    publish_dir(_student(tmp_path / "a", b"weights-A"), uri)
    expected = artifact_version(uri)
    publish_dir(_student(tmp_path / "b", b"weights-B"), uri)  # replaced after the driver read it
    cache = tmp_path / "cache"
    with pytest.raises(JobError, match=f"does not hold version '{expected}'"):
        fetch_model(uri, version=expected, cache=cache)
    assert [p for p in cache.iterdir() if not p.name.endswith(".lock")] == []  # no partial copy


def test_fetch_refuses_weights_that_do_not_match_the_recorded_version(tmp_path: Path) -> None:
    uri = _memory_uri()
    publish_dir(_student(tmp_path / "a", b"weights-A"), uri)
    fs, path = fsspec.core.url_to_fs(uri)
    fs.pipe_file(f"{path}/model.safetensors", b"half-uploaded")
    with pytest.raises(JobError, match="replaced or is incomplete"):
        fetch_model(uri, cache=tmp_path / "cache")


def test_fetch_of_a_directory_without_metadata_names_it(tmp_path: Path) -> None:
    uri = _memory_uri()
    fs, path = fsspec.core.url_to_fs(uri)
    fs.pipe_file(f"{path}/model.safetensors", b"w")
    with pytest.raises(InputError, match=r"no labelmill\.json in 'memory://.*not an exported"):
        fetch_model(uri, cache=tmp_path / "cache")
    fs.pipe_file(f"{path}/labelmill.json", b"{not json")
    with pytest.raises(InputError, match=r"labelmill\.json is not valid JSON"):
        artifact_version(uri)


def test_publish_replaces_the_directory_and_writes_the_metadata_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = _memory_uri()
    fs, path = fsspec.core.url_to_fs(uri)
    fs.pipe_file(f"{path}/stale.txt", b"old export")
    src = _student(tmp_path / "s", b"w")
    (src / "onnx").mkdir()
    (src / "onnx" / "model.onnx").write_bytes(b"graph")
    order: list[str] = []
    put_file = type(fs).put_file

    def recording_put(self: object, lpath: str, rpath: str, **kwargs: object) -> None:
        order.append(rpath.rsplit("/student/", 1)[1])
        put_file(self, lpath, rpath, **kwargs)

    monkeypatch.setattr(type(fs), "put_file", recording_put)
    publish_dir(src, uri)
    assert order[-1] == "labelmill.json"
    assert sorted(order) == [
        "labelmill.json",
        "model.safetensors",
        "onnx/model.onnx",
        "tokenizer.json",
    ]
    assert not fs.exists(f"{path}/stale.txt")
    remove_dir(uri)
    assert not fs.exists(path)
    remove_dir(uri)  # absent: nothing to do


def _fetch_in_child(uri: str, cache: str) -> tuple[str, int]:
    import os

    return str(artifacts.fetch_model(uri, cache=cache)), os.getpid()


def test_concurrent_fetchers_on_one_node_download_once(tmp_path: Path) -> None:
    src = _student(tmp_path / "s", b"weights-C" * 100_000)
    uri = f"file://{src}"
    cache = tmp_path / "cache"
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        results = list(pool.map(_fetch_in_child, [uri] * 8, [str(cache)] * 8))
    paths = {path for path, _ in results}
    assert paths == {str(cache / artifact_version(uri))}
    record = json.loads((Path(paths.pop()) / FETCH_RECORD).read_text())
    assert record["pid"] in {pid for _, pid in results}  # one of the fetchers copied it
    # one entry, no temporary copies left behind by the ones that waited
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [record["version"]]
