"""Reading the file: strict YAML, ``${ENV}`` and ``${file:...}`` expansion, validation,
and problems described by file, rule and field."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from bridge.config.document import BridgeConfig, cross_problems
from bridge.config.secrets import read_secret_file, read_secret_files
from bridge.config.wording import said
from bridge.errors import ConfigError

_ENV = re.compile(r"\$(\$)?\{(?:file:([^}]+)|([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?)\}")


def expand_env(node: Any, env: Mapping[str, str], problems: list[str] | None, path: str = "") -> Any:
    """Replace ``${VAR}``, ``${VAR:-default}`` and ``${file:/path}`` (a file's content, for
    container secrets) in every string; ``$${`` is a literal ``${``."""
    if isinstance(node, dict):
        return {k: expand_env(v, env, problems, _join(path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, env, problems, _item_path(path, i, v)) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def substitute(match: re.Match[str]) -> str:
        escaped, file, name, has_default, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        if file is not None:
            return read_secret_file(file.strip(), path, problems)
        if env.get(name):
            return env[name]
        if has_default:  # as in a shell, ${VAR:-default} also replaces an empty VAR
            return default or ""
        if name in env:
            return ""
        if problems is not None:  # None: lenient, for offline tools like `map`
            problems.append(f"{path}: environment variable {name} is not set")
        return ""

    return _ENV.sub(substitute, node)


def _item_path(path: str, index: int, item: Any) -> str:
    """``rules[2] (abandoned-sms)`` for a named rule, else ``path[index]``."""
    name = item.get("name") if isinstance(item, dict) and path == "rules" else None
    return f"{path}[{index}] ({name})" if isinstance(name, str) and "${" not in name else f"{path}[{index}]"


MAX_CONFIG_BYTES = 1 << 20
MAX_EXPANDED_NODES = 100_000
MAX_EXPANDED_BYTES = 8 << 20


class StrictLoader(yaml.SafeLoader):
    """YAML that cannot silently lose a key or blow up: a duplicate key is an error (the
    last one would win), and so is a document whose aliases expand to more than
    ``MAX_EXPANDED_NODES`` values or ``MAX_EXPANDED_BYTES`` of text (an alias bomb: a few
    lines, or one long string aliased many times, that ``${VAR}`` expansion, which copies
    every alias, would turn into gigabytes)."""

    def compose_document(self) -> Any:
        document = super().compose_document()
        sizes: dict[int, tuple[int, int]] = {}

        def expanded(node: Any) -> tuple[int, int]:  # each node once: aliases share their node
            if id(node) not in sizes:
                children = node.value if isinstance(node.value, list) else []
                pairs = [n for child in children for n in (child if isinstance(child, tuple) else (child,))]
                inner = [expanded(child) for child in pairs]
                text = len(node.value) if isinstance(node.value, str) else 0
                sizes[id(node)] = (1 + sum(n for n, _ in inner), text + sum(b for _, b in inner))
            return sizes[id(node)]

        if document is None:
            return document
        nodes, text = expanded(document)
        if nodes > MAX_EXPANDED_NODES or text > MAX_EXPANDED_BYTES:
            many = f"{MAX_EXPANDED_NODES:,} values" if nodes > MAX_EXPANDED_NODES else None
            problem = f"aliases expand to more than {many or f'{MAX_EXPANDED_BYTES >> 20} MB of text'}"
            raise yaml.composer.ComposerError(None, None, problem, document.start_mark)
        return document

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                problem = f"duplicate key {key!r} (the last one would silently win)"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_raw(path: str | Path, loader: type[StrictLoader] = StrictLoader) -> dict[str, Any]:
    """The parsed YAML mapping; ConfigError if it cannot be read or parsed."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror}"]) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{name}: larger than {MAX_CONFIG_BYTES >> 20} MB; not a configuration file?"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{name}: not UTF-8 text (byte {exc.start + 1} cannot be decoded)"]) from exc
    try:
        raw = yaml.load(text, Loader=loader)  # a SafeLoader: no arbitrary objects
    except RecursionError as exc:
        raise ConfigError([f"{name}: invalid YAML: nested too deeply"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        if "'\\t'" in problem:  # PyYAML's words for a tab where indentation goes
            problem = "a tab: YAML indents with spaces only (replace the tab by spaces)"
        raise ConfigError([f"{name}: invalid YAML{where}: {problem}"]) from exc
    if raw is None:
        raise ConfigError([f"{name}: empty (only comments, or nothing): write the sections in it"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{name}: the top level must be a mapping of sections (kafka:, source:, ...)"])
    return raw


def validate(expanded: dict[str, Any]) -> tuple[BridgeConfig | None, list[str]]:
    """The model, or None, and every problem: field errors and cross-section checks."""
    problems = cross_problems(expanded)
    try:
        config = BridgeConfig.model_validate(expanded)
    except ValidationError as exc:
        return None, describe_validation(exc, expanded, BridgeConfig) + problems
    return (None if problems else config), problems


def sections_of(expanded: dict[str, Any], running: BridgeConfig) -> BridgeConfig:
    """``running`` with each section of ``expanded`` outside ``rules`` that validates on its
    own put in its place (one that does not is left as it was): what a file whose rules
    are refused would change, so a rule's problem never hides a change a restart needs."""
    fields = BridgeConfig.model_fields
    found: dict[str, Any] = {}
    for name, info in fields.items():
        if name == "rules" or info.annotation is None:
            continue
        try:
            if name in expanded:
                found[name] = TypeAdapter(info.annotation).validate_python(expanded[name])
            elif not info.is_required():
                found[name] = info.get_default(call_default_factory=True)
        except ValidationError:
            continue
    return running.model_copy(update=found)


def read_expanded(
    path: str | Path, env: Mapping[str, str] | None = None, strict_env: bool = True
) -> tuple[dict[str, Any], list[str]]:
    """The file's mapping with ``${VAR}`` expanded, and the unset variables as problems
    (none when ``strict_env`` is false: they expand to empty strings)."""
    raw = read_raw(path)
    rules = raw.pop("rules", None)
    problems = [*unterminated_references({**raw, "rules": rules}), *rule_references(rules, "rules")]
    expanded = expand_env(raw, os.environ if env is None else env, problems if strict_env else None)
    read_secret_files(expanded, problems if strict_env else None)
    if rules is not None:  # never expanded: a rule's values come from the event ({{ }})
        expanded["rules"] = _literal(rules)
    return expanded, problems


def rule_references(node: Any, path: str) -> Iterator[str]:
    """``${...}`` inside ``rules:``: the environment's value would reach the command body
    (and ``map``'s and ``test``'s output, unredacted), and an unset one an empty string."""
    for where, text in _strings(node, path):
        if found := [m.group(0) for m in _ENV.finditer(text) if not m.group(1)]:
            yield (
                f"{where}: {found[0]} is not expanded inside rules (a rule's values come from the "
                "event: {{ expr }}); write $${ for a literal ${"
            )


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string value under ``node``, with its path (rules named beside their index)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, _join(path, str(key)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _strings(item, _item_path(path, index, item))
    elif isinstance(node, str):
        yield path, node


def _literal(node: Any) -> Any:
    """Inside rules ``$${`` is still a literal ``${``."""
    if isinstance(node, dict):
        return {key: _literal(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_literal(value) for value in node]
    return node.replace("$${", "${") if isinstance(node, str) else node


def unterminated_references(node: Any, path: str = "") -> Iterator[str]:
    """A ``${`` that starts no valid reference (``${CLIENT_ID`` without its ``}``) would
    otherwise be kept literally and sent."""
    for where, text in _strings(node, path):
        if "${" in _ENV.sub("", text).replace("$${", ""):
            unmatched = "a ${ without a matching } or a valid variable name"
            yield f"{where}: {unmatched}; write $${{ for a literal ${{"


def without_env_echoes(problems: list[str], env_problems: list[str]) -> list[str]:
    """Drop field errors at a path already reported as an unset variable."""
    unset = {_bare(p.split(": ")[0]) for p in env_problems}
    return [p for p in problems if _bare(p.split(": ")[0]) not in unset]


def _bare(path: str) -> str:
    return re.sub(r" \([^)]*\)", "", path)


def describe_validation(
    exc: ValidationError, raw: dict[str, Any], model: type[BaseModel] | None = None
) -> list[str]:
    """One line per error, in the project's words (:mod:`bridge.config.wording`; ``model``:
    the one validated, for the keys an unknown one was likely meant to be), with the rule's
    name beside its index."""
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        message = said(error, model)
        lines.append(f"{field_path(loc, raw)}: {message}" if loc else message)
    return lines


def field_path(loc: tuple[Any, ...], raw: Any) -> str:
    """``('rules', 2, 'emit')`` → ``rules[2] (abandoned-sms).emit``."""
    out = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"  # rules and topics are easier found by name
        else:
            out = _join(out, str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
