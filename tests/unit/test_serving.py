"""The endpoint's pure logic: request validation, label selection, cascade rule, auth, budget."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from labelmill.config import ConfigError
from labelmill.pipelines.cli import main
from labelmill.serve_config import load_serve_config, parse_serve_config
from labelmill.serving import (
    RequestError,
    TokenBucket,
    bearer_ok,
    build_result,
    effective_thresholds,
    json_depth,
    merge_teacher_labels,
    parse_classify_request,
    select_labels,
    uncertain_mask,
)

NAMES = ["a", "b", "c", "d"]


def parse(body: object, max_texts: int = 3):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_classify_request(raw, max_texts)


def test_parse_texts_and_single_text() -> None:
    many = parse({"texts": ["x", "y"], "threshold": 0.25, "top_k": 2})
    assert (many.texts, many.threshold, many.top_k) == (["x", "y"], 0.25, 2)
    one = parse({"text": "hello"})
    assert (one.texts, one.threshold, one.top_k) == (["hello"], None, None)
    assert parse({"text": "z", "threshold": 1}).threshold == 1.0


@pytest.mark.parametrize(
    ("body", "status", "code", "match"),
    [
        (b"", 400, "empty_body", "empty"),
        (b"  \n", 400, "empty_body", "empty"),
        (b"{not json", 400, "invalid_json", "not valid JSON"),
        (b"\xff\xfe", 400, "invalid_json", "not valid JSON"),
        ([1, 2], 422, "invalid_request", "JSON object, got list"),
        ({}, 422, "invalid_request", "exactly one of"),
        ({"text": "a", "texts": ["b"]}, 422, "invalid_request", "exactly one of"),
        ({"texts": "abc"}, 422, "invalid_request", "must be a list, got str"),
        ({"texts": []}, 422, "invalid_request", "'texts' is empty"),
        ({"texts": ["a", "b", "c", "d"]}, 422, "too_many_texts", "4 texts .* at most 3"),
        ({"texts": ["a", 5]}, 422, "invalid_request", r"texts\[1\] must be a string, got int"),
        ({"text": None}, 422, "invalid_request", "text must be a string, got NoneType"),
        ({"texts": ["a", " \t"]}, 422, "empty_text", r"texts\[1\] is empty"),
        ({"text": ""}, 422, "empty_text", "text is empty"),
        ({"text": "a", "threshold": "high"}, 422, "invalid_request", "number, got 'high'"),
        ({"text": "a", "threshold": True}, 422, "invalid_request", "number, got True"),
        ({"text": "a", "threshold": 1.5}, 422, "invalid_request", r"\[0, 1\], got 1.5"),
        ({"text": "a", "top_k": 0}, 422, "invalid_request", "int >= 1, got 0"),
        ({"text": "a", "top_k": 1.5}, 422, "invalid_request", "int >= 1, got 1.5"),
        ({"text": "a", "extra": 1}, 422, "invalid_request", r"unknown fields \['extra'\]"),
    ],
)
def test_parse_rejects_bad_input(body: object, status: int, code: str, match: str) -> None:
    with pytest.raises(RequestError, match=match) as caught:
        parse(body)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.body() == {"error": {"code": code, "message": str(caught.value)}}


@pytest.mark.parametrize(
    ("raw", "status", "code", "match"),
    [
        (b"[" * 100_000, 400, "too_deep", "nests 100000 levels deep; at most 8"),
        (b'{"texts": [[[[[[[["x"]]]]]]]]}', 400, "too_deep", "nests 9 levels"),
        (b'{"text": "\\ud800"}', 422, "invalid_text", "text holds a lone surrogate U\\+D800"),
        (
            b'{"texts": ["ok", "a\\udfffb"]}',
            422,
            "invalid_text",
            r"texts\[1\] .* U\+DFFF at character 1",
        ),
        (b'{"text": "a", "top_k": ' + b"1" * 5000 + b"}", 400, "invalid_json", "4300 digits"),
        (b'{"text": "a", "threshold": 1e999}', 422, "invalid_request", "number, got inf"),
        (b'{"text": {"nested": "x"}}', 422, "invalid_request", "must be a string, got dict"),
    ],
)
def test_parse_rejects_what_used_to_crash(raw: bytes, status: int, code: str, match: str) -> None:
    with pytest.raises(RequestError, match=match) as caught:
        parse_classify_request(raw, 3)
    assert (caught.value.status, caught.value.code) == (status, code)


def test_parse_keeps_valid_unicode_as_is() -> None:
    # a surrogate pair is one valid code point; NUL and other controls pass to the tokenizer
    parsed = parse_classify_request(b'{"texts": ["\\ud83c\\udfb5 music", "a\\u0000b"]}', 3)
    assert parsed.texts == ["\U0001f3b5 music", "a\x00b"]


def test_json_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(b"") == 0
    assert json_depth(b'{"texts": ["a", "b"]}') == 2
    assert json_depth(b'{"text": "[[[{{{ \\" ]]] [[["}') == 1  # brackets inside a string
    assert json_depth(b'[[], [[]], {"a": [{}]}]') == 4
    assert json_depth(b'"\\\\" [[') == 2  # an escaped backslash ends the string


def test_parse_rejects_nan_threshold() -> None:
    with pytest.raises(RequestError, match="number, got nan"):
        parse_classify_request(b'{"text": "a", "threshold": NaN}', 3)


def test_select_labels_orders_by_score_and_caps() -> None:
    scores = np.array([0.6, 0.9, 0.2, 0.55])
    thresholds = np.array([0.5, 0.5, 0.1, 0.6])
    # a 0.6>=0.5, b 0.9>=0.5, c 0.2>=0.1, d 0.55<0.6 -> by score: b, a, c
    assert select_labels(scores, NAMES, thresholds, None) == ["b", "a", "c"]
    assert select_labels(scores, NAMES, thresholds, 2) == ["b", "a"]
    assert select_labels(scores, NAMES, thresholds, 10) == ["b", "a", "c"]
    assert select_labels(scores, NAMES, np.ones(4), None) == []


def test_effective_thresholds_and_result() -> None:
    tuned = np.array([0.5, 0.5, 0.1, 0.6])
    assert effective_thresholds(tuned, None).tolist() == tuned.tolist()
    assert effective_thresholds(tuned, 0.58).tolist() == [0.58] * 4
    result = build_result(
        np.array([0.6, 0.9, 0.2, 0.55]), NAMES, effective_thresholds(tuned, 0.58), None, True
    )
    assert result == {
        "labels": ["b", "a"],
        "scores": {"a": 0.6, "b": 0.9, "c": 0.2, "d": 0.55},
        "truncated": True,
        "cascade": None,
    }


def test_uncertain_mask_is_a_closed_band() -> None:
    scores = np.array([[0.29, 0.3, 0.5, 0.7], [0.71, 0.0, 1.0, 0.31]])
    assert uncertain_mask(scores, (0.3, 0.7)).tolist() == [
        [False, True, True, True],
        [False, False, False, True],
    ]


def test_merge_teacher_labels() -> None:
    # student: a (certain), b (uncertain); teacher decides b (drops it) and d (adds it)
    assert merge_teacher_labels(["a", "b"], ["b", "d"], ["d", "c"], NAMES) == ["a", "d"]
    # teacher labels outside the uncertain set are ignored (c); certain labels stay
    assert merge_teacher_labels(["c"], ["a"], ["a", "c"], NAMES) == ["c", "a"]
    assert merge_teacher_labels([], [], ["a"], NAMES) == []


def test_bearer_ok() -> None:
    assert bearer_ok("Bearer s3cret", "s3cret")
    assert bearer_ok("bearer  s3cret ", "s3cret")
    assert not bearer_ok("Bearer wrong", "s3cret")
    assert not bearer_ok("Basic s3cret", "s3cret")
    assert not bearer_ok(None, "s3cret")
    assert not bearer_ok("Bearer ", "")  # an empty expected key never matches


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_reserve_settle_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, clock=clock)  # 10 tokens per second
    assert bucket.reserve(500)
    assert bucket.available == pytest.approx(100)
    assert not bucket.reserve(101)  # never overdrawn by a reservation
    assert bucket.available == pytest.approx(100)
    bucket.settle(500, 200)  # used less than estimated: 300 back
    assert bucket.available == pytest.approx(400)
    bucket.settle(0, 450)  # used more than reserved: debt
    assert bucket.available == pytest.approx(-50)
    assert not bucket.reserve(1)
    clock.now += 6.0  # +60 tokens
    assert bucket.available == pytest.approx(10)
    clock.now += 3600.0
    assert bucket.available == pytest.approx(600)  # capped at one minute's worth


def test_token_bucket_concurrent_reservations_never_exceed_capacity() -> None:
    bucket = TokenBucket(1000, clock=lambda: 0.0)
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            ok = bucket.reserve(7)
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 1000 // 7  # 142 reservations of 7 fit, no more
    assert bucket.available == pytest.approx(1000 - 7 * 142)


def test_token_bucket_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="tokens_per_minute must be >= 1, got 0"):
        TokenBucket(0)
    bucket = TokenBucket(10)
    with pytest.raises(ValueError, match="negative token count, got -1"):
        bucket.reserve(-1)
    with pytest.raises(ValueError, match=r"must be >= 0, got 1, -2"):
        bucket.settle(1, -2)


TEACHER = {"name": "big", "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}


def test_serve_config_defaults_and_cascade_checks() -> None:
    config = parse_serve_config({"model_dir": "m"})
    assert config.batching.max_batch_size == 32
    assert (config.queue.max_ongoing_per_replica, config.queue.max_queued_per_ingress) == (4, 4)
    assert config.runtime == "auto" and config.limits.max_json_depth == 8
    assert config.cascade.enabled is False
    assert config.auth.api_key_env is None
    on = parse_serve_config({"model_dir": "m", "cascade": {"enabled": True, "teacher": TEACHER}})
    assert on.cascade.teacher is not None and on.cascade.teacher.name == "big"
    with pytest.raises(ConfigError, match=r"cascade\.enabled needs cascade\.teacher"):
        parse_serve_config({"model_dir": "m", "cascade": {"enabled": True}})
    with pytest.raises(ConfigError, match="kind 'openai' in mode 'set', got kind 'openai' mode"):
        parse_serve_config(
            {
                "model_dir": "m",
                "cascade": {"enabled": True, "teacher": {**TEACHER, "mode": "score"}},
            }
        )
    with pytest.raises(ConfigError, match=r"low < high .* got \(0.8, 0.2\)"):
        parse_serve_config({"model_dir": "m", "cascade": {"band": [0.8, 0.2]}})
    with pytest.raises(ConfigError, match=r"batching\.max_batch_size"):
        parse_serve_config({"model_dir": "m", "batching": {"max_batch_size": 0}})
    with pytest.raises(ConfigError, match=r"queue\.max_queued_per_ingress"):
        parse_serve_config({"model_dir": "m", "queue": {"max_queued_per_ingress": 0}})
    with pytest.raises(ConfigError, match=r"runtime"):
        parse_serve_config({"model_dir": "m", "runtime": "onnx"})
    with pytest.raises(ConfigError, match=r"limits\.max_texts"):
        parse_serve_config({"model_dir": "m", "limits": {"max_texts": 3}})
    with pytest.raises(
        ConfigError, match="serve args must be a mapping at the top level, got list"
    ):
        parse_serve_config([])  # type: ignore[arg-type]


def test_load_serve_config_from_args_file_and_serve_file(tmp_path) -> None:
    args = tmp_path / "args.yaml"
    args.write_text("model_dir: old\nbatching: {max_batch_size: 8}\n", encoding="utf-8")
    config = load_serve_config(args, "new", ["limits.max_texts_per_request=5"])
    assert (config.model_dir, config.batching.max_batch_size) == ("new", 8)
    assert config.limits.max_texts_per_request == 5
    serve_file = tmp_path / "serve.yaml"
    serve_file.write_text(
        "applications:\n  - name: x\n    import_path: labelmill.serve.app:build_app\n"
        "    args: {model_dir: from-file, replicas: {num_replicas: 2}}\n",
        encoding="utf-8",
    )
    config = load_serve_config(serve_file)
    assert (config.model_dir, config.replicas.num_replicas) == ("from-file", 2)
    assert load_serve_config(None, "only-dir").model_dir == "only-dir"
    with pytest.raises(ConfigError, match="does not exist"):
        load_serve_config(tmp_path / "missing.yaml", "x")
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="applications must be a list"):
        load_serve_config(bad)
    bad.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping at the top level, got list"):
        load_serve_config(bad)


def test_cli_serve_fails_early_on_a_missing_artifact(tmp_path, capsys) -> None:
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "no labelmill.json in" in capsys.readouterr().err


def test_cli_serve_refuses_auth_without_key(tmp_path, capsys, monkeypatch) -> None:
    meta = {
        "format_version": 1,
        "taxonomy": {"names": ["a"], "version": "v"},
        "thresholds": [0.5],
        "lineage": {},
        "metrics": {},
    }
    (tmp_path / "labelmill.json").write_text(json.dumps(meta), encoding="utf-8")
    monkeypatch.delenv("LABELMILL_UNSET_KEY", raising=False)
    code = main(["serve", str(tmp_path), "--set", "auth.api_key_env=LABELMILL_UNSET_KEY"])
    assert code == 2
    assert "'LABELMILL_UNSET_KEY' but that variable is unset or empty" in capsys.readouterr().err


def test_bundled_serve_config_validates() -> None:
    from pathlib import Path

    config = load_serve_config(Path(__file__).resolve().parents[2] / "configs" / "serve.yaml")
    assert config.model_dir == "out/demo/student"
    assert config.cascade.enabled is False and config.cascade.teacher is not None


def test_rayservice_probes_point_at_the_endpoint_health_routes() -> None:
    import yaml

    from labelmill.serve_config import parse_serve_config as parse

    path = Path(__file__).resolve().parents[2] / "cluster" / "rayservice-labelmill.yaml"
    service = yaml.safe_load(path.read_text(encoding="utf-8"))
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    app = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]
    args = parse(app["args"])
    port = yaml.safe_load(service["spec"]["serveConfigV2"])["http_options"]["port"]
    for pod in pods:
        container = pod["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        readiness = container["readinessProbe"]
        assert readiness["httpGet"] == {"path": "/readyz", "port": port}
        # the probe waits longer than the replica ping it triggers may take
        assert readiness["timeoutSeconds"] > args.queue.readiness_timeout_s
    # autoscaling adds replicas before a replica's slots are all taken (then requests shed)
    target = args.replicas.autoscaling["target_ongoing_requests"]
    assert target < args.queue.max_ongoing_per_replica
