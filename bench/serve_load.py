"""Loopback load on the Serve endpoint vs the in-process limit and a naive per-request server.

    python bench/serve_load.py [--model-dir out/demo/student] [--clients 1 8 32]
                               [--texts-per-request 10] [--requests 150] [--seconds 30]
                               [--max-batch-size 64] [--batch-wait-ms 10] [--skip-naive]

Texts: data/bench/debtags-500.parquet (Debian package descriptions, 447 characters on average).
Every level is bounded in count and time: each client sends requests of --texts-per-request
texts back to back until --requests requests were sent at that level or --seconds passed.
Measured, in one run, on the same model directory (the demo student of `make demo` by default):

  (a) limit: the student's in-process batched forward (`predict_sorted`, no HTTP, no Ray) at
      its best batch size among 8..256: texts/s;
  (b) served: `labelmill serve` (Ray Serve on an embedded local Ray, one student replica with
      --replica-cpus CPUs and as many torch threads, @serve.batch) over loopback HTTP:
      p50/p99 latency, texts/s, errors per client count;
  (c) naive: a `transformers` text-classification pipeline called once per request behind
      plain FastAPI/uvicorn (one process, sync endpoint), the same loads.

Prints one table and the two ratios the targets are about (at the largest client count):
served / limit (target >= 0.6) and served / naive (target >= 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from fastapi import FastAPI, Request  # module level: FastAPI resolves the handler's annotations

REPO = Path(__file__).resolve().parent.parent
TEXTS = REPO / "data" / "bench" / "debtags-500.parquet"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default=str(REPO / "out" / "demo" / "student"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--texts-per-request", type=int, default=10)
    parser.add_argument("--requests", type=int, default=150, help="requests per level at most")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per level at most")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--replica-cpus",
        type=float,
        default=float(os.cpu_count() or 1),
        help="CPUs (and torch threads) of the student replica (default: all cores)",
    )
    parser.add_argument(
        "--naive-server", nargs=2, metavar=("PORT", "MODEL_DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.naive_server is None and not Path(args.model_dir, "labelmill.json").is_file():
        parser.error(f"no exported student in {args.model_dir!r}: run `make demo` or --model-dir")
    if args.texts_per_request < 1 or args.requests < 1 or min(args.clients) < 1:
        parser.error("--texts-per-request, --requests and --clients must be >= 1")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_texts() -> list[str]:
    return [t for t in pq.read_table(TEXTS, columns=["text"])["text"].to_pylist() if t]


# ------------------------------------------------------------------------------ (a) the limit


def in_process_limit(model_dir: str, texts: list[str]) -> tuple[int, float, dict[int, float]]:
    """Best texts/s of the in-process batched forward -> (batch size, texts/s, all sizes)."""
    from labelmill.student.inference import load_student, predict_sorted

    student = load_student(model_dir, max_length=256)
    predict_sorted(student, texts[:16], batch_size=16)  # warm-up
    sample = texts[:256]
    rates: dict[int, float] = {}
    for batch_size in (8, 16, 32, 64, 128, 256):
        started = time.perf_counter()
        predict_sorted(student, sample, batch_size=batch_size)
        rates[batch_size] = len(sample) / (time.perf_counter() - started)
    best = max(rates, key=rates.__getitem__)
    return best, rates[best], rates


# ------------------------------------------------------------------------------ load generator


async def run_level(
    url: str, texts: list[str], clients: int, per_request: int, max_requests: int, seconds: float
) -> dict[str, Any]:
    """``clients`` concurrent loops of POSTs, bounded by count and time -> latency/throughput."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    sent = ok = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient, index: int) -> None:
        nonlocal sent, ok
        offset = index * per_request
        while sent < max_requests and time.perf_counter() < deadline:
            sent += 1
            batch = [texts[(offset + j) % len(texts)] for j in range(per_request)]
            offset += per_request * clients
            started = time.perf_counter()
            try:
                response = await http.post(url, json={"texts": batch})
                good = response.status_code == 200 and len(response.json()["results"]) == len(batch)
                if good:
                    ok += 1
                else:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
                continue
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http, i) for i in range(clients)))
        wall = time.perf_counter() - started
    done = len(latencies)
    return {
        "clients": clients,
        "requests": done,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "texts_per_s": ok * per_request / wall,
        "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else float("nan"),
        "wall_s": wall,
    }


def wait_until_up(url: str, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f} s")


