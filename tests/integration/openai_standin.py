"""A small OpenAI-compatible chat-completions server for tests (stands in for `vllm serve`).

Deterministic answers: a label applies when the last word of its name (``editing``, ``text``,
``audio``, ``server``) occurs in the document. `set` requests (response_format) get a JSON array;
`score` requests (logprobs, max_tokens=1) get yes/no top log-probabilities (0.9 / 0.1). A document
containing FLAKY fails once with 503 per mode (to exercise retries); ``seen`` counts requests per
(document line, mode); GARBAGE gets a non-JSON answer. ``delay_s`` holds every answer that long
(a slow teacher, so that a job can be killed midway).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import threading
import time
from collections import Counter
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

_LABEL_RE = re.compile(r"^- (\S+):", re.MULTILINE)


def _document(content: str) -> str:
    """The document line of a prompt (test documents are one line; the question follows)."""
    return content.split("Document:\n", 1)[-1].split("\n", 1)[0]


def build_app(seen: Counter, delay_s: float = 0.0) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        if delay_s:
            await asyncio.sleep(delay_s)
        content = body["messages"][-1]["content"]
        doc = _document(content)
        key = doc + ("|score" if body.get("logprobs") else "|set")
        seen[key] += 1
        if "FLAKY" in doc and seen[key] == 1:
            return JSONResponse({"error": "busy"}, status_code=503)
        labels = _LABEL_RE.findall(content)
        usage = {"prompt_tokens": len(content.split()), "completion_tokens": 1}
        if body.get("logprobs"):
            asked = re.search(r'Does the label "([^"]+)"', content)
            p_yes = 0.9 if asked and asked.group(1).rsplit(":", 1)[-1] in doc else 0.1
            top = [
                {"token": "yes", "logprob": math.log(p_yes)},
                {"token": "no", "logprob": math.log(1 - p_yes)},
            ]
            answer = "yes" if p_yes > 0.5 else "no"
            logprobs = {"content": [{"token": answer, "logprob": 0.0, "top_logprobs": top}]}
        else:
            chosen = [name for name in labels if name.rsplit(":", 1)[-1] in doc]
            answer = "not json at all" if "GARBAGE" in doc else json.dumps(chosen)
            usage["completion_tokens"] = len(answer)
            logprobs = None
        return JSONResponse(
            {
                "id": "cmpl-test",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "logprobs": logprobs,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    return app


class StandinServer:
    """Runs the app with uvicorn on a free loopback port in a background thread."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.seen: Counter = Counter()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.seen, delay_s), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> StandinServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stand-in server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
