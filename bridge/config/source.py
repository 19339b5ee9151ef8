"""`source`: the topics, their format and schemas, where a new group starts."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from bridge import timestamps
from bridge.config.base import Format, Model, TlsConfig, check_url, one_line_secret, shown_default


class TopicConfig(Model):
    """One source topic; ``schema`` is a local .avsc for plain (unframed) Avro."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )

    name: str = Field(min_length=1)
    """The topic."""
    format: Format | None = Field(default=None, json_schema_extra=shown_default("`source.format`"))
    """`json` or `avro` for this topic."""
    schema_path: str | None = Field(default=None, alias="schema")
    """An `.avsc` file: the topic holds plain Avro binary written with this schema, no framing.
    Without it an `avro` topic uses the schema registry wire format. A relative path is taken
    from the config file's folder (then, if not found there, from the current directory).
    """


class SchemaRegistryConfig(Model):
    url: str
    """The registry's URL (Confluent Schema Registry, Karapace, Apicurio's ccompat API)."""
    basic_auth: SecretStr | None = None
    """`user:password` for the registry; never logged."""
    basic_auth_file: str | None = None
    """A file holding `user:password` (a mounted Secret), read at start-up instead of `basic_auth`."""
    tls: TlsConfig = TlsConfig()
    """Certificate checks for the registry's HTTPS endpoint."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("basic_auth")
    @classmethod
    def _user_and_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and ":" not in value.get_secret_value():
            raise ValueError("expected USER:PASSWORD (no colon found)")
        return value and one_line_secret(value)

    @model_validator(mode="after")
    def _credentials_once(self) -> SchemaRegistryConfig:
        if self.basic_auth and self.basic_auth.get_secret_value() and urlsplit(self.url).username:
            raise ValueError("credentials both in url and in basic_auth; give them once (basic_auth)")
        return self


class SourceConfig(Model):
    topics: list[str | TopicConfig] = Field(min_length=1)
    """Topics to consume (at least one): names, or objects `{name, format, schema}` (see
    [Avro](avro.md)); both forms can be mixed.
    """
    format: Format = "json"
    """Default format of the topics: `json` (a UTF-8 JSON object per record) or `avro`."""
    schema_registry: SchemaRegistryConfig | None = None
    """A Confluent-compatible schema registry, for `avro` topics without a local `schema`."""
    avro_max_depth: int = Field(default=64, ge=1, le=200)
    """The deepest an Avro value may nest records, arrays and maps; a deeper record is
    dead-lettered (class `decode`). Bounds what a recursive schema's data can make the reader
    do (see [Reliability](reliability.md#hostile-input)).
    """
    start_from: str | None = None
    """Where a group starts on partitions it has never committed: `earliest`, `latest`, or an
    ISO-8601 time (the first record at or after it). Sets `auto.offset.reset` (so do not set
    both). See [Operations](operations.md) for the risks.
    """

    @field_validator("start_from")
    @classmethod
    def _start(cls, value: str | None) -> str | None:
        if value is None or value in ("latest", "earliest"):
            return value
        try:
            timestamps.normalise_ms(value)
        except ValueError as exc:
            raise ValueError("latest, earliest or an ISO-8601 time") from exc
        return value

    @property
    def start_at_ms(self) -> int | None:
        if self.start_from in (None, "latest", "earliest"):
            return None
        return timestamps.normalise_ms(self.start_from)[1]

    @property
    def topic_names(self) -> list[str]:
        return [t if isinstance(t, str) else t.name for t in self.topics]

    def resolved(self) -> list[TopicConfig]:
        """Every topic as a TopicConfig with its format filled in."""
        return [
            TopicConfig(name=t, format=self.format)
            if isinstance(t, str)
            else TopicConfig(name=t.name, format=t.format or self.format, schema=t.schema_path)
            for t in self.topics
        ]

    @model_validator(mode="after")
    def _avro_needs_a_schema(self) -> SourceConfig:
        names = self.topic_names
        if len(set(names)) != len(names):
            raise ValueError("source.topics: a topic is listed twice")
        for index, topic in enumerate(self.resolved()):
            where = f"source.topics[{index}] ({topic.name})"
            if topic.schema_path and topic.format != "avro":
                raise ValueError(f"{where}.schema: only for format avro")
            if topic.format == "avro" and not topic.schema_path and self.schema_registry is None:
                raise ValueError(f"{where}: format avro without a schema needs source.schema_registry.url")
        return self
