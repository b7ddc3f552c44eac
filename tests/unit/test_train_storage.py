"""Where distill's Ray Train checkpoints go (labelmill.pipelines.train_loop.storage_for)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelmill.pipelines.train_loop import storage_for


def test_s3_storage_gets_an_explicit_filesystem_on_aws_endpoint_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow.fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    storage = storage_for("s3://bucket/run-1/")
    assert storage.uri == "s3://bucket/run-1/student-train"
    assert storage.path == "bucket/run-1/student-train"  # no scheme: the filesystem names it
    assert isinstance(storage.filesystem, pyarrow.fs.S3FileSystem)
    options = storage.filesystem.__reduce__()[1][0]  # the filesystem's constructor arguments
    assert options["endpoint_override"] == "127.0.0.1:9000" and options["scheme"] == "http"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    options = storage_for("s3://bucket/run-1").filesystem.__reduce__()[1][0]
    assert options["endpoint_override"] == "" and options["scheme"] == "https"


def test_other_storages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gcs = storage_for("gs://bucket/run")
    assert (gcs.uri, gcs.path, gcs.filesystem) == (
        "gs://bucket/run/student-train",
        "gs://bucket/run/student-train",
        None,
    )
    monkeypatch.chdir(tmp_path)
    local = storage_for("run")
    assert local.path == local.uri == str(tmp_path.resolve() / "run" / "student-train")
