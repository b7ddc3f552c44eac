"""`labelmill serve ARTIFACT_DIR`: the endpoint on an embedded local Ray (or a given cluster)."""

from __future__ import annotations

import os
import time

from labelmill.errors import ConfigError
from labelmill.requests import http_auth_headers
from labelmill.serve_config import ServeConfig


def start_endpoint(
    config: ServeConfig,
    host: str,
    port: int,
    address: str | None = None,
    num_cpus: int | None = None,
) -> str:
    """Start Ray (embedded unless ``address``), Serve's HTTP proxy and the app; return its URL.

    Fails early, before anything is deployed, when the artifact is unreadable or auth is
    configured without its key in the environment.
    """
    from labelmill.student.export import load_student_metadata

    load_student_metadata(config.model_dir)
    env = config.auth.api_key_env
    if env is not None and not os.environ.get(env):
        raise ConfigError(f"auth.api_key_env is {env!r} but that variable is unset or empty")
    teacher = config.cascade.teacher if config.cascade.enabled else None
    if teacher is not None:  # the same rule as the label job, before anything is deployed
        http_auth_headers(teacher.name, getattr(teacher, "api_key_env", None), os.environ)

    import ray
    from ray import serve

    from labelmill.pipelines.runtime import start_ray
    from labelmill.serve.app import build_app

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        start_ray(address, num_cpus)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(config), name="labelmill", route_prefix="/")
    return f"http://{host}:{port}"


def serve_forever(config: ServeConfig, host: str, port: int, address: str | None) -> None:
    """Start the endpoint and block until Ctrl-C, then shut Serve down."""
    url = start_endpoint(config, host, port, address)
    from ray import serve

    print(f"labelmill endpoint: {url}/v1/classify  (model: {url}/v1/model; Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping")
    finally:
        serve.shutdown()
