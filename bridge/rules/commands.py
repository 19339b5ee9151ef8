"""Intilery's commands as a body must name them, and the contract each keeps.

Takes a command body (as a rule writes it, or as rendered); gives the field it breaks
and why (:func:`command_problem`), or the command a name was meant to be
(:func:`misspelt_command`): a name that is not exactly a command but close to one
would go out as a plain track event and no message would be sent.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any

SEND_COMMANDS = frozenset({"send_email", "send_sms", "send_print", "send_push"})
COMMANDS = SEND_COMMANDS | {"start_journey"}
KNOWN_EVENTS = COMMANDS | {"identify"}  # named in lower case, whatever case a rule uses


def is_dynamic(value: Any) -> bool:
    """A template (rendered per event), not a literal."""
    return isinstance(value, str) and "{{" in value


def command_problem(body: dict[str, Any], *, literal: bool) -> tuple[str, str] | None:
    """The (field, reason) a body breaks per the Intilery contract, if any.

    With ``literal`` the body is the rule as written: templated fields may still
    render, so only absent or literally empty required fields count.
    """

    def missing(value: Any) -> bool:
        if literal and is_dynamic(value):
            return False
        return value is None or value == "" or (isinstance(value, str) and not value.strip())

    event = body.get("event")
    if missing(event) or (event is not None and not isinstance(event, str)):
        return "event", "required, a non-empty string"
    if literal and is_dynamic(event):
        return None
    lower = str(event).lower()
    name = lower if lower in KNOWN_EVENTS else str(event)
    if name in KNOWN_EVENTS:
        if missing(body.get("userId")):
            return "userId", f"required for {name}"
    elif missing(body.get("userId")) and missing(body.get("anonymousId")):
        return "userId", "userId or anonymousId required for a track event"
    if name in SEND_COMMANDS and missing(body.get("assetId")):
        return "assetId", f"required for {name}"
    if name == "start_journey":
        properties = body.get("properties")
        if literal and is_dynamic(properties):
            return None
        if not isinstance(properties, dict) or missing(properties.get("journeyIdToTrigger")):
            return "properties.journeyIdToTrigger", "required for start_journey"
    return None


def misspelt_command(event: Any) -> tuple[str, str] | None:
    """A literal event name that is not a command but close to one: the same but for case
    aside (``Send Email``, ``send-email``, ``"send_email "``) or a typo away (``send_smss``).
    It would be sent as a plain track event and no message would ever go out. The same
    check runs on rendered names (:func:`finish_command`)."""
    if not isinstance(event, str) or is_dynamic(event):
        return None
    near = _near_command(event)
    if near is None:
        return None
    return "event", f"{event!r} is not a command; did you mean {near}? (as written, a plain track event)"


@functools.lru_cache(maxsize=1024)  # the track events' names a rule renders, few and repeated
def _near_command(event: str) -> str | None:
    if event.lower() in KNOWN_EVENTS:
        return None  # exactly a command (any case is accepted and sent lower case)
    name = re.sub(r"[\s_-]+", "_", event.strip().lower())
    if name in KNOWN_EVENTS:
        return name
    close = difflib.get_close_matches(name, sorted(KNOWN_EVENTS), n=1, cutoff=0.8)
    return close[0] if close else None
