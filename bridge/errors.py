"""One error hierarchy for the whole bridge.

::

    BridgeError
    ├── ConfigError              the file is refused at start-up (one line per problem)
    ├── RecordError              permanent for one record: it goes to the dead-letter topic
    │   ├── DecodeError          bytes that are not an event          (class ``decode``)
    │   ├── MappingError         an event the rules cannot turn into valid commands
    │   │   │                                                          (class ``mapping``)
    │   │   └── MissingFields    a template's fields absent, its rule's on_missing: dead_letter
    │   ├── RejectedError        Intilery refused the command (4xx)    (class ``rejected``)
    │   └── InternalError        an exception nobody expected, caught at the record boundary
    │                                                              (class ``internal``)
    ├── BrokerError              Kafka refused or did not answer what a verb asked (exit 4)
    │   └── TimeLookupFailed     a look-up by time, even when asked again
    ├── DeliveryError            not the record's fault: retry, never dead-letter
    │   ├── RetryableError       connection errors, timeouts, 408, 429, 5xx
    │   └── SetupError           3xx: intilery.url is wrong; pause everything, probe
    │       └── AuthError        401/403: the credentials are wrong, the same

Two outcomes that are no errors live outside the tree: a command not to be sent
(:class:`bridge.model.Withheld`, a value the sender returns: ``stale``, ``incomplete``),
and SchemaNotCached (bridge.decode.avro), a signal that a record's Avro schema is not
fetched yet, so its lane fetches it first (never raised past the pipeline).

Foreign exceptions (httpx, json, jmespath, confluent-kafka) are translated once,
at the edge that meets them, with ``raise ... from exc``: confluent-kafka's only
inside ``bridge.kafka``. An error is never changed once raised: ``for_rule`` gives
a copy that names the rule.
"""

from __future__ import annotations

import os


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is refused; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def cannot_listen(field: str, host: str, port: int, exc: OSError) -> ConfigError:
    """A port that cannot be bound (another process has it): one line naming the setting."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return ConfigError([f"{field}: cannot listen on {host}:{port}: {reason}"])


class RecordError(BridgeError):
    """A permanent failure of one record; it is dead-lettered with this reason."""

    error_class = "record"

    def __init__(self, reason: str, *, rule: str | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule
        self.status = status

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("reason", "rule", "status") and name in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.{name} is fixed once raised: use for_rule()")
        super().__setattr__(name, value)

    def for_rule(self, rule: str) -> RecordError:
        """The same failure, named by ``rule``."""
        return type(self)(self.reason, rule=rule, status=self.status)


class DecodeError(RecordError):
    error_class = "decode"


class MappingError(RecordError):
    error_class = "mapping"


class MissingFields(MappingError):
    """A template names fields the event does not have, and its rule's ``on_missing`` is
    ``dead_letter``; ``fields``: the templates' expressions, as the rule writes them."""

    def __init__(self, fields: tuple[str, ...], *, rule: str | None = None) -> None:
        super().__init__(
            f"fields absent from the event: {', '.join(fields)} (on_missing: dead_letter)", rule=rule
        )
        self.fields = fields

    def for_rule(self, rule: str) -> RecordError:
        return MissingFields(self.fields, rule=rule)


class RejectedError(RecordError):
    error_class = "rejected"


class CappedError(RecordError):
    """A command over a frequency cap (``delivery.caps``): dead-lettered alone, naming the
    cap (``x-bridge-cap``), so that a redrive sends it once the window has passed."""

    error_class = "capped"

    def __init__(
        self, reason: str, *, rule: str | None = None, status: int | None = None, cap: str = ""
    ) -> None:
        super().__init__(reason, rule=rule, status=status)
        self.cap = cap

    def for_rule(self, rule: str) -> RecordError:
        return CappedError(self.reason, rule=rule, cap=self.cap)


class HeldError(RecordError):
    """A command past its rule's flood breaker (``max_per_minute``): dead-lettered alone, so
    that a redrive sends it once someone has looked."""

    error_class = "held"


class InternalError(RecordError):
    """Any other exception one record raised (OverflowError, RecursionError, MemoryError, a
    bug): the record is dead-lettered with the exception's type rather than halt its partition."""

    error_class = "internal"


class BrokerError(BridgeError):
    """Kafka refused or did not answer a request a verb needs (a ``replay``'s window, the
    demo's topics): the verb ends in one line, exit 4."""


class TimeLookupFailed(BrokerError):
    """The broker did not answer a look-up by time, even when asked again."""


class DeliveryError(BridgeError):
    """A failure to deliver that says nothing about the record; retried."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class RetryableError(DeliveryError):
    pass


class SetupError(DeliveryError):
    """Intilery's answer says the setup is wrong, not the record (a redirect: ``intilery.url``
    is out of date): every request is held and one at a time probes until one is taken."""


class AuthError(SetupError):
    """401/403: the credentials are refused."""
