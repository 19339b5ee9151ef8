"""Secrets read from files: ``${file:/run/secrets/x}`` anywhere, and ``<field>_file`` for
the fields that hold a secret (a mounted Kubernetes Secret). Whatever a file gives is kept
in :func:`file_contents`, so that it is redacted wherever it would be printed (a
``${file:/proc/self/environ}`` in a topic's name, librdkafka quoting a property)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.config.base import at_path

_FILE_CONTENTS: set[str] = set()


def file_contents() -> frozenset[str]:
    """Every text a secret file gave (its final line end removed), to be redacted."""
    return frozenset(_FILE_CONTENTS)


def read_secret_file(file: str, path: str, problems: list[str] | None) -> str:
    """The content of a mounted secret (``${file:/run/secrets/x}``), without its final newline
    (line ends read as a text file reads them)."""
    text, reason = _file_text(file)
    if text is None:
        if problems is not None:
            shown = file if file.isprintable() else repr(file)  # a NUL, a line end: escaped
            problems.append(f"{path}: cannot read secret file {shown}: {reason}")
        return ""
    return _one_text(text)


def _one_text(text: str) -> str:
    """Line ends read as a text file reads them, the final one removed."""
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def _file_text(file: str) -> tuple[str | None, str]:
    """A file's text as it is, or None and why it cannot be read."""
    try:
        text = Path(file).read_bytes().decode("utf-8")
    except OSError as exc:
        return None, exc.strerror or str(exc)
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except ValueError:  # a NUL in the path
        return None, "not a path (it holds a NUL character)"
    _FILE_CONTENTS.add(_one_text(text))
    return text, ""


# The fields that hold a secret; each may also be read from a file: ``<field>_file``.
SECRET_PATHS: tuple[tuple[str, ...], ...] = (
    ("intilery", "auth_token"),
    ("source", "schema_registry", "basic_auth"),
    ("intilery", "rate_limit", "redis", "password"),
    ("delivery", "state", "redis", "password"),
)


def read_secret_files(expanded: dict[str, Any], problems: list[str] | None) -> None:
    """``auth_token_file: /var/run/secrets/...`` (a mounted Secret) puts the file's content
    in ``auth_token``, as it is: the field's own checks then apply (one trailing newline
    removed with a warning, control characters refused). Likewise the registry's
    ``basic_auth_file`` and Redis' ``password_file``."""
    for *sections, field in SECRET_PATHS:
        node = at_path(expanded, sections)
        if not isinstance(node, dict) or node.get(f"{field}_file") is None:
            continue
        where, file = ".".join([*sections, f"{field}_file"]), node[f"{field}_file"]
        if field in node:
            problem = f"{where}: {field} is set too; give one of them"
        elif not isinstance(file, str) or not file:
            problem = f"{where}: expected the path of a file"
        else:
            text, reason = _file_text(file)
            node[field] = text or ""
            if text is not None:
                continue
            # as an unset variable: named by the field it fills, which is left empty, so
            # that `check` without --require-env can note it and go on
            problem = f"{'.'.join([*sections, field])}: cannot read {field}_file {file}: {reason}"
        if problems is not None:
            problems.append(problem)
