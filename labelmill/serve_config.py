"""The validated configuration of the online classification endpoint (`labelmill serve`).

:class:`ServeConfig` is the typed ``args`` of the Ray Serve application builder
``labelmill.serve.app:build_app``: the same tree comes from a Serve config file
(``applications[].args``), from ``labelmill serve ARTIFACT_DIR [--config FILE]
[--set key=value]``, or from Python. Unknown keys are errors, as in :mod:`labelmill.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from labelmill.config import (
    ConfigError,
    StrictModel,
    TeacherConfig,
    read_yaml,
    validate_tree,
)


class BatchingConfig(StrictModel):
    """Dynamic batching of texts inside each student replica (``@serve.batch``)."""

    max_batch_size: int = Field(
        default=32, ge=1, le=4096, description="Most texts gathered into one batch of a replica."
    )
    batch_wait_timeout_s: float = Field(
        default=0.01,
        ge=0.0,
        le=10.0,
        description="How long a replica waits for more texts before running a partial batch.",
    )
    forward_batch_size: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="Texts per forward pass inside a batch (sorted by length): on CPU small "
        "passes are faster per text than one large one; on GPU set it to max_batch_size.",
    )


class QueueConfig(StrictModel):
    """Load shedding: bounded work per student replica; past it, 503 with ``Retry-After``.

    A request is split into chunks of at most ``batching.max_batch_size`` texts; each chunk is
    one call to a student replica. A replica holds at most ``max_ongoing_per_replica`` chunks
    (scored, or gathered into its next batch); each ingress replica lets at most
    ``max_queued_per_ingress`` more wait for a free slot. Past that the request is answered 503
    at once, so an accepted request waits behind at most
    ``(replicas x max_ongoing_per_replica + ingress replicas x max_queued_per_ingress)`` chunks.
    """

    max_ongoing_per_replica: int = Field(
        default=4,
        ge=1,
        description="Chunks one student replica holds at once (Serve max_ongoing_requests); "
        "x texts per chunk it must be >= batching.max_batch_size to fill a batch. Autoscaling's "
        "target_ongoing_requests must lie below it, so replicas are added before shedding.",
    )
    max_queued_per_ingress: int = Field(
        default=4,
        ge=1,
        description="Chunks each ingress replica lets wait for a free student slot (Serve "
        "max_queued_requests); past it requests get 503 with Retry-After.",
    )
    retry_after_s: int = Field(
        default=1, ge=1, le=3600, description="Retry-After seconds of a shed (503) request."
    )
    ingress_max_ongoing_requests: int = Field(
        default=1024,
        ge=16,
        description="Concurrent HTTP requests per ingress replica: high, so that health probes "
        "and shed answers never queue behind inference at Serve's proxy.",
    )
    readiness_timeout_s: float = Field(
        default=2.0,
        gt=0.0,
        le=30.0,
        description="GET /readyz: how long a student replica may take to answer its ping.",
    )


class ReplicaConfig(StrictModel):
    """How many student replicas run and what each one reserves."""

    num_replicas: int = Field(
        default=1, ge=1, description="Fixed replica count (ignored when autoscaling is set)."
    )
    autoscaling: dict[str, Any] | None = Field(
        default=None,
        description="Ray Serve autoscaling_config (e.g. min_replicas, max_replicas, "
        "target_ongoing_requests); replaces num_replicas when set.",
    )
    num_cpus: float = Field(default=1.0, ge=0.0, description="CPUs reserved per replica.")
    num_gpus: float = Field(
        default=0.0, ge=0.0, description="GPUs per replica; > 0 runs the model on CUDA."
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch intra-op threads per replica (null: num_cpus rounded up, at least 1; "
        "Ray would otherwise leave an actor's torch at 1 thread).",
    )
    ingress_replicas: int = Field(
        default=1, ge=1, description="Replicas of the HTTP ingress (FastAPI) deployment."
    )


class LimitsConfig(StrictModel):
    """Input limits; a request over them gets a 4xx JSON error, never a 500."""

    max_texts_per_request: int = Field(
        default=64, ge=1, description="Most texts in one request (422 above)."
    )
    max_request_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest request body in bytes (413 above)."
    )
    max_json_depth: int = Field(
        default=8,
        ge=2,
        le=64,
        description="Deepest array/object nesting of a body, checked before parsing (400 "
        "too_deep above); a classify request needs 2.",
    )


class AuthConfig(StrictModel):
    """Optional bearer-token authentication."""

    api_key_env: str | None = Field(
        default=None,
        description="Environment variable holding the API key; when set every /v1 request "
        "needs `Authorization: Bearer <key>` (compared in constant time). Null: no auth.",
    )


class CascadeConfig(StrictModel):
    """Escalate uncertain texts to a teacher (off by default)."""

    enabled: bool = Field(default=False, description="Turn the cascade on.")
    teacher: TeacherConfig | None = Field(
        default=None,
        description="The teacher asked: kind `openai` (any OpenAI-compatible endpoint, e.g. "
        "`vllm serve`), mode `set`. Its prompt settings are used as in the label job.",
    )
    band: tuple[float, float] = Field(
        default=(0.3, 0.7),
        description="[low, high]: a label whose student score lies in this band is uncertain; "
        "a text with an uncertain label is escalated and the teacher decides those labels.",
    )
    tokens_per_minute: int = Field(
        default=20_000,
        ge=1,
        description="Teacher token budget (prompt + output) per minute, shared by all requests; "
        "a text that does not fit keeps the student's answer.",
    )
    max_document_chars: int = Field(
        default=4000, ge=16, description="Characters of a text shown to the teacher."
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one teacher request.")
    max_concurrency: int = Field(default=8, ge=1, description="Teacher requests in flight at once.")

    @model_validator(mode="after")
    def _checks(self) -> CascadeConfig:
        low, high = self.band
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"cascade.band must satisfy 0 <= low < high <= 1, got {self.band!r}")
        if self.enabled:
            if self.teacher is None:
                raise ValueError("cascade.enabled needs cascade.teacher")
            if self.teacher.kind != "openai" or self.teacher.mode != "set":
                raise ValueError(
                    "cascade.teacher must be kind 'openai' in mode 'set', got kind "
                    f"{self.teacher.kind!r} mode {self.teacher.mode!r}"
                )
        return self


class ServeConfig(StrictModel):
    """Arguments of the labelmill Serve application (``labelmill.serve.app:build_app``)."""

    model_dir: str = Field(
        description="Exported student directory (from `labelmill distill`): a local path, or "
        "any fsspec URI (s3://...) fetched once per node into $LABELMILL_HOME/cache/models."
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="Batching.")
    queue: QueueConfig = Field(default_factory=QueueConfig, description="Load shedding.")
    replicas: ReplicaConfig = Field(default_factory=ReplicaConfig, description="Replicas.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Input limits.")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="Authentication.")
    cascade: CascadeConfig = Field(default_factory=CascadeConfig, description="Teacher cascade.")
    runtime: Literal["auto", "torch-float32"] = Field(
        default="auto",
        description="`auto`: on CPU the fast path recorded in the artifact's labelmill.json "
        "(runtime: e.g. ONNX Runtime int8), else torch; `torch-float32`: always plain torch.",
    )
    max_length: int = Field(
        default=256,
        ge=8,
        description="Tokens per text when the artifact does not record the length it was "
        "trained with; longer texts are truncated and the response says so.",
    )


def parse_serve_config(tree: dict[str, Any], overrides: list[str] | None = None) -> ServeConfig:
    """Validate a raw serve args tree (overrides applied) into a :class:`ServeConfig`."""
    return validate_tree(ServeConfig, tree, overrides, "serve args")


def load_serve_config(
    path: str | Path | None, model_dir: str | None = None, overrides: list[str] | None = None
) -> ServeConfig:
    """Serve args from a YAML file (plain args, or a Serve config file's first application).

    ``model_dir`` (the CLI's ARTIFACT_DIR) replaces the file's ``model_dir``; with no file the
    args are ``{"model_dir": model_dir}`` plus ``overrides``.
    """
    tree: Any = {}
    if path is not None:
        tree = read_yaml(path, "serve config") or {}
        if isinstance(tree, dict) and "applications" in tree:
            apps = tree["applications"]
            if not isinstance(apps, list) or not apps or not isinstance(apps[0], dict):
                raise ConfigError(f"serve config {str(path)!r}: applications must be a list")
            tree = apps[0].get("args") or {}
    if model_dir is not None and isinstance(tree, dict):
        tree["model_dir"] = model_dir
    return parse_serve_config(tree, overrides)
