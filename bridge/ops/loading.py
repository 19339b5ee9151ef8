"""Load a configuration file with everything it names: the model, the compiled
rules and the decoders (local Avro schemas).

Takes a path; gives what ``run`` and ``check`` need, or what offline ``map``
needs (only ``source`` and ``rules``, no secrets); raises
:class:`~bridge.errors.ConfigError` listing every problem found, each naming the
file, the rule or topic, and the field.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from bridge import logs
from bridge.config import (
    SECRET_PATHS,
    BridgeConfig,
    SourceConfig,
    as_dict,
    at_path,
    file_contents,
    raw_topic_names,
    read_expanded,
    validate,
    without_env_echoes,
)
from bridge.decode.decoder import Decoder
from bridge.decode.registry import registry_for
from bridge.errors import ConfigError
from bridge.kafka.consumer import consumer_config, librdkafka_problems
from bridge.rules.mapping import Mapper, compile_rules

T = TypeVar("T")


class Loaded(NamedTuple):
    config: BridgeConfig
    mapper: Mapper
    decoder: Decoder


def _refusing_anything(function: Callable[..., T]) -> Callable[..., T]:
    """Whatever a file sets off while it is read, validated and compiled is a problem of that
    file, named in a line of its own (``check``, ``map`` and a reload refuse it; the reloader
    goes on), never an exception that ends the verb as a crash."""

    @functools.wraps(function)
    def loading(path: str, *args: Any, **kwargs: Any) -> T:
        try:
            return function(path, *args, **kwargs)
        except ConfigError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__} (the bridge's own failure: please report it with the file)"
            raise ConfigError([f"{path}: cannot be loaded: {reason}"]) from exc

    return loading


@_refusing_anything
def load(path: str, unset_secrets: list[str] | None = None, env: Mapping[str, str] | None = None) -> Loaded:
    """The one way a configuration is loaded, by every verb and by the tests. With
    ``unset_secrets`` (``check`` without ``--require-env``) an unset variable in a
    secret field is no problem but a note added there, so rules can be checked where
    the secrets are not. ``env``: the variables to expand (default the environment)."""
    expanded, env_problems = read_expanded(path, env)
    register_secrets(expanded)  # before anything could echo them, even in an error message
    noted = [] if unset_secrets is None else _stand_ins(expanded, env_problems)
    config, problems = validate(expanded)
    mapper, rule_problems = compile_rules(expanded.get("rules"), raw_topic_names(expanded))
    problems = without_env_echoes(problems + rule_problems, env_problems)
    if unset_secrets is not None:
        unset_secrets += [p for p in env_problems if is_secret_field(p) or p in noted]
    problems = [p for p in env_problems if unset_secrets is None or p not in unset_secrets] + problems
    decoder = None
    if config is not None:
        problems += _missing_ca_files(config)
        unset = any(p.startswith("intilery.auth_token:") for p in env_problems)
        if not config.intilery.auth_token.get_secret_value().strip() and not unset:
            problems.append("intilery.auth_token: empty")  # set, but to nothing: every request 401
        problems += librdkafka_problems(consumer_config(config.kafka, config.source.start_from))
        try:
            decoder = Decoder(config.source, path, registry_for(config.source))
        except ConfigError as exc:
            problems += [p.removeprefix(f"{path}: ") for p in exc.problems]
    if problems or config is None or decoder is None:
        raise ConfigError([f"{path}: {p}" for p in problems])
    unverified = config.unverified_tls()
    mapper.warnings += [f"{where}: TLS verification of {service} is off" for service, where in unverified]
    for fields in SECRET_PATHS:
        secret = at_path(expanded, list(fields))
        if isinstance(secret, str) and secret.endswith("\n"):
            where = ".".join(fields)
            mapper.warnings.append(f"{where}: one trailing newline removed (a file written by echo?)")
    return Loaded(config, mapper, decoder)


def load_offline(path: str) -> tuple[SourceConfig, Mapper]:
    """What the offline verbs use (``source``, the rules), as :func:`load_offline_config`."""
    config, mapper = load_offline_config(path)
    return config.source, mapper


def load_offline_config(path: str) -> tuple[BridgeConfig, Mapper]:
    """The configuration and the rules for the offline verbs, loaded as ``check`` loads the
    whole file: what ``check`` refuses they refuse, with the same lines; as for ``check``,
    unset variables are no problem (their defaults, or a text naming them, stand in), so
    they need no deployment's variables nor its secrets."""
    loaded = load(path, unset_secrets=[])
    if loaded.decoder.registry is not None:
        loaded.decoder.registry.close()  # they build their own decoder, for their own flags
    return loaded.config, loaded.mapper


