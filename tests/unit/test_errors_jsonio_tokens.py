"""The error hierarchy, the one JSON helper and the one token estimator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labelmill.errors import ConfigError, InputError, JobError, LabelmillError, with_context
from labelmill.jsonio import read_json, write_json
from labelmill.tokens import estimate_tokens, estimate_tokens_array


def test_hierarchy_and_exit_codes() -> None:
    assert [ConfigError.exit_code, InputError.exit_code, JobError.exit_code] == [2, 2, 1]
    assert issubclass(ConfigError, ValueError) and issubclass(InputError, ValueError)
    assert issubclass(JobError, RuntimeError)
    assert all(issubclass(k, LabelmillError) for k in (ConfigError, InputError, JobError))


def test_with_context_keeps_the_kind() -> None:
    wrapped = with_context(InputError("corpus.uri 'x' does not exist"), "stage 'label' failed")
    assert type(wrapped) is InputError
    assert str(wrapped) == "stage 'label' failed: corpus.uri 'x' does not exist"
    assert type(with_context(JobError("boom"), "ctx")) is JobError


def test_json_round_trip_with_numpy(tmp_path: Path) -> None:
    uri = str(tmp_path / "deep" / "dir" / "summary.json")
    write_json(uri, {"f1": np.float32(0.5), "counts": np.array([1, 2]), "name": "é"})
    assert read_json(uri) == {"f1": 0.5, "counts": [1, 2], "name": "é"}
    text = Path(uri).read_text(encoding="utf-8")
    assert text.endswith("\n") and "é" in text and json.loads(text)["counts"] == [1, 2]
    assert [p.name for p in Path(uri).parent.iterdir()] == ["summary.json"]  # no temp left


def test_read_json_absent_and_invalid(tmp_path: Path) -> None:
    assert read_json(str(tmp_path / "nope.json")) is None
    assert read_json(str(tmp_path / "nope.json"), default={}) == {}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        read_json(str(bad))


def test_json_on_memory_filesystem() -> None:
    write_json("memory://labelmill-test/a/b.json", [1, 2, 3])
    assert read_json("memory://labelmill-test/a/b.json") == [1, 2, 3]


def test_token_estimate_is_ceil_of_chars_over_3() -> None:
    assert [estimate_tokens(c) for c in (0, 1, 2, 3, 4, 300, 301)] == [0, 1, 1, 1, 2, 100, 101]
    assert estimate_tokens_array(np.array([0, 3, 4, 7])).tolist() == [0, 1, 2, 3]
