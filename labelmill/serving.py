"""The endpoint's pure logic: request validation, per-text results, the cascade rule, auth.

Used by the Ray Serve app in ``serve/app.py``; nothing here imports Ray, FastAPI or torch.

Request (``POST /v1/classify``)::

    {"texts": ["...", ...]} | {"text": "..."}, optional "threshold": float in [0, 1],
    optional "top_k": int >= 1

Response::

    {"model_version", "taxonomy_version", "results": [{"labels": [...], "scores": {name: p},
     "truncated": bool, "cascade": null | {...}}, ...]}   # one result per text, in order

``labels`` are the names whose score reaches its threshold (the artifact's per-label tuned
thresholds, or the request's ``threshold`` for every label), highest score first, at most
``top_k``. Bad input raises :class:`RequestError`, which carries the HTTP status.

What cannot hurt the server: the body's nesting depth is measured on the raw bytes before it
is parsed (a deeply nested array would exhaust the parser's recursion), numbers Python cannot
hold (over 4,300 digits) are a 400, and every text must be valid Unicode: a lone surrogate
(``"\\ud800"``, only expressible as a JSON escape) is a 422 ``invalid_text`` naming the text,
never passed to a tokenizer. Every other code point is passed through unchanged.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labelmill.documents import check_text

_REQUEST_KEYS = {"text", "texts", "threshold", "top_k"}
_ESCAPED = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))


class RequestError(ValueError):
    """Bad client input: ``status`` (4xx) and a short machine-readable ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True)
class ClassifyRequest:
    """A validated classify request."""

    texts: list[str]
    threshold: float | None
    top_k: int | None


