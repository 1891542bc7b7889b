"""Latency of `clipworks serve` under 200 concurrent clients on loopback: p50/p99 per request kind, no 5xx allowed.

Starts the server as `clipworks serve INDEX --port 0` in its own process, sends `--requests` requests from
`--concurrency` concurrent httpx clients (text searches with distinct queries, image-search uploads, thumbnails),
and appends a table to bench/RESULTS.md.

    .venv/bin/python bench/serve_load.py --index runs/index --image some.png
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
SHAPES = ["circle", "square", "triangle", "star", "cross", "heart"]


async def run(url: str, upload: bytes, n: int, concurrency: int) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"text search": [], "image search (upload)": [], "thumbnail": []}
    failures: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    # uvicorn closes a keep-alive connection after 5 s idle; a client that reuses one just then gets a ReadError
    # (a normal HTTP race that browsers retry). Expire idle connections sooner on this side.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        async with gate:
            start = time.perf_counter()
            if i % 4 == 0:
                kind = "image search (upload)"
                r = await client.post("/api/search/image", files={"file": ("q.png", upload)}, params={"k": 10})
            elif i % 4 == 1:
                kind = "thumbnail"
                r = await client.get(f"/api/thumbnail/{1 + i % 40}")
            else:
                kind = "text search"
                q = f"a photo of {1 + i % 3} {COLOURS[i % 8]} {SHAPES[(i // 8) % 6]}s {i}"  # distinct: no cache hits
                r = await client.get("/api/search", params={"q": q, "k": 10})
            latencies[kind].append(time.perf_counter() - start)
            if r.status_code != 200:
                failures.append(f"{kind}: {r.status_code} {r.text[:200]}")

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:
        await asyncio.gather(*(one(client, i) for i in range(n)))
    if failures:
        raise SystemExit(f"{len(failures)} failed requests, e.g. {failures[0]}")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): the server's work, less sensitive than requests/s
    to other load on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", required=True)
    parser.add_argument("--image", required=True, help="an image to upload as a query")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "clipworks.cli", "serve", args.index, "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split(" at ")[1].split("/ ")[0]
        for _ in range(300):
            try:
                httpx.get(url + "/api/info")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        info = httpx.get(url + "/api/info").json()
        start, cpu_start = time.perf_counter(), cpu_seconds(server.pid)
        latencies = asyncio.run(run(url, Path(args.image).read_bytes(), args.requests, args.concurrency))
        wall, cpu = time.perf_counter() - start, cpu_seconds(server.pid) - cpu_start
        assert server.poll() is None, "the server died"
    finally:
        server.terminate()
        server.wait()
    lines = ["\n## clipworks serve under load (bench/serve_load.py)\n",
             f"{args.requests} requests, {args.concurrency} concurrent, loopback, index of {info['images']} images "
             f"(embed dim {info['embed_dim']}), 2-core shared machine; {args.requests / wall:.0f} requests/s overall, "
             f"server CPU {1000 * cpu / args.requests:.2f} ms per request, no 5xx.\n",
             "| request | n | p50 ms | p99 ms |", "|---|---|---|---|"]
    everything = [t for ts in latencies.values() for t in ts]
    for kind, ts in [*latencies.items(), ("all", everything)]:
        lines.append(f"| {kind} | {len(ts)} | {1000 * percentile(ts, 0.5):.0f} | {1000 * percentile(ts, 0.99):.0f} |")
    print("\n".join(lines))
    with open(args.out, "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
