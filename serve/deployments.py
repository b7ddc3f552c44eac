"""The model-side deployments of the endpoint: batched student replicas and the cascade teacher.

- ``Student``: loads the exported artifact once per replica (safetensors, never remote code;
  on CPU through the fast path its labelmill.json records) and scores texts with
  ``@serve.batch``; a batch counts texts (``batch_size_fn``), gathered across requests, and
  runs in length-sorted forward passes of ``forward_batch_size``. When a batch fails, each
  request in it is scored alone: an error fails only the request whose text caused it.
- ``CascadeTeacher``: one replica holding the shared tokens-per-minute bucket; asks an
  OpenAI-compatible teacher in `set` mode for the labels the student is unsure of.

The HTTP side (validation, auth, response, metrics) is ``serve/app.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Any

import numpy as np
from ray import serve
from ray.serve.metrics import Histogram

from labelmill.errors import ConfigError
from labelmill.serve_config import BatchingConfig, CascadeConfig
from labelmill.tokens import estimate_tokens

_BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def _texts_in(items: list[list[str]]) -> int:
    return sum(len(item) for item in items)


@serve.deployment(max_surge_percent=100)
class Student:
    """One replica of the exported student; ``score`` batches texts across requests."""

    def __init__(
        self,
        model_dir: str,
        max_length: int,
        batching: BatchingConfig,
        threads: int | None,
        runtime: str = "auto",
        version: str | None = None,
    ):
        import torch

        from labelmill.artifacts import fetch_model
        from labelmill.student.inference import load_student

        if threads is not None:
            torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() and _gpus_assigned() else "cpu"
        # A URI: this node's cached copy of the version the app was built with (one fetch per
        # node; a replica restarted after the URI got a new export refuses it, see build_app).
        local = fetch_model(model_dir, version)
        self.student = load_student(local, max_length=max_length, device=device, runtime=runtime)
        self.device = device
        self.forward_batch_size = batching.forward_batch_size
        self.score_batch.set_max_batch_size(batching.max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)
        self.batch_sizes: deque[int] = deque(maxlen=10_000)
        self.batches: deque[dict[str, int]] = deque(maxlen=10_000)
        self.batch_histogram = Histogram(
            "labelmill_batch_size",
            description="Texts per student batch (gathered across requests).",
            boundaries=_BATCH_BOUNDARIES,
        )

    def _forward(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        from labelmill.student.inference import predict_sorted, truncation_flags

        probs = predict_sorted(self.student, texts, batch_size=self.forward_batch_size)
        flags = truncation_flags(self.student.tokenizer, texts, self.student.max_length)
        return probs, flags

    def _answer(self, probs: np.ndarray, flags: list[bool]) -> dict[str, Any]:
        return {
            "probs": probs.tolist(),
            "truncated": flags,
            "model_version": self.student.model_version,
            "taxonomy_version": self.student.taxonomy_version,
            "names": self.student.names,
            "thresholds": self.student.thresholds.tolist(),
        }

    def _alone(self, texts: list[str]) -> dict[str, Any]:
        """One request's texts scored on their own; an error names the first failing text."""
        try:
            return self._answer(*self._forward(texts))
        except Exception as error:
            for index, text in enumerate(texts):  # name the failing text in the answer
                try:
                    self._forward([text])
                except Exception as single:
                    message = f"{type(single).__name__}: {single}"
                    return {"error": {"index": index, "message": message}}
            return {"error": {"index": None, "message": f"{type(error).__name__}: {error}"}}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_texts_in)
    async def score_batch(self, items: list[list[str]]) -> list[dict[str, Any]]:
        """items: B chunks of texts (sum of lengths <= max_batch_size) -> B score dicts.

        One forward over every chunk's texts; if it raises, each chunk is scored alone, so a
        text that breaks the model fails its own request and never a batch neighbour's (the
        answer is then ``{"error": {"index", "message"}}``).
        """
        texts = [text for item in items for text in item]
        self.batch_sizes.append(len(texts))
        self.batch_histogram.observe(len(texts))
        try:
            probs, flags = await asyncio.to_thread(self._forward, texts)
        except Exception:
            out = [await asyncio.to_thread(self._alone, list(item)) for item in items]
        else:
            out, start = [], 0
            for item in items:
                end = start + len(item)
                out.append(self._answer(probs[start:end], flags[start:end]))
                start = end
        failed = sum(1 for answer in out if "error" in answer)
        self.batches.append({"texts": len(texts), "requests": len(items), "failed": failed})
        return out

    async def score(self, texts: list[str]) -> dict[str, Any]:
        """texts: n <= max_batch_size -> {"probs": (n, K), "truncated": n, versions}."""
        return await self.score_batch(texts)

    def info(self) -> dict[str, Any]:
        """What GET /v1/model shows."""
        meta = self.student.metadata
        return {
            "taxonomy": {
                "version": self.student.taxonomy_version,
                "names": self.student.names,
                "descriptions": meta["taxonomy"].get("descriptions"),
            },
            "model_version": self.student.model_version,
            "thresholds": self.student.thresholds.tolist(),
            "max_length": self.student.max_length,
            "metrics": meta.get("metrics", {}),
            "lineage": meta.get("lineage", {}),
            "device": self.device,
            "runtime": self.student.runtime,
        }

    def ready(self) -> dict[str, str]:
        """The readiness ping: answered at once by a replica that has a free slot."""
        return {"model_version": self.student.model_version, "runtime": self.student.runtime}

    def batch_stats(self) -> list[int]:
        """Texts per batch (gathered across requests), most recent last; for tests."""
        return list(self.batch_sizes)

    def batch_log(self) -> list[dict[str, int]]:
        """Per batch: texts, requests (chunks) and failed requests, most recent last."""
        return list(self.batches)


