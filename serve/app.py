"""The online classification endpoint: a FastAPI ingress in front of batched student replicas.

    serve run configs/serve.yaml            # or: labelmill serve ARTIFACT_DIR
    POST /v1/classify  {"texts": [...]} | {"text": "..."}  [+ "threshold", "top_k"]
    GET  /v1/model     taxonomy, versions, thresholds, evaluation metrics
    GET  /healthz      liveness: the ingress answers by itself, never waits behind inference
    GET  /readyz       readiness: a student replica answered a ping (503 when none can)

``build_app(args: ServeConfig)`` is the application builder (typed args). Deployments:
``Ingress`` (here: validation, auth, response shaping with labelmill.serving, Prometheus
metrics), ``Student`` and, when ``cascade.enabled``, ``CascadeTeacher`` (serve/deployments.py).

Load is shed, not queued without bound: the student deployment's calls are bounded per replica
(``queue.max_ongoing_per_replica``) and per caller (``queue.max_queued_per_ingress``); past them
Serve raises ``BackPressureError`` here at once and the client gets 503 with ``Retry-After``.
No error answer is a 500: bad input is a 4xx, a shed or failed backend a 503.

A new artifact is rolled out by redeploying with another ``model_dir`` (``serve deploy`` or
``serve.run`` again): the student deployment starts its new replicas before stopping the old
ones (max surge 100%) and old replicas finish their in-flight requests. ``model_dir`` may be any
fsspec URI (``s3://bucket/run/student``): ``build_app`` pins the version it finds there and each
node fetches that version once into its cache (labelmill.artifacts). ``serve deploy`` or
``serve.run`` again after a new export at the same URI rebuilds the app, so the new version's
replicas replace the old; until then a replica starting on a node without a copy of the pinned
version refuses the changed directory rather than serve another model than /v1/model reports.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from ray.serve.metrics import Counter, Histogram

from labelmill.artifacts import artifact_version, is_uri
from labelmill.errors import ConfigError
from labelmill.serve.deployments import CascadeTeacher, Student
from labelmill.serve_config import (
    AuthConfig,
    CascadeConfig,
    LimitsConfig,
    QueueConfig,
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

logger = logging.getLogger("ray.serve")

api = FastAPI(title="labelmill", description="Multi-label text classification (student model).")

_LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]


def _shed(error: BaseException) -> bool:
    """Whether ``error`` is Serve's backpressure (raised here, or wrapped by a remote call)."""
    return isinstance(error, BackPressureError) or isinstance(
        getattr(error, "cause", None), BackPressureError
    )


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
        queue: QueueConfig | None = None,
    ):
        self.student = student
        self.queue = queue or QueueConfig()
        self.cascade_handle = cascade_handle
        self.limits = limits
        self.max_batch_size = max_batch_size
        self.cascade = cascade
        self.api_key: str | None = None
        if auth.api_key_env is not None:
            self.api_key = os.environ.get(auth.api_key_env, "")
            if not self.api_key:
                raise ConfigError(
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
        if error.status == 503:
            headers = {"Retry-After": str(self.queue.retry_after_s)}
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
            parsed = parse_classify_request(
                raw, self.limits.max_texts_per_request, self.limits.max_json_depth
            )
            body = await self._classify(parsed)
        except RequestError as error:
            return self._error("classify", started, error)
        except Exception as error:  # a bug or a dead backend: a retryable 503, never a 500
            logger.exception("classify failed")
            unavailable = RequestError(503, "unavailable", f"{type(error).__name__}: {error}")
            return self._error("classify", started, unavailable)
        return self._finish("classify", started, JSONResponse(body))

    async def _score(self, texts: list[str]) -> list[dict[str, Any]]:
        """Score ``texts`` in chunks of max_batch_size; shed or failed chunks raise RequestError."""
        size = self.max_batch_size
        chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
        scored = await asyncio.gather(
            *(self.student.score.remote(c) for c in chunks), return_exceptions=True
        )
        for error in scored:
            if isinstance(error, BaseException):
                if _shed(error):
                    raise RequestError(
                        503,
                        "overloaded",
                        "every student replica is busy and the queue is full; retry after "
                        f"{self.queue.retry_after_s} s",
                    )
                raise error
        for offset, part in zip(range(0, len(texts), size), scored, strict=True):
            if "error" in part:
                index = part["error"]["index"]
                where = "a text" if index is None else f"texts[{offset + index}]"
                raise RequestError(
                    422,
                    "unscorable_text",
                    f"{where} could not be scored: {part['error']['message']}",
                )
        return scored

    async def _classify(self, parsed: Any) -> dict[str, Any]:
        texts = parsed.texts
        scored = await self._score(texts)
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
        return {
            "model_version": versions[0],
            "taxonomy_version": scored[0]["taxonomy_version"],
            "results": results,
        }

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
            *(self.cascade_handle.decide.remote(texts[i]) for i in pending),
            return_exceptions=True,
        )
        teacher = self.cascade.teacher.name if self.cascade.teacher else None
        for i, answer in zip(pending, answers, strict=True):
            if isinstance(answer, BaseException):  # the cascade replica failed: student answer
                answer = {"status": "error", "error": f"{type(answer).__name__}: {answer}"}
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
        """Liveness: this ingress replica's event loop answers; nothing waits on a model."""
        started = time.perf_counter()
        return self._finish("healthz", started, JSONResponse({"status": "alive"}))

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """Readiness: a student replica took a ping within ``queue.readiness_timeout_s``.

        503 ``saturated`` (with Retry-After) when every replica slot and the queue are full,
        503 ``unavailable`` when no replica answers (starting, or dead).
        """
        started = time.perf_counter()
        headers = {"Retry-After": str(self.queue.retry_after_s)}
        try:
            info = await asyncio.wait_for(
                self.student.ready.remote(), timeout=self.queue.readiness_timeout_s
            )
        except Exception as error:
            status = "saturated" if _shed(error) else "unavailable"
            body = {"status": status, "error": f"{type(error).__name__}: {error}"}
            response = JSONResponse(body, status_code=503, headers=headers)
            return self._finish("readyz", started, response)
        body = {"status": "ready", **info}
        return self._finish("readyz", started, JSONResponse(body))


