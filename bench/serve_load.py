"""Loopback load on the Serve endpoint vs the in-process limit and a naive per-request server.

    python bench/serve_load.py [--model-dir out/bench/student] [--clients 1 8 32]
                               [--texts-per-request 10] [--requests 150] [--seconds 30]
                               [--max-batch-size 32] [--batch-wait-ms 10] [--skip-naive]
                               [--skip-cascade]

The model directory (default: out/demo/student, else out/bench/student from
bench/bench_student.py) should record a CPU fast path in labelmill.json (``runtime``).
Texts: data/bench/debtags-500.parquet (Debian package descriptions, 447 characters on average).
Every level is bounded in count and time: each client sends requests of --texts-per-request
texts back to back until --requests requests were sent at that level or --seconds passed; a
503 (load shed) is counted and the client waits its Retry-After. Measured in one run, side by
side, on the same model directory:

  (a) limit: the student's in-process batched forward (`predict_sorted`, no HTTP, no Ray) at
      its best batch size among 8, 16, 32: texts/s, for float32 torch and for the fast path;
  (b) served: `labelmill serve` (Ray Serve on an embedded local Ray, one student replica with
      --replica-cpus CPUs and as many threads, @serve.batch, the default load-shedding queue)
      over loopback HTTP, runtime torch-float32 then the fast path (`auto`): p50/p99 latency of
      accepted requests, texts/s, shed (503) and other errors per client count;
  (c) cascade: the fast path with the cascade on (a stand-in OpenAI-compatible teacher, band
      [0.3, 0.7], --cascade-tpm tokens per minute) at the largest client count: outcomes and
      whether the teacher budget held;
  (d) naive: a `transformers` text-classification pipeline called once per request behind
      plain FastAPI/uvicorn (one process), the same loads.

Targets at the largest client count: served / limit of the same runtime >= 0.8; fast served
>= 2 x float32 served; p99 of accepted requests within the configured queue's bound; zero 5xx
other than 503. Ends with one line: ``serve_load: served_over_limit=... served_texts_per_s=...
served_over_naive=... errors_5xx=...`` (the fast path, largest client count).
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
STUDENTS = [REPO / "out" / "demo" / "student", REPO / "out" / "bench" / "student"]


def default_model_dir() -> str:
    """The first student that records a CPU fast path, else the first exported one."""
    found = [p for p in STUDENTS if (p / "labelmill.json").is_file()]
    fast = [p for p in found if json.loads((p / "labelmill.json").read_text()).get("runtime")]
    return str((fast or found or STUDENTS)[0])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default=default_model_dir())
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--texts-per-request", type=int, default=10)
    parser.add_argument("--requests", type=int, default=150, help="requests per level at most")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per level at most")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-cascade", action="store_true")
    parser.add_argument("--cascade-tpm", type=int, default=6000, help="teacher tokens/minute")
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
        parser.error(
            f"no exported student in {args.model_dir!r}: run `make demo`, "
            "bench/bench_student.py, or give --model-dir"
        )
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


def in_process_limit(
    model_dir: str, texts: list[str], runtime: str
) -> tuple[str, int, float, dict[int, float]]:
    """Best texts/s of the in-process batched forward -> (runtime, batch, texts/s, all sizes)."""
    from labelmill.student.inference import load_student, predict_sorted

    student = load_student(model_dir, max_length=256, runtime=runtime)
    predict_sorted(student, texts[:32], batch_size=16)  # warm-up
    sample = texts[:256]
    rates: dict[int, float] = {}
    for batch_size in (8, 16, 32):
        started = time.perf_counter()
        predict_sorted(student, sample, batch_size=batch_size)
        rates[batch_size] = len(sample) / (time.perf_counter() - started)
    best = max(rates, key=rates.__getitem__)
    return student.runtime, best, rates[best], rates


# ------------------------------------------------------------------------------ load generator


async def run_level(
    url: str, texts: list[str], clients: int, per_request: int, max_requests: int, seconds: float
) -> dict[str, Any]:
    """``clients`` concurrent loops of POSTs, bounded by count and time -> latency/throughput.

    Latency percentiles are over accepted (200) requests; a 503 is a shed request (the client
    sleeps its Retry-After, as a well-behaved client does); any other status, a malformed
    answer or a transport error (a timeout among them) is an error.
    """
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    statuses: dict[int, int] = {}
    sent = ok = shed = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient, index: int) -> None:
        nonlocal sent, ok, shed
        offset = index * per_request
        while sent < max_requests and time.perf_counter() < deadline:
            sent += 1
            batch = [texts[(offset + j) % len(texts)] for j in range(per_request)]
            offset += per_request * clients
            started = time.perf_counter()
            try:
                response = await http.post(url, json={"texts": batch})
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
                continue
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 503:
                shed += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                continue
            good = response.status_code == 200 and len(response.json()["results"]) == len(batch)
            if not good:
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                continue
            ok += 1
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http, i) for i in range(clients)))
        wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": ok,
        "shed": shed,
        "errors": len(errors),
        "errors_5xx": sum(n for code, n in statuses.items() if code >= 500 and code != 503),
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
        f"| {'server':<14} | {'clients':>7} | {'ok':>5} | {'shed':>5} | {'errors':>6} | "
        f"{'p50 ms':>8} | {'p99 ms':>8} | {'texts/s':>8} |"
    )
    print(f"|{'-' * 16}|{'-' * 9}|{'-' * 7}|{'-' * 7}|{'-' * 8}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for name, r in rows:
        print(
            f"| {name:<14} | {r['clients']:>7} | {r['requests']:>5} | {r['shed']:>5} | "
            f"{r['errors']:>6} | {r['p50_ms']:>8.1f} | {r['p99_ms']:>8.1f} | "
            f"{r['texts_per_s']:>8.1f} |"
        )


def cascade_level(
    url: str, texts: list[str], args: argparse.Namespace, app: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cascade app at the largest client count -> (level, budget check)."""
    from ray import serve

    started = time.perf_counter()
    level = asyncio.run(
        run_level(url, texts, max(args.clients), args.texts_per_request, args.requests, 20.0)
    )
    elapsed = time.perf_counter() - started
    usage = serve.get_deployment_handle("CascadeTeacher", app_name=app).usage.remote().result()
    # the bucket starts full (one minute's worth) and refills at tokens_per_minute
    cap = args.cascade_tpm * (1.0 + elapsed / 60.0)
    budget = {"tokens_used": usage["tokens_used"], "cap": cap, "held": usage["tokens_used"] <= cap}
    return level, budget


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.naive_server is not None:
        naive_server(int(args.naive_server[0]), args.naive_server[1])
        return 0
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    texts = load_texts()
    print(f"model: {args.model_dir}; {len(texts)} texts; {args.texts_per_request} texts/request")
    print(f"machine: {os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.2f}")

    limits: dict[str, tuple[int, float]] = {}
    fast_name = "torch-float32"
    for runtime in ("torch-float32", "auto"):
        name, best, rate, rates = in_process_limit(args.model_dir, texts, runtime)
        fast_name = name if runtime == "auto" else fast_name
        limits[runtime] = (best, rate)
        sizes = ", ".join(f"{b}: {r:.1f}" for b, r in rates.items())
        print(f"(a) in-process limit, {name}: {rate:.1f} texts/s at batch {best} ({sizes})")

    from ray import serve

    from labelmill.serve.app import build_app
    from labelmill.serve.local import start_endpoint
    from labelmill.serve_config import parse_serve_config

    def config(runtime: str, cascade: dict[str, Any] | None = None) -> Any:
        tree: dict[str, Any] = {
            "model_dir": args.model_dir,
            "runtime": runtime,
            "batching": {
                "max_batch_size": args.max_batch_size,
                "batch_wait_timeout_s": args.batch_wait_ms / 1000.0,
                "forward_batch_size": limits[runtime][0],  # the limit's best batch size
            },
            "limits": {"max_texts_per_request": max(64, args.texts_per_request)},
            "replicas": {"num_cpus": args.replica_cpus},
        }
        if cascade is not None:
            tree["cascade"] = cascade
        return parse_serve_config(tree)

    port = free_port()
    started = time.perf_counter()
    url = start_endpoint(config("torch-float32"), "127.0.0.1", port)
    print(f"(b) served: up in {time.perf_counter() - started:.1f} s at {url}")
    queue = config("auto").queue
    served = {"torch-float32": load_levels(f"{url}/v1/classify", texts, args)}
    serve.run(build_app(config("auto")), name="labelmill", route_prefix="/")
    served["auto"] = load_levels(f"{url}/v1/classify", texts, args)

    cascade: tuple[dict[str, Any], dict[str, Any]] | None = None
    if not args.skip_cascade:
        sys.path.insert(0, str(REPO / "tests" / "integration"))
        from openai_standin import StandinServer

        with StandinServer() as teacher:
            settings = {
                "enabled": True,
                "band": [0.3, 0.7],
                "tokens_per_minute": args.cascade_tpm,
                "teacher": {
                    "name": "standin",
                    "kind": "openai",
                    "model": "m",
                    "base_url": teacher.base_url,
                    "max_output_tokens": 32,
                },
            }
            serve.run(build_app(config("auto", settings)), name="cascade", route_prefix="/c")
            cascade = cascade_level(f"{url}/c/v1/classify", texts, args, "cascade")
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

    rows = [("served float32", r) for r in served["torch-float32"]]
    rows += [(f"served {fast_name}", r) for r in served["auto"]]
    if cascade is not None:
        rows.append(("cascade", cascade[0]))
    rows += [("naive", r) for r in naive]
    print()
    print_table(rows)
    for name, r in rows:
        if r["first_error"]:
            print(f"  first {name} error at {r['clients']} clients: {r['first_error']}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")

    top = {runtime: levels[-1] for runtime, levels in served.items()}
    clients = top["auto"]["clients"]
    print(f"\nat {clients} clients:")
    for runtime, label in (("torch-float32", "float32"), ("auto", fast_name)):
        ratio = top[runtime]["texts_per_s"] / limits[runtime][1]
        print(
            f"  served / limit, {label}: {top[runtime]['texts_per_s']:.1f} / "
            f"{limits[runtime][1]:.1f} = {ratio:.2f} (target >= 0.8)"
        )
    speedup = top["auto"]["texts_per_s"] / max(top["torch-float32"]["texts_per_s"], 1e-9)
    print(f"  served {fast_name} / served float32: {speedup:.2f} (target >= 2)")
    # An accepted chunk waits behind at most the replica's slots and the ingress's queue, each
    # served at the replica's measured rate (Little's law): that is the latency bound.
    waiting = queue.max_ongoing_per_replica + queue.max_queued_per_ingress + 1
    for runtime, label in (("torch-float32", "float32"), ("auto", fast_name)):
        rate = max(top[runtime]["texts_per_s"], 1e-9)
        bound_ms = waiting * args.texts_per_request / rate * 1000.0
        p99 = top[runtime]["p99_ms"]
        print(
            f"  p99 {label}: {p99:.0f} ms; queue bound ({waiting} chunks x "
            f"{args.texts_per_request} texts / {rate:.1f} texts/s served) {bound_ms:.0f} ms: "
            f"{'within' if p99 <= bound_ms else 'over'}"
        )
    if cascade is not None:
        level, budget = cascade
        print(
            f"  cascade: {level['texts_per_s']:.1f} texts/s, {level['shed']} shed, "
            f"{level['errors_5xx']} 5xx; teacher tokens {budget['tokens_used']} <= cap "
            f"{budget['cap']:.0f}: {'held' if budget['held'] else 'EXCEEDED'}"
        )
    naive_rate = naive[-1]["texts_per_s"] if naive else float("nan")
    all_levels = [r for _, r in rows]
    errors_5xx = sum(r["errors_5xx"] for r in all_levels)
    print(
        f"  5xx other than 503: {errors_5xx}; other errors: {sum(r['errors'] for r in all_levels)}"
    )
    print(
        f"serve_load: served_over_limit={top['auto']['texts_per_s'] / limits['auto'][1]:.2f} "
        f"served_texts_per_s={top['auto']['texts_per_s']:.1f} "
        f"served_over_naive={top['auto']['texts_per_s'] / naive_rate:.2f} "
        f"errors_5xx={errors_5xx}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
