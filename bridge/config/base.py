"""What every configuration model shares: strict frozen models whose field docstrings
are their descriptions, durations, URLs, and helpers for raw (unvalidated) YAML."""

from __future__ import annotations

import math
import re
import ssl
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class Model(BaseModel):
    # A docstring under a field is its description: the JSON Schema (`schema`) shows it.
    # A number must be finite: ``.inf`` passed as a time-out dead-lettered every command.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False)


Format = Literal["json", "avro"]


def shown_default(text: str) -> dict[str, Any]:
    """What the reference shows as a field's default when its value says too little
    (``None`` for "the account id", "unlimited", "all source topics")."""
    return {"x-shown-default": text}


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``, ``500ms`` or a number of seconds → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (text := value.replace(" ", "")) and _DURATION_PART.sub("", text) == "":
        seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))
    else:
        raise ValueError("a duration such as 90s, 15m, 2h, 1d or 1h30m")
    if not math.isfinite(seconds):
        raise ValueError("must be a finite duration")
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping, else an empty one (for raw, unvalidated YAML)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def at_path(node: Any, keys: list[str]) -> Any:
    """``node[k1][k2]...`` in raw YAML, or None where a key or a mapping is missing."""
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def one_line_secret(value: SecretStr, header: bool = False) -> SecretStr:
    """A secret as a file written with ``echo`` holds it: one trailing newline removed (the
    loader warns), any other control character refused; ``header``: ASCII only."""
    secret = value.get_secret_value()
    secret = secret[:-1].removesuffix("\r") if secret.endswith("\n") else secret
    if any(ord(c) < 32 or ord(c) == 127 for c in secret):
        raise ValueError("contains a control character (a line break?); the value is not shown")
    if header and not secret.isascii():
        raise ValueError("contains a character that is not ASCII, which a header cannot carry")
    return SecretStr(secret)


def check_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class TlsConfig(Model):
    """Certificate checks for an HTTPS endpoint: on by default."""

    verify: bool = True
    """Check the server's certificate. `false` turns checks off and logs `tls_verification_disabled`
    (warning) at start-up.
    """
    ca_file: str | None = Field(default=None, json_schema_extra=shown_default("system CAs"))
    """A PEM bundle to trust instead of the system's CAs (a private CA, a TLS-inspecting proxy);
    must exist at start-up.
    """

    @model_validator(mode="after")
    def _ca_needs_verify(self) -> TlsConfig:
        if self.ca_file is not None and not self.verify:
            raise ValueError("ca_file is unused with verify: false; remove one")
        return self

    def context(self) -> ssl.SSLContext | bool:
        """What an HTTP client takes: False (no checks), or the context to verify with."""
        if not self.verify:
            return False
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True
