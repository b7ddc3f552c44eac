"""The online classification endpoint: a FastAPI ingress in front of batched student replicas.

    serve run configs/serve.yaml            # or: labelmill serve ARTIFACT_DIR
    POST /v1/classify  {"texts": [...]} | {"text": "..."}  [+ "threshold", "top_k"]
    GET  /v1/model     taxonomy, versions, thresholds, evaluation metrics
    GET  /healthz

``build_app(args: ServeConfig)`` is the application builder (typed args). Deployments:

- ``Student``: loads the exported artifact once per replica (safetensors, never remote code)
  and scores texts with ``@serve.batch``; a batch counts texts, not requests.
- ``CascadeTeacher`` (only when ``cascade.enabled``): one replica holding the shared
  tokens-per-minute bucket; asks an OpenAI-compatible teacher in `set` mode.
- ``Ingress``: validation, auth, response shaping (labelmill.serving), Prometheus metrics.

A new artifact is rolled out by redeploying with another ``model_dir`` (``serve deploy`` or
``serve.run`` again): the student deployment starts its new replicas before stopping the old
ones (max surge 100%) and old replicas finish their in-flight requests.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import deque
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.serve.metrics import Counter, Histogram

from labelmill.serve_config import (
    AuthConfig,
    BatchingConfig,
    CascadeConfig,
    LimitsConfig,
    ServeConfig,
)
from labelmill.serving import (
    RequestError,
    bearer_ok,
    build_result,
    effective_thresholds,
    merge_teacher_labels,
    parse_classify_request,
    uncertain_mask,
)

api = FastAPI(title="labelmill", description="Multi-label text classification (student model).")

_LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
_BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def _texts_in(items: list[list[str]]) -> int:
    return sum(len(item) for item in items)


@serve.deployment(max_surge_percent=100)
class Student:
    """One replica of the exported student; ``score`` batches texts across requests."""

    def __init__(
        self, model_dir: str, max_length: int, batching: BatchingConfig, threads: int | None
    ):
        import torch

        from labelmill.student.inference import load_student

        if threads is not None:
            torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() and _gpus_assigned() else "cpu"
        self.student = load_student(model_dir, max_length=max_length, device=device)
        self.device = device
        self.forward_batch_size = batching.forward_batch_size
        self.score_batch.set_max_batch_size(batching.max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)
        self.batch_sizes: deque[int] = deque(maxlen=10_000)
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

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_texts_in)
    async def score_batch(self, items: list[list[str]]) -> list[dict[str, Any]]:
        """items: B chunks of texts (sum of lengths <= max_batch_size) -> B score dicts."""
        texts = [text for item in items for text in item]
        self.batch_sizes.append(len(texts))
        self.batch_histogram.observe(len(texts))
        probs, flags = await asyncio.to_thread(self._forward, texts)
        out, start = [], 0
        for item in items:
            end = start + len(item)
            out.append(
                {
                    "probs": probs[start:end].tolist(),
                    "truncated": flags[start:end],
                    "model_version": self.student.model_version,
                    "taxonomy_version": self.student.taxonomy_version,
                    "names": self.student.names,
                    "thresholds": self.student.thresholds.tolist(),
                }
            )
            start = end
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
        }

    def batch_stats(self) -> list[int]:
        """Texts per batch (gathered across requests), most recent last; for tests."""
        return list(self.batch_sizes)


def _gpus_assigned() -> bool:
    import ray

    return bool(ray.get_gpu_ids())


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class CascadeTeacher:
    """Asks the cascade teacher for a label set, within the shared tokens-per-minute budget."""

    def __init__(self, model_dir: str, cascade: CascadeConfig):
        import httpx

        from labelmill.serving import TokenBucket
        from labelmill.student.export import load_student_metadata
        from labelmill.taxonomy import Taxonomy

        if cascade.teacher is None:
            raise ValueError("cascade.teacher is not configured")
        meta = load_student_metadata(model_dir)
        names = meta["taxonomy"]["names"]
        descriptions = meta["taxonomy"].get("descriptions") or names
        self.taxonomy = Taxonomy(tuple(names), tuple(descriptions))
        self.cascade = cascade
        self.teacher = cascade.teacher
        self.bucket = TokenBucket(cascade.tokens_per_minute)
        self.limit = asyncio.Semaphore(cascade.max_concurrency)
        headers = {}
        if self.teacher.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(self.teacher.api_key_env, '')}"
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
        estimate = math.ceil(chars / 3) + self.teacher.max_output_tokens
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


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Ingress:
    """HTTP edge: auth, limits, chunking into student batches, the cascade, metrics."""

    def __init__(
        self,
        student: DeploymentHandle,
        cascade_handle: DeploymentHandle | None,
        limits: LimitsConfig,
        auth: AuthConfig,
        max_batch_size: int,
        cascade: CascadeConfig,
    ):
        self.student = student
        self.cascade_handle = cascade_handle
        self.limits = limits
        self.max_batch_size = max_batch_size
        self.cascade = cascade
        self.api_key: str | None = None
        if auth.api_key_env is not None:
            self.api_key = os.environ.get(auth.api_key_env, "")
            if not self.api_key:
                raise ValueError(
                    f"auth.api_key_env is {auth.api_key_env!r} but that variable is unset or "
                    "empty on this replica; refusing to serve without a key"
                )
        self.requests = Counter(
            "labelmill_requests",
            description="HTTP requests by route and status.",
            tag_keys=("route", "status"),
        )
        self.errors = Counter(
            "labelmill_request_errors",
            description="Requests answered with an error, by error code.",
            tag_keys=("route", "code"),
        )
        self.latency = Histogram(
            "labelmill_request_latency_ms",
            description="Request latency in milliseconds.",
            boundaries=_LATENCY_BOUNDARIES_MS,
            tag_keys=("route",),
        )
        self.texts = Counter("labelmill_texts", description="Texts classified.")
        self.escalations = Counter(
            "labelmill_cascade_texts",
            description="Uncertain texts by cascade outcome.",
            tag_keys=("outcome",),
        )

    def _finish(self, route: str, started: float, response: JSONResponse) -> JSONResponse:
        self.requests.inc(tags={"route": route, "status": str(response.status_code)})
        self.latency.observe((time.perf_counter() - started) * 1000.0, tags={"route": route})
        return response

    def _error(self, route: str, started: float, error: RequestError) -> JSONResponse:
        self.errors.inc(tags={"route": route, "code": error.code})
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return self._finish(
            route, started, JSONResponse(error.body(), status_code=error.status, headers=headers)
        )

    def _check_auth(self, request: Request) -> None:
        if self.api_key is not None and not bearer_ok(
            request.headers.get("authorization"), self.api_key
        ):
            raise RequestError(401, "unauthorized", "missing or wrong bearer token")

    async def _read_body(self, request: Request) -> bytes:
        limit = self.limits.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, "body_too_large", f"body of {declared} bytes > {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, "body_too_large", f"body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @api.post("/v1/classify")
    async def classify(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            self._check_auth(request)
            raw = await self._read_body(request)
            parsed = parse_classify_request(raw, self.limits.max_texts_per_request)
        except RequestError as error:
            return self._error("classify", started, error)
        texts = parsed.texts
        chunks = [
            texts[i : i + self.max_batch_size] for i in range(0, len(texts), self.max_batch_size)
        ]
        scored = await asyncio.gather(*(self.student.score.remote(c) for c in chunks))
        probs = np.asarray([p for part in scored for p in part["probs"]], dtype=np.float64)
        truncated = [flag for part in scored for flag in part["truncated"]]
        versions = [part["model_version"] for part in scored]
        names = list(scored[0]["names"])
        thresholds = effective_thresholds(np.asarray(scored[0]["thresholds"]), parsed.threshold)
        results = [
            build_result(probs[i], names, thresholds, parsed.top_k, truncated[i])
            for i in range(len(texts))
        ]
        if len(set(versions)) > 1:  # the request straddled a redeploy
            per_text = [v for part, v in zip(scored, versions, strict=True) for _ in part["probs"]]
            for result, version in zip(results, per_text, strict=True):
                result["model_version"] = version
        if self.cascade.enabled and self.cascade_handle is not None:
            await self._apply_cascade(texts, probs, results, names, parsed.top_k)
        self.texts.inc(len(texts))
        body = {
            "model_version": versions[0],
            "taxonomy_version": scored[0]["taxonomy_version"],
            "results": results,
        }
        return self._finish("classify", started, JSONResponse(body))

    async def _apply_cascade(
        self,
        texts: list[str],
        probs: np.ndarray,
        results: list[dict[str, Any]],
        names: list[str],
        top_k: int | None,
    ) -> None:
        mask = uncertain_mask(probs, self.cascade.band)
        pending = [i for i in range(len(texts)) if mask[i].any()]
        for i in range(len(texts)):
            if i not in pending:
                results[i]["cascade"] = {"escalated": False, "reason": "certain"}
        answers = await asyncio.gather(
            *(self.cascade_handle.decide.remote(texts[i]) for i in pending)
        )
        teacher = self.cascade.teacher.name if self.cascade.teacher else None
        for i, answer in zip(pending, answers, strict=True):
            uncertain = [names[k] for k in np.flatnonzero(mask[i])]
            self.escalations.inc(tags={"outcome": answer["status"]})
            if answer["status"] != "ok":
                reason = "budget" if answer["status"] == "budget" else "teacher_error"
                results[i]["cascade"] = {
                    "escalated": False,
                    "reason": reason,
                    "uncertain": uncertain,
                    "error": answer["error"],
                }
                continue
            merged = merge_teacher_labels(results[i]["labels"], uncertain, answer["labels"], names)
            if top_k is not None:
                merged = merged[:top_k]
            results[i]["labels"] = merged
            results[i]["cascade"] = {
                "escalated": True,
                "teacher": teacher,
                "uncertain": uncertain,
                "labels_from_teacher": [n for n in merged if n in set(uncertain)],
            }

    @api.get("/v1/model")
    async def model(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            self._check_auth(request)
        except RequestError as error:
            return self._error("model", started, error)
        info = await self.student.info.remote()
        info["cascade"] = {
            "enabled": self.cascade.enabled,
            "band": list(self.cascade.band),
            "teacher": self.cascade.teacher.name if self.cascade.teacher else None,
        }
        info["limits"] = self.limits.model_dump()
        return self._finish("model", started, JSONResponse(info))

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        started = time.perf_counter()
        try:
            info = await asyncio.wait_for(self.student.info.remote(), timeout=5.0)
        except (TimeoutError, RuntimeError) as error:
            body = {"status": "unavailable", "error": f"{type(error).__name__}: {error}"}
            return self._finish("healthz", started, JSONResponse(body, status_code=503))
        body = {"status": "ok", "model_version": info["model_version"]}
        return self._finish("healthz", started, JSONResponse(body))


def build_app(args: ServeConfig) -> Any:
    """The Serve application for ``args`` (typed: Serve validates a config file's args)."""
    if isinstance(args, dict):
        args = ServeConfig.model_validate(args)
    replicas = args.replicas
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": replicas.num_cpus, "num_gpus": replicas.num_gpus},
        "max_ongoing_requests": args.batching.max_ongoing_requests,
    }
    if replicas.autoscaling is not None:
        options["autoscaling_config"] = replicas.autoscaling
    else:
        options["num_replicas"] = replicas.num_replicas
    threads = replicas.torch_threads or max(1, math.ceil(replicas.num_cpus))
    student = Student.options(**options).bind(
        args.model_dir, args.max_length, args.batching, threads
    )
    cascade_handle = (
        CascadeTeacher.bind(args.model_dir, args.cascade) if args.cascade.enabled else None
    )
    return Ingress.options(num_replicas=replicas.ingress_replicas).bind(
        student,
        cascade_handle,
        args.limits,
        args.auth,
        args.batching.max_batch_size,
        args.cascade,
    )
