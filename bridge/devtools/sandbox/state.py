"""The sandbox's state: what it accepted, the faults it injects, its token bucket, and the
answer to each request (the HTTP side is in :mod:`.server`)."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from bridge.devtools.sandbox.validation import ACTIONS, MAX_REQUEST_BYTES, validate

_PATH = re.compile(r"^/track/(?P<client>[^/]+)/(?P<account>[^/]+)/(?P<brand>[^/]+)/v1/(?P<action>[a-z]+)$")
DROP = "drop"
FOREVER = 2**62


@dataclass
class Faults:
    status: int | None = None
    count: int = 0
    retry_after: float | str | None = None  # seconds, or an HTTP date
    latency_ms: float = 0.0
    drop: int = 0
    reject: dict[str, Any] | None = None  # calls whose root fields equal these get a 400
    unavailable: dict[str, Any] | None = None  # ... get a 503


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; a rate of 0 means no limit."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


Answer = tuple[int, dict[str, str], dict[str, Any]]


MAX_KEPT = 200_000  # requests (and attempts) the sandbox lists at most


class SandboxState:
    """Everything the sandbox knows; thread-safe, independent of the HTTP layer."""

    def __init__(self, token: str, rate: float = 100, burst: int = 500, keep: int = MAX_KEPT) -> None:
        self.token = token
        self.bucket = TokenBucket(rate, burst)
        self.faults = Faults()
        self.accepted: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.keep = keep  # the most recent requests and attempts each list keeps
        self._seen = {"requests": 0, "attempts": 0}  # each list's count since cleared
        self.refusing = False  # not listening: requests on connections still open are dropped
        self.open = 0  # requests being answered now (their latency included)
        self._lock = threading.Lock()

    def set_faults(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Merge ``spec`` into the faults; a status without a count lasts until cleared.

        Raises ValueError naming what is wrong with ``spec``.
        """
        unknown = sorted(set(spec) - set(Faults.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        if spec.get("status") is not None and "count" not in spec:
            spec = {**spec, "count": FOREVER}
        with self._lock:
            try:
                faults = Faults(**{**asdict(self.faults), **spec})
                _check_faults(faults)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"bad faults: {exc}") from exc
            self.faults = faults
            return asdict(self.faults)

    def current_faults(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.faults)

    def clear(self) -> None:
        with self._lock:
            self.accepted.clear()
            self.attempts.clear()
            self._seen = {"requests": 0, "attempts": 0}

    def latency(self) -> float:
        return self.faults.latency_ms / 1000

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Answer | str:
        """The answer to a request; each attempt is kept with the count of requests open as it
        arrived, itself included (until :meth:`answered`), so a test reads the concurrency."""
        with self._lock:
            self.open += 1
            answer = self._answer(path, headers, body)
            status = 0 if answer == DROP else answer[0]
            self._kept("attempts", {"at": time.time(), "path": path, "status": status, "open": self.open})
            return answer

    def answered(self) -> None:
        """A request :meth:`handle` took has had its answer (or been dropped)."""
        with self._lock:
            self.open -= 1

    def _kept(self, which: str, item: dict[str, Any]) -> None:
        """Add to a list, numbered; past :attr:`keep` items the oldest half is forgotten (a
        long run kept every request for ever)."""
        items = self.accepted if which == "requests" else self.attempts
        items.append({"seq": self._seen[which], **item})
        self._seen[which] += 1
        if len(items) > self.keep:
            del items[: len(items) - self.keep // 2]

    def _injected(self, path: str) -> Answer | str | None:
        """A fault injected for this request (a dropped connection, a status), if any."""
        faults = self.faults
        if self.refusing:
            return DROP
        if faults.drop > 0:
            faults.drop -= 1
            return DROP
        if faults.count > 0 and faults.status is not None:
            faults.count -= 1
            extra = {"Retry-After": _header(faults.retry_after)} if faults.retry_after is not None else {}
            if 300 <= faults.status < 400:  # as a moved endpoint answers
                extra["Location"] = f"https://moved.invalid{path}"
            return faults.status, extra, {"success": False, "message": f"injected fault {faults.status}"}
        return None

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> Answer | str:
        if (injected := self._injected(path)) is not None:
            return injected
        match = _PATH.match(path)
        if not match or match["action"] not in ACTIONS:
            return fail(404, "unknown path")
        if match["client"] != match["client"].lower() or match["account"] != match["account"].lower():
            return fail(404, "clientId and accountId must be lower case")
        if match["brand"] != match["brand"].upper():
            return fail(404, "BRANDID must be upper case")
        token = headers.get("auth-token")
        if not token:
            return fail(403, "no token supplied")
        if token != self.token:
            return fail(403, "token not authorised for this account/brand")
        if not self.bucket.take():
            return fail(429, "rate limit exceeded")
        if len(body) > MAX_REQUEST_BYTES:
            return fail(413, "request too large")
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return fail(400, "content-type must be application/json")
        try:
            payload = json.loads(body)
        except ValueError:
            return fail(400, "body is not valid JSON")
        except RecursionError:
            return fail(400, "body is nested too deeply")
        if _matching(self.faults.unavailable, payload):
            return fail(503, "sandbox unavailable rule matched")
        problem = validate(match["action"], payload)
        if problem or _matching(self.faults.reject, payload):
            return fail(
                400, problem or "sandbox reject rule matched " + ", ".join(sorted(self.faults.reject or {}))
            )
        event_id = str(uuid.uuid4())
        self._kept(
            "requests",
            {
                "at": time.time(),
                "action": match["action"],
                "body": payload,
                "eventId": event_id,
                **{name: headers[name] for name in ("traceparent", "tracestate") if name in headers},
            },
        )
        return 200, {}, {"success": True, "eventId": event_id}

    def listing(self, which: str, since: int) -> dict[str, Any]:
        with self._lock:
            items = self.accepted if which == "requests" else self.attempts
            forgotten = self._seen[which] - len(items)
            return {which: items[max(0, since - forgotten) :], "total": self._seen[which]}


def _matching(rule: dict[str, Any] | None, payload: Any) -> bool:
    """Whether a call of the request has every field of ``rule`` with its value."""
    if not rule or not isinstance(payload, dict):
        return False
    return any(all(call.get(f) == v for f, v in rule.items()) for call in payload.get("batch", [payload]))


def _check_faults(faults: Faults) -> None:
    if faults.status is not None and not (isinstance(faults.status, int) and 100 <= faults.status <= 599):
        raise ValueError("status must be an HTTP status code")
    for name in ("count", "drop"):
        if not isinstance(getattr(faults, name), int) or getattr(faults, name) < 0:
            raise ValueError(f"{name} must be a whole number >= 0")
    if not isinstance(faults.latency_ms, int | float) or faults.latency_ms < 0:
        raise ValueError("latency_ms must be a number >= 0")
    for name in ("reject", "unavailable"):
        if getattr(faults, name) is not None and not isinstance(getattr(faults, name), dict):
            raise ValueError(f"{name} must be an object of field: value")
    if faults.retry_after is not None and not isinstance(faults.retry_after, int | float | str):
        raise ValueError("retry_after must be seconds or an HTTP date")


def _header(retry_after: float | str) -> str:
    return retry_after if isinstance(retry_after, str) else f"{retry_after:g}"


def fail(status: int, message: str) -> Answer:
    return status, {}, {"success": False, "message": message}
