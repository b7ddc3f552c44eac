"""The budget ledger: cap arithmetic, key errors, threads, processes, resume and damaged logs."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest

from labelmill.ledger import EVENT_NAME, Budget, BudgetLedger


def _event_path(root: Path, seq: int, kind: str, key: str) -> Path:
    key_hash = hashlib.sha256(key.encode()).hexdigest()[:16]
    return root / "events" / EVENT_NAME.format(seq=seq, kind=kind, key_hash=key_hash)


def _write_event(root: Path, seq: int, kind: str, key: str, tokens: int = 1, cost: float = 0.1):
    event = {"seq": seq, "kind": kind, "key": key, "teacher": "t", "tokens": tokens, "cost": cost}
    _event_path(root, seq, kind, key).write_text(json.dumps(event))


def _state(ledger: BudgetLedger) -> tuple:
    return (
        ledger.spent(),
        ledger.reserved(),
        ledger.spent_by_teacher(),
        ledger.open_keys(),
        ledger.remaining(),
    )


def _process_worker(uri: str, worker: int, barrier: Any, results: Any) -> None:
    """Runs in a spawned process: its own ledger on the shared directory, 50 attempts."""
    ledger = BudgetLedger(uri, Budget(max_tokens=10_000, max_cost=3.0))
    barrier.wait(timeout=60)  # all four open their ledger, then race
    granted = 0
    for j in range(50):
        key = f"p{worker}-{j}"
        if ledger.reserve(key, "t", 10, 0.05):
            granted += 1
            if j % 2:
                ledger.settle(key, 10, 0.05)
    results.put(granted)


# -- Budget ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_tokens": -1}, r"max_tokens must be an int >= 0, got -1"),
        ({"max_tokens": 1.5}, r"max_tokens must be an int >= 0, got 1\.5"),
        ({"max_tokens": True}, r"max_tokens must be an int >= 0, got True"),
        ({"max_cost": -0.5}, r"max_cost must be a finite number >= 0, got -0\.5"),
        ({"max_cost": float("nan")}, r"max_cost must be a finite number >= 0, got nan"),
        ({"max_cost": float("inf")}, r"max_cost must be a finite number >= 0, got inf"),
        ({"max_cost": "1"}, r"max_cost must be a finite number >= 0, got '1'"),
        ({"per_teacher": [("a", (1, 1.0))]}, r"per_teacher must be a dict, got \["),
        ({"per_teacher": {"": (1, 1.0)}}, r"per_teacher key must be a non-empty string, got ''"),
        ({"per_teacher": {3: (1, 1.0)}}, r"per_teacher key must be a non-empty string, got 3"),
        ({"per_teacher": {"a": 5}}, r"per_teacher\['a'\] must be a \(max_tokens, max_cost\).*5"),
        ({"per_teacher": {"a": (1,)}}, r"per_teacher\['a'\] must be a .* pair, got \(1,\)"),
        ({"per_teacher": {"a": (-2, None)}}, r"per_teacher\['a'\] max_tokens .* got -2"),
        ({"per_teacher": {"a": (None, -1.0)}}, r"per_teacher\['a'\] max_cost .* got -1\.0"),
    ],
)
def test_budget_rejects_bad_caps(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Budget(**kwargs)


def test_budget_defaults_are_unlimited_and_values_normalised() -> None:
    assert Budget() == Budget(max_tokens=None, max_cost=None, per_teacher={})
    budget = Budget(max_tokens=np.int64(7), max_cost=2, per_teacher={"a": [5, np.float32(0.5)]})
    assert (budget.max_tokens, budget.max_cost) == (7, 2.0)
    assert type(budget.max_tokens) is int and type(budget.max_cost) is float
    assert budget.per_teacher == {"a": (5, 0.5)}


def test_numpy_numbers_are_accepted_and_stored_as_python(tmp_path: Path) -> None:
    led = BudgetLedger(str(tmp_path), Budget(max_tokens=100))
    assert led.reserve("k", "t", np.int64(10), np.float32(0.5))
    led.settle("k", np.int32(8), np.float64(0.25))
    assert led.spent() == (8, 0.25) and type(led.spent()[0]) is int
    assert BudgetLedger(str(tmp_path), Budget()).spent() == (8, 0.25)


# -- arithmetic ------------------------------------------------------------------------------


def test_reserve_settle_release_arithmetic(tmp_path: Path) -> None:
    budget = Budget(
        max_tokens=1000, max_cost=1.0, per_teacher={"a": (300, None), "b": (None, 0.25)}
    )
    led = BudgetLedger(str(tmp_path), budget)
    assert led.reserve("k1", "a", 200, 0.1)
    assert led.reserved() == (200, pytest.approx(0.1))
    assert not led.reserve("k2", "a", 200, 0.1)  # teacher a: 400 > 300 tokens
    assert led.reserve("k2", "a", 100, 0.1)  # exactly a's cap
    assert led.reserve("k3", "b", 10, 0.2)
    assert not led.reserve("k4", "b", 10, 0.06)  # teacher b: 0.26 > 0.25
    assert led.reserve("k4", "b", 10, 0.05)  # exactly b's cap
    assert led.reserve("k5", "c", 50, 0.3)  # no teacher caps for c
    assert led.remaining() == (630, pytest.approx(0.25))

    led.settle("k1", 150, 0.08)  # cheaper than reserved
    led.release("k2")  # never sent
    assert led.spent() == (150, pytest.approx(0.08))
    assert led.reserved() == (70, pytest.approx(0.55))
    assert led.remaining() == (780, pytest.approx(0.37))
    assert led.spent_by_teacher() == {"a": (150, pytest.approx(0.08))}
    assert led.open_keys() == ["k3", "k4", "k5"]
    assert led.is_settled("k1") and not led.is_settled("k2") and not led.is_settled("k3")
    assert led.reserve("k2", "a", 150, 0.1)  # released keys may be retried; a: 150 + 150 = 300

    summary = led.summary()
    json.dumps(summary)
    assert summary["counts"] == {
        "granted": 6,
        "denied": 2,
        "duplicate": 0,
        "settled": 1,
        "released": 1,
        "open": 4,
        "events": 8,
    }
    total = summary["total"]
    assert (total["max_tokens"], total["max_cost"]) == (1000, 1.0)
    assert (total["spent_tokens"], total["reserved_tokens"], total["remaining_tokens"]) == (
        150,
        220,
        630,
    )
    assert total["reserved_cost"] == pytest.approx(0.65)
    assert total["remaining_cost"] == pytest.approx(0.27)
    assert set(summary["per_teacher"]) == {"a", "b", "c"}
    a = summary["per_teacher"]["a"]
    assert (a["max_tokens"], a["spent_tokens"], a["reserved_tokens"], a["remaining_tokens"]) == (
        300,
        150,
        150,
        0,
    )
    assert a["max_cost"] is None and a["remaining_cost"] is None
    assert summary["per_teacher"]["b"]["remaining_cost"] == pytest.approx(0.0)


def test_total_caps_exact_boundary(tmp_path: Path) -> None:
    led = BudgetLedger(str(tmp_path / "tok"), Budget(max_tokens=100))
    assert led.reserve("a", "t", 60, 0.0)
    assert not led.reserve("b", "t", 41, 0.0)
    assert led.reserve("b", "t", 40, 0.0)  # exactly at the cap
    assert not led.reserve("c", "t", 1, 0.0)
    assert led.remaining() == (0, None)

    led = BudgetLedger(str(tmp_path / "cost"), Budget(max_cost=1.0))
    granted = [led.reserve(f"k{i}", "t", 1, 0.1) for i in range(11)]
    assert granted == [True] * 10 + [False]  # ten 0.1s fit 1.0 within the epsilon
    assert led.remaining() == (None, pytest.approx(0.0, abs=1e-12))


def test_uncapped_ledger_grants_everything(tmp_path: Path) -> None:
    led = BudgetLedger(str(tmp_path), Budget())
    assert led.reserve("k", "t", 10**12, 1e9)
    assert led.remaining() == (None, None)


def test_settle_above_estimate_is_recorded(tmp_path: Path) -> None:
    led = BudgetLedger(str(tmp_path), Budget(max_tokens=100, max_cost=1.0))
    assert led.reserve("k", "t", 100, 1.0)
    led.settle("k", 120, 1.5)
    assert led.spent() == (120, 1.5)
    assert led.remaining() == (-20, pytest.approx(-0.5))
    assert not led.reserve("k2", "t", 0, 0.0)  # already over: nothing more fits


# -- key errors and input validation ---------------------------------------------------------


def test_key_lifecycle_errors(tmp_path: Path) -> None:
    led = BudgetLedger(str(tmp_path), Budget())
    assert led.reserve("k", "t", 1, 0.1)
    assert not led.reserve("k", "t", 1, 0.1)  # already open
    with pytest.raises(ValueError, match=r"cannot settle key 'nope': it is not reserved"):
        led.settle("nope", 1, 0.1)
    with pytest.raises(ValueError, match=r"cannot release key 'nope': it is not reserved"):
        led.release("nope")
    led.settle("k", 1, 0.1)
    assert not led.reserve("k", "t", 1, 0.1)  # settled: never paid twice
    with pytest.raises(ValueError, match=r"cannot settle key 'k': it is already settled"):
        led.settle("k", 1, 0.1)
    with pytest.raises(ValueError, match=r"cannot release key 'k': it is already settled"):
        led.release("k")
    assert led.reserve("r", "t", 1, 0.1)
    led.release("r")
    with pytest.raises(ValueError, match=r"cannot settle key 'r': it is not reserved"):
        led.settle("r", 1, 0.1)
    counts = led.summary()["counts"]
    assert (counts["duplicate"], counts["settled"], counts["released"]) == (2, 1, 1)
    assert led.spent() == (1, 0.1)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("", "t", 1, 0.1), r"key must be a non-empty string, got ''"),
        ((5, "t", 1, 0.1), r"key must be a non-empty string, got 5"),
        (("k", "", 1, 0.1), r"teacher must be a non-empty string, got ''"),
        (("k", "t", -1, 0.1), r"tokens must be an int >= 0, got -1"),
        (("k", "t", 1.0, 0.1), r"tokens must be an int >= 0, got 1\.0"),
        (("k", "t", 1, -0.1), r"cost must be a finite number >= 0, got -0\.1"),
        (("k", "t", 1, float("nan")), r"cost must be a finite number >= 0, got nan"),
        (("k", "t", 1, None), r"cost must be a finite number >= 0, got None"),
    ],
)
def test_reserve_rejects_bad_input(tmp_path: Path, args: tuple, match: str) -> None:
    led = BudgetLedger(str(tmp_path), Budget())
    with pytest.raises(ValueError, match=match):
        led.reserve(*args)
    assert led.summary()["counts"]["events"] == 0


def test_settle_release_and_constructor_reject_bad_input(tmp_path: Path) -> None:
    led = BudgetLedger(str(tmp_path), Budget())
    assert led.reserve("k", "t", 1, 0.1)
    with pytest.raises(ValueError, match=r"tokens must be an int >= 0, got -3"):
        led.settle("k", -3, 0.1)
    with pytest.raises(ValueError, match=r"cost must be a finite number >= 0, got inf"):
        led.settle("k", 1, float("inf"))
    with pytest.raises(ValueError, match=r"key must be a non-empty string, got ''"):
        led.settle("", 1, 0.1)
    with pytest.raises(ValueError, match=r"key must be a non-empty string, got None"):
        led.release(None)  # type: ignore[arg-type]
    assert led.open_keys() == ["k"]
    with pytest.raises(ValueError, match=r"uri must be a non-empty string, got ''"):
        BudgetLedger("", Budget())
    with pytest.raises(ValueError, match=r"budget must be a Budget, got \{'max_cost': 1\}"):
        BudgetLedger(str(tmp_path), {"max_cost": 1})  # type: ignore[arg-type]


# -- concurrency -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "tokens", "cost", "expected"),
    [(Budget(max_cost=1.0), 1, 0.1, 10), (Budget(max_tokens=100), 7, 0.0, 14)],
)
def test_threads_never_exceed_cap(
    tmp_path: Path, budget: Budget, tokens: int, cost: float, expected: int
) -> None:
    led = BudgetLedger(str(tmp_path), budget)
    barrier = threading.Barrier(16)
    results: list[bool] = []

    def work(i: int) -> None:
        barrier.wait()
        for j in range(5):
            results.append(led.reserve(f"t{i}-{j}", "t", tokens, cost))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and sum(results) == expected
    assert led.reserved() == (expected * tokens, pytest.approx(expected * cost))
    assert BudgetLedger(str(tmp_path), budget).reserved() == led.reserved()


def test_two_ledgers_in_one_process_share_the_cap(tmp_path: Path) -> None:
    budget = Budget(max_cost=1.0)
    a, b = BudgetLedger(str(tmp_path), budget), BudgetLedger(str(tmp_path), budget)
    assert a.reserve("x", "t", 1, 0.6)
    assert not b.reserve("y", "t", 1, 0.6)  # b sees a's reservation before deciding
    assert not b.reserve("x", "t", 1, 0.1)  # and its key
    b.settle("x", 1, 0.5)  # settle a key another instance reserved
    assert a.spent() == (1, 0.5) and a.is_settled("x")
    assert a.reserve("y", "t", 1, 0.5)
    assert b.reserved() == (1, 0.5)


def test_processes_never_exceed_cap(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(str(tmp_path), w, barrier, results))
        for w in range(4)
    ]
    for p in procs:
        p.start()
    granted = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert sum(granted) == 60  # floor(3.0 / 0.05)
    led = BudgetLedger(str(tmp_path), Budget(max_tokens=10_000, max_cost=3.0))
    spent, reserved = led.spent(), led.reserved()
    assert spent[0] + reserved[0] == 600
    assert spent[1] + reserved[1] == pytest.approx(3.0)
    assert spent[1] + reserved[1] <= 3.0 + 1e-9
    assert led.summary()["counts"]["granted"] == 60
    assert len(list((tmp_path / "events").glob("*.json"))) == 60 + spent[0] // 10


# -- durability and resume -------------------------------------------------------------------


def test_resume_replays_log_and_settles_open_at_estimate(tmp_path: Path) -> None:
    budget = Budget(max_tokens=1000, max_cost=10.0, per_teacher={"u": (50, None)})
    led = BudgetLedger(str(tmp_path), budget)
    for i in range(3):
        assert led.reserve(f"k{i}", "t", 10, 0.5)
    led.settle("k0", 8, 0.4)
    led.settle("k1", 12, 0.7)
    assert led.reserve("k3", "u", 20, 1.0)
    assert led.reserve("k4", "u", 20, 1.0)
    led.release("k4")
    before, counts = _state(led), led.summary()["counts"]
    del led  # "killed": nothing to close

    led = BudgetLedger(str(tmp_path), budget)
    assert _state(led) == before and led.summary()["counts"] == counts
    assert led.open_keys() == ["k2", "k3"]
    assert not led.reserve("k0", "t", 1, 0.1)  # settled before the restart
    assert not led.reserve("k5", "u", 31, 0.1)  # u's open 20 tokens still count
    assert led.settle_open_at_estimate() == 2
    assert led.settle_open_at_estimate() == 0
    assert led.spent() == (50, pytest.approx(2.6))
    assert led.reserved() == (0, 0.0)

    again = BudgetLedger(str(tmp_path), budget)
    assert _state(again) == _state(led)
    assert all(again.is_settled(k) for k in ("k0", "k1", "k2", "k3"))
    assert again.spent_by_teacher() == {"t": (30, pytest.approx(1.6)), "u": (20, 1.0)}


def test_event_files_are_one_json_object_each(tmp_path: Path) -> None:
    led = BudgetLedger(str(tmp_path), Budget())
    assert led.reserve("doc-1/teacher-a", "a", 5, 0.25)
    led.settle("doc-1/teacher-a", 4, 0.2)
    (tmp_path / "events" / ".tmp-leftover").write_bytes(b'{"seq": 2')  # a crashed write
    names = sorted(p.name for p in (tmp_path / "events").glob("*.json"))
    assert names == [
        _event_path(tmp_path, 0, "reserve", "doc-1/teacher-a").name,
        _event_path(tmp_path, 1, "settle", "doc-1/teacher-a").name,
    ]
    event = json.loads((tmp_path / "events" / names[1]).read_text())
    assert {k: event[k] for k in ("seq", "kind", "key", "teacher", "tokens", "cost")} == {
        "seq": 1,
        "kind": "settle",
        "key": "doc-1/teacher-a",
        "teacher": "a",
        "tokens": 4,
        "cost": 0.2,
    }
    assert BudgetLedger(str(tmp_path), Budget()).spent() == (4, 0.2)


@pytest.mark.parametrize(
    "content",
    [
        b'{"seq": 3, "kind": "sett',  # truncated
        b"",  # empty
        b'{"seq": 9, "kind": "settle", "key": "k1", "teacher": "t", "tokens": 1, "cost": 0.1}',
        b'{"seq": 3, "kind": "settle", "key": "k1", "teacher": "t", "tokens": -1, "cost": 0.1}',
        b"\xff\xfe",  # not UTF-8
    ],
)
def test_corrupt_last_event_is_ignored(tmp_path: Path, content: bytes) -> None:
    budget = Budget(max_cost=1.0)
    led = BudgetLedger(str(tmp_path), budget)
    assert led.reserve("k0", "t", 1, 0.1) and led.reserve("k1", "t", 1, 0.2)
    led.settle("k0", 1, 0.1)
    before = _state(led)
    bad = _event_path(tmp_path, 3, "settle", "k1")
    bad.write_bytes(content)

    with pytest.warns(RuntimeWarning, match="corrupt last event"):
        led = BudgetLedger(str(tmp_path), budget)
    assert _state(led) == before
    assert not bad.exists() and (bad.parent / f".corrupt-{bad.name}").exists()
    led.settle("k1", 1, 0.15)  # reuses seq 3
    assert bad.exists()
    assert BudgetLedger(str(tmp_path), budget).spent() == (2, pytest.approx(0.25))


def test_damaged_logs_raise(tmp_path: Path) -> None:
    def fresh(name: str) -> Path:
        root = tmp_path / name
        (root / "events").mkdir(parents=True)
        _write_event(root, 0, "reserve", "k0")
        return root

    root = fresh("mid")
    _event_path(root, 1, "settle", "k0").write_bytes(b"{oops")
    _write_event(root, 2, "reserve", "k1")
    with pytest.raises(ValueError, match=r"corrupt event '00000001-settle-.*' mid-log"):
        BudgetLedger(str(root), Budget())

    root = fresh("gap")
    _write_event(root, 2, "reserve", "k1")
    with pytest.raises(ValueError, match=r"expected event seq 1, found '00000002-reserve-"):
        BudgetLedger(str(root), Budget())

    root = fresh("dup")
    _write_event(root, 0, "reserve", "k1")
    with pytest.raises(ValueError, match=r"expected event seq 1, found '00000000-reserve-"):
        BudgetLedger(str(root), Budget())

    root = fresh("settle-unknown")
    _write_event(root, 1, "settle", "ghost")
    with pytest.raises(ValueError, match=r"event 1 settles 'ghost', which is not open"):
        BudgetLedger(str(root), Budget())

    root = fresh("re-reserve")
    _write_event(root, 1, "reserve", "k0")
    with pytest.raises(ValueError, match=r"event 1 re-reserves 'k0'"):
        BudgetLedger(str(root), Budget())


def test_non_local_uri_single_writer() -> None:
    uri = f"memory://ledger-{uuid.uuid4().hex}"
    try:
        led = BudgetLedger(uri, Budget(max_cost=1.0))
        assert led.reserve("a", "t", 3, 0.6) and not led.reserve("b", "t", 3, 0.6)
        led.settle("a", 2, 0.5)
        assert led.reserve("b", "t", 3, 0.4)
        again = BudgetLedger(uri, Budget(max_cost=1.0))
        assert _state(again) == _state(led)
        assert again.open_keys() == ["b"]
    finally:
        fs, path = fsspec.core.url_to_fs(uri)
        fs.rm(path, recursive=True)


def test_ledger_module_is_pure() -> None:
    code = (
        "import sys, labelmill.ledger\n"
        "bad = [m for m in ('ray', 'torch', 'transformers', 'vllm') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_settle_open_at_estimate_for_some_keys(tmp_path) -> None:
    ledger = BudgetLedger(str(tmp_path / "l"), Budget(max_tokens=100))
    assert ledger.reserve("a", "t", 10, 0.0)
    assert ledger.reserve("b", "t", 20, 0.0)
    assert ledger.settle_open_at_estimate(["b", "zzz"]) == 1  # unknown keys are skipped
    assert ledger.open_keys() == ["a"]
    assert ledger.spent() == (20, 0.0) and ledger.reserved() == (10, 0.0)
