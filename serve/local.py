"""`labelmill serve ARTIFACT_DIR`: the endpoint on an embedded local Ray (or a given cluster)."""

from __future__ import annotations

import os
import time
from typing import Any

from labelmill.errors import ConfigError
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

    import ray
    from labelmill.serve.app import build_app
    from ray import serve

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        init: dict[str, Any] = {"address": address, "include_dashboard": False}
        if address is None:  # a new embedded Ray even if another one runs on this machine
            init["address"] = "local"
            init["num_cpus"] = num_cpus or max(os.cpu_count() or 1, 4)
        ray.init(**init)
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
