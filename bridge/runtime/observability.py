"""``/metrics``, ``/healthz`` and ``/readyz`` on ``observability.port``.

Served by aiohttp on the bridge's own event loop, so ``/healthz`` answering at
all shows the loop is alive; it also checks that the consume loop went round
recently. ``/readyz`` is 200 once the bridge is a member of the group (a member with no
partitions is a ready standby), Intilery neither refusing the setup nor failing every
request (an open outage), the dead-letter topic writable and no partition stuck;
``/readyz?scope=group`` only asks for membership of the group (the Kubernetes
readiness probe: an Intilery outage must not make every pod NotReady at once).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.errors import cannot_listen
from bridge.metrics import Metrics

log = structlog.get_logger(__name__)

Check = Callable[[], list[str]]  # the reasons it is not OK; empty when OK


class ObservabilityServer:
    def __init__(
        self, metrics: Metrics, health: Check, readiness: Check, host: str, port: int, membership: Check
    ) -> None:
        self._metrics, self._health = metrics, health
        self._readiness, self._membership = readiness, membership
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_health)
        app.router.add_get("/readyz", self._serve_ready)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port).start()
        except OSError as exc:  # a second bridge on the host, say: one line, not a traceback
            await self._runner.cleanup()
            error = cannot_listen("observability.port", self._host, self._port, exc)
            log.error("observability_port_unavailable", host=self._host, port=self._port, error=str(error))
            raise error from exc
        self.port = int(self._runner.addresses[0][1])  # the real one when 0 asked for any free port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve_metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"content-type": CONTENT_TYPE_LATEST})

    async def _serve_health(self, _: web.Request) -> web.Response:
        return self._answer(self._health())

    async def _serve_ready(self, request: web.Request) -> web.Response:
        reasons = self._readiness()
        self._metrics.ready.set(0 if reasons else 1)
        if (scope := request.query.get("scope", "all")) not in ("all", "group"):
            return self._answer([f"unknown scope {scope[:40]!r}: all (the default) or group"], 400)
        return self._answer(self._membership() if scope == "group" else reasons)

    @staticmethod
    def _answer(reasons: list[str], status: int = 503) -> web.Response:
        body = {"status": "ok"} if not reasons else {"status": "unavailable", "reasons": reasons}
        return web.Response(
            status=status if reasons else 200, text=json.dumps(body), content_type="application/json"
        )
