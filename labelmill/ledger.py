"""A durable, append-only budget ledger for relabeling campaigns (hard token and money caps).

Every request is *reserved* at its estimated upper-bound cost before it is sent, then *settled* at
its actual cost, or *released* if it was never sent. A reservation is granted only if settled spend
plus open reservations plus the new one stays within the total caps and the teacher's caps, so the
caps can be exceeded only by settling above an estimate: callers must reserve upper bounds. Tokens
compare exactly; costs with an absolute tolerance of 1e-9 (ten reservations of 0.1 fit 1.0).

On-disk format, under the directory ``uri`` (any fsspec URI)::

    <uri>/events/<seq:08d>-<kind>-<key-hash>.json   one event per file, seq = 0, 1, 2, ... (no gaps)
    <uri>/lock                                      local only: flock target + last-writer token

``kind`` is reserve, settle or release; ``key-hash`` is the first 16 hex digits of the key's
SHA-256. A file holds one JSON object ``{"seq", "kind", "key", "teacher", "tokens", "cost",
"time"}`` (a settle carries the actual spend). Denied and duplicate reservations write nothing;
their counts in :meth:`BudgetLedger.summary` cover this object only. Local events are written to
``events/.tmp-*``, fsynced, renamed into place and the directory fsynced: a returned call is on
disk and a visible event is whole (object stores put files atomically). On load, names starting
with ``.`` are ignored; an unreadable *last* event is moved to ``events/.corrupt-<name>`` with a
RuntimeWarning and its seq reused; an unreadable event before others, a gap, a duplicate seq or an
impossible transition raises ``ValueError`` rather than guess at spend.

Keys: a key may be reserved again only after a release; reserving an open or settled key returns
False (never paid twice); settling or releasing a key that is not open raises ``ValueError``.
Reopening replays the log; reservations left open by a killed process stay counted until settled,
released or :meth:`BudgetLedger.settle_open_at_estimate` is called.

Concurrency: every call holds a thread lock. For a local path it also holds ``fcntl.flock`` on
``<uri>/lock`` and first replays events other processes appended (each writer stamps a fresh token
into the lock file before writing; an unchanged token means nothing new), so processes sharing a
directory never exceed the caps. Non-local URIs have no lock: exactly one writer (e.g. one Ray
actor) must own the ledger. Caps belong to each ``BudgetLedger`` object and are not stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import numbers
import os
import re
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from labelmill.errors import InputError

EVENT_NAME = "{seq:08d}-{kind}-{key_hash}.json"
_EVENT_RE = re.compile(r"^(\d{8,})-(reserve|settle|release)-([0-9a-f]{16})\.json$")
_COST_EPS = 1e-9


def _check_tokens(value: Any, name: str) -> int:
    """An int >= 0 (numpy integers accepted, bools not) -> a Python int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def _check_cost(value: Any, name: str) -> float:
    """A finite real >= 0 (numpy floats accepted, bools not) -> a Python float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_name(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class Budget:
    """Campaign caps; ``None`` means unlimited. ``per_teacher``: name -> (max_tokens, max_cost)."""

    max_tokens: int | None = None
    max_cost: float | None = None
    per_teacher: dict[str, tuple[int | None, float | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_tokens is not None:
            object.__setattr__(self, "max_tokens", _check_tokens(self.max_tokens, "max_tokens"))
        if self.max_cost is not None:
            object.__setattr__(self, "max_cost", _check_cost(self.max_cost, "max_cost"))
        if not isinstance(self.per_teacher, dict):
            raise ValueError(f"per_teacher must be a dict, got {self.per_teacher!r}")
        caps: dict[str, tuple[int | None, float | None]] = {}
        for teacher, pair in self.per_teacher.items():
            _check_name(teacher, "per_teacher key")
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ValueError(
                    f"per_teacher[{teacher!r}] must be a (max_tokens, max_cost) pair, got {pair!r}"
                )
            tok, cost = pair
            if tok is not None:
                tok = _check_tokens(tok, f"per_teacher[{teacher!r}] max_tokens")
            if cost is not None:
                cost = _check_cost(cost, f"per_teacher[{teacher!r}] max_cost")
            caps[teacher] = (tok, cost)
        object.__setattr__(self, "per_teacher", caps)


def _parse(data: bytes, seq: int, kind: str) -> dict[str, Any] | None:
    """An event file's object, or None when it is unreadable or disagrees with its name."""
    try:
        event = json.loads(data)
        if not isinstance(event, dict) or event.get("seq") != seq or event.get("kind") != kind:
            return None
        _check_name(event.get("key"), "key")
        _check_name(event.get("teacher"), "teacher")
        _check_tokens(event.get("tokens"), "tokens")
        _check_cost(event.get("cost"), "cost")
    except ValueError:  # bad JSON, bad UTF-8, or a bad field
        return None
    return event