def load_levels(url: str, texts: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    # one short warm-up level (not reported)
    asyncio.run(run_level(url, texts, 2, args.texts_per_request, 10, 10.0))
    return [
        asyncio.run(run_level(url, texts, c, args.texts_per_request, args.requests, args.seconds))
        for c in args.clients
    ]


# ------------------------------------------------------------------------------ (c) naive server


def naive_server(port: int, model_dir: str) -> None:
    """A per-request `transformers` pipeline behind plain FastAPI (runs in a subprocess)."""
    import uvicorn
    from transformers import pipeline

    meta = json.loads(Path(model_dir, "labelmill.json").read_text(encoding="utf-8"))
    max_length = (meta["lineage"].get("student_config") or {}).get("max_length", 256)
    classify = pipeline(
        "text-classification", model=model_dir, top_k=None, function_to_apply="sigmoid"
    )
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/classify")
    async def run(request: Request) -> dict[str, Any]:
        body = await request.json()
        outputs = await asyncio.to_thread(
            classify, body["texts"], truncation=True, max_length=max_length
        )
        return {"results": [{o["label"]: o["score"] for o in out} for out in outputs]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ------------------------------------------------------------------------------ main


def print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(
        f"| {'server':<8} | {'clients':>7} | {'requests':>8} | {'errors':>6} | "
        f"{'p50 ms':>8} | {'p99 ms':>8} | {'texts/s':>8} |"
    )
    print(f"|{'-' * 10}|{'-' * 9}|{'-' * 10}|{'-' * 8}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for name, r in rows:
        print(
            f"| {name:<8} | {r['clients']:>7} | {r['requests']:>8} | {r['errors']:>6} | "
            f"{r['p50_ms']:>8.1f} | {r['p99_ms']:>8.1f} | {r['texts_per_s']:>8.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.naive_server is not None:
        naive_server(int(args.naive_server[0]), args.naive_server[1])
        return 0
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    texts = load_texts()
    print(f"model: {args.model_dir}; {len(texts)} texts; {args.texts_per_request} texts/request")
    print(f"machine: {os.cpu_count()} CPUs")

    best, limit, rates = in_process_limit(args.model_dir, texts)
    sizes = ", ".join(f"{b}: {r:.1f}" for b, r in rates.items())
    print(f"(a) in-process limit: {limit:.1f} texts/s at batch {best} (texts/s by batch: {sizes})")

    from ray import serve

    from labelmill.serve_config import parse_serve_config
    from serve.local import start_endpoint

    port = free_port()
    config = parse_serve_config(
        {
            "model_dir": args.model_dir,
            "batching": {
                "max_batch_size": args.max_batch_size,
                "batch_wait_timeout_s": args.batch_wait_ms / 1000.0,
                "forward_batch_size": best,  # the in-process limit's best batch size
                "max_ongoing_requests": 256,
            },
            "limits": {"max_texts_per_request": max(64, args.texts_per_request)},
            "replicas": {"num_cpus": args.replica_cpus},
        }
    )
    started = time.perf_counter()
    url = start_endpoint(config, "127.0.0.1", port)
    print(f"(b) served: up in {time.perf_counter() - started:.1f} s at {url}")
    served = load_levels(f"{url}/v1/classify", texts, args)
    serve.shutdown()
    import ray

    ray.shutdown()

    naive: list[dict[str, Any]] = []
    if not args.skip_naive:
        naive_port = free_port()
        process = subprocess.Popen(
            [sys.executable, __file__, "--naive-server", str(naive_port), args.model_dir],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_until_up(f"http://127.0.0.1:{naive_port}/healthz")
            naive = load_levels(f"http://127.0.0.1:{naive_port}/v1/classify", texts, args)
        finally:
            process.terminate()
            process.wait(timeout=30)

    print()
    print_table([("served", r) for r in served] + [("naive", r) for r in naive])
    for name, r in [("served", r) for r in served] + [("naive", r) for r in naive]:
        if r["first_error"]:
            print(f"  first {name} error at {r['clients']} clients: {r['first_error']}")
    top = served[-1]
    print(f"\n(a) in-process limit: {limit:.1f} texts/s (batch {best})")
    print(
        f"served / limit at {top['clients']} clients: {top['texts_per_s'] / limit:.2f} "
        "(target >= 0.6)"
    )
    if naive and naive[-1]["texts_per_s"] > 0:
        print(
            f"served / naive at {top['clients']} clients: "
            f"{top['texts_per_s'] / naive[-1]['texts_per_s']:.2f} (target >= 3)"
        )
    errors = sum(r["errors"] for r in served + naive)
    print(f"errors: {errors} (target 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