def _stand_ins(expanded: dict[str, Any], env_problems: list[str]) -> list[str]:
    """For ``check``, which needs no deployment's variables as it needs no secrets: a field
    that was only an unset variable is left out, so its default stands in, and where it
    has none (``kafka.bootstrap.servers``) a text naming the variable does; the problems
    of the fields so filled, to be noted rather than refused."""
    noted = []
    for problem in env_problems:
        if is_secret_field(problem) or not problem.endswith(" is not set"):
            continue  # a secret expands to empty, noted as such; a file is the file's problem
        keys = problem.split(": ")[0].split(".")
        parent, key = _parent(expanded, keys[:-1]), keys[-1]
        if key not in parent and ".".join(keys[-2:]) in _parent(expanded, keys[:-2]):
            parent, key = _parent(expanded, keys[:-2]), ".".join(keys[-2:])  # kafka's dotted keys
        if parent.get(key) != "":
            continue
        del parent[key]
        if _refused(expanded, problem):  # no default: a text naming the variable
            parent[key] = "unset-" + problem.rsplit(" variable ", 1)[-1].split()[0]
        if _refused(expanded, problem):
            parent[key] = ""  # not even text will do (a number): refused, naming the variable
            continue
        noted.append(problem)
    return noted


def _refused(expanded: dict[str, Any], problem: str) -> bool:
    """Whether validation refuses the field ``problem`` names, as ``expanded`` has it now."""
    field = problem.split(": ")[0]
    return any(line.startswith(field + ":") for line in validate(expanded)[1])


def _parent(node: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    for key in keys:
        node = as_dict(node.get(key))
    return node


def _missing_ca_files(config: BridgeConfig) -> list[str]:
    registry = config.source.schema_registry
    tls = {
        "intilery.tls": config.intilery.tls,
        "source.schema_registry.tls": registry.tls if registry else None,
    }
    return [
        f"{where}.ca_file: no such file: {t.ca_file}"
        for where, t in tls.items()
        if t is not None and t.ca_file is not None and not Path(t.ca_file).is_file()
    ]


def is_secret_field(problem: str) -> bool:
    """Whether a problem line (``field: reason``) is about a field that holds a secret."""
    field = problem.split(": ")[0]
    kafka_secret = field.startswith("kafka.") and any(part in field for part in SECRET_KEY_PARTS)
    return field in SECRET_FIELDS or kafka_secret


SECRET_FIELDS = tuple(".".join(path) for path in SECRET_PATHS)
SECRET_KEY_PARTS = ("password", "secret", "sasl.oauthbearer.config", "basic.auth.user.info")


def _url_password(url: Any) -> str | None:
    try:
        return urlsplit(str(url or "")).password
    except ValueError:  # not a URL (refused by validation, named there)
        return None


def register_secrets(expanded: dict[str, Any]) -> None:
    """Every secret the (expanded) configuration holds, for redaction in logs and messages."""

    intilery, kafka = as_dict(expanded.get("intilery")), as_dict(expanded.get("kafka"))
    registry = as_dict(as_dict(expanded.get("source")).get("schema_registry"))
    redis = as_dict(as_dict(intilery.get("rate_limit")).get("redis"))
    values = [at_path(expanded, list(fields)) for fields in SECRET_PATHS]
    for url in (redis.get("url"), registry.get("url"), intilery.get("url")):  # scheme://user:password@host
        values.append(_url_password(url))
    values += [v for k, v in kafka.items() if any(part in str(k) for part in SECRET_KEY_PARTS)]
    values += file_contents()  # whatever a ${file:} gave, in any field
    for value in values:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = str(value).removesuffix("\n").removesuffix("\r")  # as the field keeps it
            logs.register_secret(value)
            if ":" in value:  # user:password: the password alone too
                logs.register_secret(value.split(":", 1)[1])