def _gpus_assigned() -> bool:
    import ray

    return bool(ray.get_gpu_ids())


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class CascadeTeacher:
    """Asks the cascade teacher for a label set, within the shared tokens-per-minute budget."""

    def __init__(self, model_dir: str, cascade: CascadeConfig):
        import httpx

        from labelmill.requests import http_auth_headers
        from labelmill.serving import TokenBucket
        from labelmill.student.export import load_student_metadata
        from labelmill.taxonomy import Taxonomy

        if cascade.teacher is None:
            raise ConfigError("cascade.teacher is not configured")
        meta = load_student_metadata(model_dir)
        names = meta["taxonomy"]["names"]
        descriptions = meta["taxonomy"].get("descriptions") or names
        self.taxonomy = Taxonomy(tuple(names), tuple(descriptions))
        self.cascade = cascade
        self.teacher = cascade.teacher
        self.bucket = TokenBucket(cascade.tokens_per_minute)
        self.limit = asyncio.Semaphore(cascade.max_concurrency)
        headers = http_auth_headers(self.teacher.name, self.teacher.api_key_env, os.environ)
        self.client = httpx.AsyncClient(
            base_url=str(self.teacher.base_url).rstrip("/"),
            headers=headers,
            timeout=cascade.timeout_s,
        )
        self.tokens_used = 0

    async def decide(self, text: str) -> dict[str, Any]:
        """-> {"status": "ok" | "budget" | "error", "labels": [...], "error": str | None}."""
        import httpx

        from labelmill.parsing import parse_label_set
        from labelmill.prompts import build_set_messages
        from labelmill.requests import chat_request_body

        messages = build_set_messages(
            text[: self.cascade.max_document_chars], self.taxonomy, self.teacher.prompt
        )
        body = chat_request_body(self.teacher, self.taxonomy, messages)
        chars = sum(len(m["content"]) for m in messages)
        estimate = estimate_tokens(chars) + self.teacher.max_output_tokens
        if not self.bucket.reserve(estimate):
            return {"status": "budget", "labels": [], "error": None}
        used = estimate
        try:
            async with self.limit:
                response = await self.client.post("/chat/completions", json=body)
            response.raise_for_status()
            payload = response.json()
            usage = payload.get("usage") or {}
            if usage:
                used = int(usage.get("prompt_tokens") or 0) + int(
                    usage.get("completion_tokens") or 0
                )
            choice = payload["choices"][0]
            parsed = parse_label_set(
                (choice.get("message") or {}).get("content"),
                self.taxonomy,
                choice.get("finish_reason"),
            )
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as error:
            # the teacher failed or answered nonsense: this text keeps the student's labels
            return {"status": "error", "labels": [], "error": f"{type(error).__name__}: {error}"}
        finally:
            self.bucket.settle(estimate, used)
            self.tokens_used += used
        if parsed.error:
            return {"status": "error", "labels": [], "error": parsed.error}
        return {"status": "ok", "labels": parsed.labels, "error": None}

    def usage(self) -> dict[str, float]:
        """Tokens spent so far and tokens available now."""
        return {"tokens_used": self.tokens_used, "available": self.bucket.available}