def _row(
    caps: tuple[int | None, float | None], usage: tuple[int, float, int, float]
) -> dict[str, Any]:
    """One summary row: caps, spent, reserved and what the caps leave (None when uncapped)."""
    (max_tokens, max_cost), (st, sc, rt, rc) = caps, usage
    return {
        "max_tokens": max_tokens,
        "max_cost": max_cost,
        "spent_tokens": st,
        "spent_cost": sc,
        "reserved_tokens": rt,
        "reserved_cost": rc,
        "remaining_tokens": None if max_tokens is None else max_tokens - st - rt,
        "remaining_cost": None if max_cost is None else max_cost - sc - rc,
    }


class BudgetLedger:
    """Reserve / settle / release spend against a :class:`Budget`, durably (see module doc)."""

    def __init__(self, uri: str, budget: Budget) -> None:
        _check_name(uri, "uri")
        if not isinstance(budget, Budget):
            raise ValueError(f"budget must be a Budget, got {budget!r}")
        self.uri, self.budget = uri, budget
        self._fs, root = fsspec.core.url_to_fs(uri)
        self._local = isinstance(self._fs, LocalFileSystem)
        self._events = root.rstrip("/") + "/events"
        self._lock_path = root.rstrip("/") + "/lock"
        self._fs.makedirs(self._events, exist_ok=True)
        self._lock = threading.Lock()
        self._token: str | None = None  # lock-file token as of our last sync or write
        self._lock_fd = -1  # the flocked lock file while a local call holds the lock
        self._next_seq = 0
        self._open: dict[str, tuple[str, int, float]] = {}  # key -> (teacher, tokens, cost)
        self._settled: set[str] = set()
        self._spent: dict[str, tuple[int, float]] = {}
        self._counts = dict.fromkeys(("granted", "denied", "duplicate", "settled", "released"), 0)
        with self._locked():
            if not self._local:
                self._sync()

    # -- storage ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Thread lock; for local paths also the flock, after catching up on others' events."""
        with self._lock:
            if not self._local:
                yield
                return
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                seen = os.pread(fd, 64, 0).decode("ascii", "replace")
                if seen != self._token:
                    self._sync()
                    self._token = seen
                self._lock_fd = fd
                yield
            finally:
                os.close(fd)  # releases the flock

    def _sync(self) -> None:
        """Replay the events with seq >= the next one we expect (all of them on first load)."""
        try:
            names = [p.rsplit("/", 1)[-1] for p in self._fs.ls(self._events, detail=False)]
        except FileNotFoundError:  # an object store with no events yet
            names = []
        found = sorted(
            (int(m[1]), m[2], name)
            for name in names
            if (m := _EVENT_RE.match(name)) and int(m[1]) >= self._next_seq
        )
        for i, (seq, kind, name) in enumerate(found):
            if seq != self._next_seq:
                raise InputError(
                    f"ledger {self.uri!r} is damaged: expected event seq {self._next_seq}, "
                    f"found {name!r} (a gap, or a second writer)"
                )
            path = f"{self._events}/{name}"
            event = _parse(self._fs.cat_file(path), seq, kind)
            if event is None:
                if i < len(found) - 1:
                    raise InputError(f"ledger {self.uri!r} has a corrupt event {name!r} mid-log")
                self._fs.mv(path, f"{self._events}/.corrupt-{name}")
                msg = f"ledger {self.uri!r}: ignored corrupt last event {name!r}"
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                break
            self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        kind, key, teacher = event["kind"], event["key"], event["teacher"]
        tokens, cost = event["tokens"], float(event["cost"])
        if kind == "reserve":
            if key in self._open or key in self._settled:
                raise InputError(f"ledger {self.uri!r}: event {event['seq']} re-reserves {key!r}")
            self._open[key] = (teacher, tokens, cost)
            self._counts["granted"] += 1
        else:
            if key not in self._open:
                raise InputError(
                    f"ledger {self.uri!r}: event {event['seq']} {kind}s {key!r}, which is not open"
                )
            teacher = self._open.pop(key)[0]  # spend goes to the teacher that reserved
            if kind == "settle":
                tok, spent = self._spent.get(teacher, (0, 0.0))
                self._spent[teacher] = (tok + tokens, spent + cost)
                self._settled.add(key)
            self._counts["settled" if kind == "settle" else "released"] += 1
        self._next_seq += 1

    def _append(self, kind: str, key: str, teacher: str, tokens: int, cost: float) -> None:
        """Write one event durably, then apply it (caller holds the lock)."""
        seq = self._next_seq
        event = {"seq": seq, "kind": kind, "key": key, "teacher": teacher, "tokens": tokens}
        event.update(cost=cost, time=time.time())
        key_hash = hashlib.sha256(key.encode()).hexdigest()[:16]
        path = f"{self._events}/{EVENT_NAME.format(seq=seq, kind=kind, key_hash=key_hash)}"
        data = json.dumps(event, sort_keys=True).encode()
        if not self._local:
            self._fs.pipe_file(path, data)
        else:
            token = uuid.uuid4().hex  # fixed length, overwritten in place: no truncation window
            os.pwrite(self._lock_fd, token.encode(), 0)
            self._token = token
            tmp = f"{self._events}/.tmp-{token}"  # left behind by a crash: ignored on load
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(self._events, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._apply(event)

    # -- accounting ---------------------------------------------------------------------------
    def _usage(self, teacher: str | None) -> tuple[int, float, int, float]:
        """(spent tokens, spent cost, reserved tokens, reserved cost), total or for one teacher."""
        spent = [v for t, v in self._spent.items() if teacher is None or t == teacher]
        held = [v[1:] for v in self._open.values() if teacher is None or v[0] == teacher]
        return (
            sum(v[0] for v in spent),
            math.fsum(v[1] for v in spent),
            sum(v[0] for v in held),
            math.fsum(v[1] for v in held),
        )

    def _fits(self, teacher: str, tokens: int, cost: float) -> bool:
        scopes: list[tuple[str | None, int | None, float | None]] = [
            (None, self.budget.max_tokens, self.budget.max_cost)
        ]
        if teacher in self.budget.per_teacher:
            scopes.append((teacher, *self.budget.per_teacher[teacher]))
        for scope, max_tokens, max_cost in scopes:
            st, sc, rt, rc = self._usage(scope)
            if max_tokens is not None and st + rt + tokens > max_tokens:
                return False
            if max_cost is not None and sc + rc + cost > max_cost + _COST_EPS:
                return False
        return True

    # -- public API ---------------------------------------------------------------------------
    def reserve(self, key: str, teacher: str, tokens: int, cost: float) -> bool:
        """Reserve an upper-bound estimate before sending; False if over a cap or key not new."""
        _check_name(key, "key")
        _check_name(teacher, "teacher")
        tokens, cost = _check_tokens(tokens, "tokens"), _check_cost(cost, "cost")
        with self._locked():
            if key in self._open or key in self._settled:
                self._counts["duplicate"] += 1
                return False
            if not self._fits(teacher, tokens, cost):
                self._counts["denied"] += 1
                return False
            self._append("reserve", key, teacher, tokens, cost)
            return True

    def settle(self, key: str, tokens: int, cost: float) -> None:
        """Record the actual spend of an open reservation (recorded even above the estimate)."""
        _check_name(key, "key")
        tokens, cost = _check_tokens(tokens, "tokens"), _check_cost(cost, "cost")
        with self._locked():
            self._append("settle", key, self._open_teacher(key, "settle"), tokens, cost)

    def release(self, key: str) -> None:
        """Drop an open reservation whose request was never sent (no spend)."""
        _check_name(key, "key")
        with self._locked():
            self._append("release", key, self._open_teacher(key, "release"), 0, 0.0)

    def _open_teacher(self, key: str, verb: str) -> str:
        if key not in self._open:
            state = "it is already settled" if key in self._settled else "it is not reserved"
            raise ValueError(f"cannot {verb} key {key!r}: {state}")
        return self._open[key][0]

    def settle_open_at_estimate(self, keys: Iterable[str] | None = None) -> int:
        """Settle open reservations (all, or those among ``keys``) at their reserved amount.

        Returns how many were settled; keys that are not open are skipped.
        """
        with self._locked():
            wanted = None if keys is None else set(keys)
            pending = [(k, v) for k, v in self._open.items() if wanted is None or k in wanted]
            for key, (teacher, tokens, cost) in pending:
                self._append("settle", key, teacher, tokens, cost)
            return len(pending)

    def spent(self) -> tuple[int, float]:
        """Settled (tokens, cost)."""
        with self._locked():
            return self._usage(None)[:2]

    def reserved(self) -> tuple[int, float]:
        """Open reservations (tokens, cost)."""
        with self._locked():
            return self._usage(None)[2:]

    def spent_by_teacher(self) -> dict[str, tuple[int, float]]:
        """Settled (tokens, cost) per teacher that has settled anything."""
        with self._locked():
            return dict(self._spent)

    def remaining(self) -> tuple[int | None, float | None]:
        """Total caps minus spent minus reserved (None if uncapped; < 0 after settle overruns)."""
        with self._locked():
            row = _row((self.budget.max_tokens, self.budget.max_cost), self._usage(None))
        return row["remaining_tokens"], row["remaining_cost"]

    def is_settled(self, key: str) -> bool:
        """Whether ``key`` has been settled (then it can never be reserved again)."""
        with self._locked():
            return key in self._settled

    def open_keys(self) -> list[str]:
        """Keys reserved and neither settled nor released, in reservation order."""
        with self._locked():
            return list(self._open)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: caps, spend, reservations and remaining in total and per teacher; counts."""
        caps = self.budget.per_teacher
        with self._locked():
            names = sorted({*caps, *self._spent, *(v[0] for v in self._open.values())})
            per_teacher = {t: _row(caps.get(t, (None, None)), self._usage(t)) for t in names}
            total = _row((self.budget.max_tokens, self.budget.max_cost), self._usage(None))
            counts = {**self._counts, "open": len(self._open), "events": self._next_seq}
        return {"uri": self.uri, "total": total, "per_teacher": per_teacher, "counts": counts}