def build_app(args: ServeConfig) -> Any:
    """The Serve application for ``args`` (typed: Serve validates a config file's args)."""
    if isinstance(args, dict):
        args = ServeConfig.model_validate(args)
    replicas = args.replicas
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": replicas.num_cpus, "num_gpus": replicas.num_gpus},
        "max_ongoing_requests": args.queue.max_ongoing_per_replica,
        "max_queued_requests": args.queue.max_queued_per_ingress,
    }
    if replicas.autoscaling is not None:
        options["autoscaling_config"] = replicas.autoscaling
    else:
        options["num_replicas"] = replicas.num_replicas
    threads = replicas.torch_threads or max(1, math.ceil(replicas.num_cpus))
    version = artifact_version(args.model_dir) if is_uri(args.model_dir) else None
    student = Student.options(**options).bind(
        args.model_dir, args.max_length, args.batching, threads, args.runtime, version
    )
    # The cascade replica is async and bounds its own teacher calls (cascade.max_concurrency):
    # a low Serve cap would queue cheap budget refusals behind slow teacher answers.
    cascade_handle = (
        CascadeTeacher.options(max_ongoing_requests=args.queue.ingress_max_ongoing_requests).bind(
            args.model_dir, args.cascade
        )
        if args.cascade.enabled
        else None
    )
    ingress = Ingress.options(
        num_replicas=replicas.ingress_replicas,
        max_ongoing_requests=args.queue.ingress_max_ongoing_requests,
    )
    return ingress.bind(
        student,
        cascade_handle,
        args.limits,
        args.auth,
        args.batching.max_batch_size,
        args.cascade,
        args.queue,
    )