def json_depth(raw: bytes) -> int:
    """Deepest nesting of arrays/objects in a JSON text, counted without parsing it.

    Escapes are dropped, then string contents, then everything but brackets; the depth is the
    running maximum of +1 per opening and -1 per closing bracket (linear, no recursion). On
    malformed JSON it may over-count, never under-count.
    """
    bare = _STRING.sub(b"", _ESCAPED.sub(b"", raw)).translate(None, _NOT_BRACKET)
    if not bare:
        return 0
    codes = np.frombuffer(bare, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def check_request_text(name: str, text: object) -> None:
    """Raise the 422 naming ``name`` when ``text`` is not usable (the rule of
    :func:`labelmill.documents.check_text`): ``invalid_request`` for a non-string,
    ``invalid_text`` for invalid Unicode, ``empty_text`` for empty or whitespace-only text."""
    checked = check_text(text if isinstance(text, str) else None)
    if not isinstance(text, str):
        raise RequestError(
            422, "invalid_request", f"{name} must be a string, got {type(text).__name__}"
        )
    if checked.kind == "invalid_unicode":
        detail = checked.error.split("(", 1)[-1].rstrip(")")
        raise RequestError(
            422, "invalid_text", f"{name} holds a {detail}: texts must be valid Unicode"
        )
    if checked.kind == "empty":
        raise RequestError(422, "empty_text", f"{name} is empty")


def parse_classify_request(raw: bytes, max_texts: int, max_depth: int = 8) -> ClassifyRequest:
    """Validate a raw request body. Raises RequestError (400 / 422) naming what was wrong."""
    if not raw or not raw.strip():
        raise RequestError(400, "empty_body", "request body is empty; send a JSON object")
    depth = json_depth(raw)
    if depth > max_depth:
        raise RequestError(
            400, "too_deep", f"request body nests {depth} levels deep; at most {max_depth}"
        )
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(
            400, "invalid_json", f"request body is not valid JSON: {error}"
        ) from None
    except (ValueError, RecursionError) as error:  # e.g. an integer over 4,300 digits
        raise RequestError(
            400, "invalid_json", f"request body cannot be read: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(body, dict):
        raise RequestError(
            422, "invalid_request", f"request body must be a JSON object, got {type(body).__name__}"
        )
    unknown = sorted(set(body) - _REQUEST_KEYS)
    if unknown:
        raise RequestError(
            422, "invalid_request", f"unknown fields {unknown}; allowed: {sorted(_REQUEST_KEYS)}"
        )
    if ("text" in body) == ("texts" in body):
        raise RequestError(422, "invalid_request", "send exactly one of 'text' or 'texts'")
    if "text" in body:
        texts = [body["text"]]
        where = ["text"]
    else:
        texts = body["texts"]
        if not isinstance(texts, list):
            raise RequestError(
                422, "invalid_request", f"'texts' must be a list, got {type(texts).__name__}"
            )
        if not texts:
            raise RequestError(422, "invalid_request", "'texts' is empty")
        if len(texts) > max_texts:
            raise RequestError(
                422,
                "too_many_texts",
                f"{len(texts)} texts in one request; at most {max_texts} are allowed",
            )
        where = [f"texts[{i}]" for i in range(len(texts))]
    for name, text in zip(where, texts, strict=True):
        check_request_text(name, text)
    return ClassifyRequest(
        texts=texts,
        threshold=_check_threshold(body.get("threshold")),
        top_k=_check_top_k(body.get("top_k")),
    )


def _check_threshold(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(422, "invalid_request", f"'threshold' must be a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise RequestError(422, "invalid_request", f"'threshold' must lie in [0, 1], got {value!r}")
    return float(value)


def _check_top_k(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(422, "invalid_request", f"'top_k' must be an int >= 1, got {value!r}")
    return value


def select_labels(
    scores: np.ndarray, names: Sequence[str], thresholds: np.ndarray, top_k: int | None
) -> list[str]:
    """Names whose score reaches its threshold, highest score first, at most ``top_k``.

    scores: (K,), thresholds: (K,) -> list of at most min(K, top_k) names.
    """
    hits = np.flatnonzero(scores >= thresholds)
    ordered = hits[np.argsort(-scores[hits], kind="stable")]
    if top_k is not None:
        ordered = ordered[:top_k]
    return [names[k] for k in ordered]


def effective_thresholds(tuned: np.ndarray, threshold: float | None) -> np.ndarray:
    """The artifact's per-label thresholds (K,), or ``threshold`` for every label."""
    tuned = np.asarray(tuned, dtype=np.float64)
    return tuned if threshold is None else np.full_like(tuned, threshold)


def uncertain_mask(scores: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Labels whose score lies in the closed band [low, high]. scores: (N, K) -> (N, K) bool."""
    low, high = band
    scores = np.asarray(scores, dtype=np.float64)
    return (scores >= low) & (scores <= high)


def merge_teacher_labels(
    student_labels: Sequence[str],
    uncertain: Sequence[str],
    teacher_labels: Sequence[str],
    names: Sequence[str],
) -> list[str]:
    """The teacher decides the uncertain labels; the student keeps the rest.

    A label is in the result when it is uncertain and the teacher chose it, or certain and the
    student chose it. Order: the student's certain labels first (their order), then the
    teacher's, in taxonomy order.
    """
    uncertain_set = set(uncertain)
    kept = [name for name in student_labels if name not in uncertain_set]
    chosen = set(teacher_labels) & uncertain_set
    return kept + [name for name in names if name in chosen and name not in kept]


def build_result(
    scores: np.ndarray,
    names: Sequence[str],
    thresholds: np.ndarray,
    top_k: int | None,
    truncated: bool,
) -> dict[str, Any]:
    """The response entry of one text. scores: (K,), thresholds: (K,)."""
    return {
        "labels": select_labels(scores, names, thresholds, top_k),
        "scores": {name: round(float(p), 6) for name, p in zip(names, scores, strict=True)},
        "truncated": bool(truncated),
        "cascade": None,
    }


def bearer_ok(header: str | None, expected: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <expected>`` (constant-time)."""
    if not header or not expected:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8"), expected.encode("utf-8"))


class TokenBucket:
    """A tokens-per-minute budget: reserve an estimate before a request, settle after.

    The bucket holds at most ``tokens_per_minute`` tokens and refills continuously at that
    rate. :meth:`reserve` takes ``n`` tokens only when that many are available (never
    overdrawing on a reservation); :meth:`settle` returns ``reserved - actual`` (negative when
    the request cost more than estimated, which later refills pay back). Thread-safe.
    """

    def __init__(self, tokens_per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(tokens_per_minute, bool) or tokens_per_minute < 1:
            raise ValueError(f"tokens_per_minute must be >= 1, got {tokens_per_minute!r}")
        self.capacity = float(tokens_per_minute)
        self.rate = self.capacity / 60.0
        self._clock = clock
        self._level = self.capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    @property
    def available(self) -> float:
        """Tokens that could be reserved now."""
        with self._lock:
            self._refill()
            return self._level

    def reserve(self, n: int) -> bool:
        """Take ``n`` tokens if available; False (nothing taken) otherwise."""
        if n < 0:
            raise ValueError(f"cannot reserve a negative token count, got {n!r}")
        with self._lock:
            self._refill()
            if n > self._level:
                return False
            self._level -= n
            return True

    def settle(self, reserved: int, actual: int) -> None:
        """Correct a reservation by what the request actually used."""
        if reserved < 0 or actual < 0:
            raise ValueError(f"token counts must be >= 0, got {reserved!r}, {actual!r}")
        with self._lock:
            self._refill()
            self._level = min(self.capacity, self._level + reserved - actual)
