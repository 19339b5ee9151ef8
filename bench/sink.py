"""A lean Intilery stand-in for benchmarks: aiohttp, answers 200 with an
eventId, optionally after a latency, optionally enforcing a token bucket (429),
or answering 503 to everything (``--down``). ``GET /_stats`` gives counts and
arrival times of accepted calls; ``POST /_reset`` clears them.

    python bench/sink.py --port 18090 [--latency-ms 20] [--rate 100 --burst 500] [--down]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bridge.devtools.sandbox.state import TokenBucket


def app(latency_ms: float, rate: float, burst: int, down: bool) -> web.Application:
    stats: dict[str, Any] = {"requests": 0, "calls": 0, "status_429": 0, "status_503": 0, "arrivals": []}
    bucket = TokenBucket(rate, burst) if rate > 0 else None

    async def track(request: web.Request) -> web.Response:
        body = await request.read()
        stats["requests"] += 1
        if down:
            stats["status_503"] += 1
            return web.json_response({"success": False, "message": "down"}, status=503)
        if bucket is not None and not bucket.take():
            stats["status_429"] += 1
            return web.json_response({"success": False, "message": "rate limit exceeded"}, status=429)
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        calls = len(json.loads(body)["batch"]) if request.match_info["action"] == "batch" else 1
        stats["calls"] += calls
        stats["arrivals"].extend([time.time()] * calls)
        return web.json_response({"success": True, "eventId": str(uuid.uuid4())})

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response(stats)

    async def reset(_: web.Request) -> web.Response:
        stats.update(requests=0, calls=0, status_429=0, status_503=0, arrivals=[])
        return web.json_response({"success": True})

    application = web.Application(client_max_size=2 * 1024 * 1024)
    application.router.add_post("/track/{client}/{account}/{brand}/v1/{action}", track)
    application.router.add_get("/_stats", get_stats)
    application.router.add_post("/_reset", reset)
    return application


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--down", action="store_true")
    args = parser.parse_args()
    web.run_app(
        app(args.latency_ms, args.rate, args.burst, args.down),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
