"""Templates: an ``emit`` node compiled into a function of the event context.

A string that is exactly ``"{{ expr }}"`` takes the typed value of the JMESPath
expression; text mixed with ``{{ }}`` renders as a string; all else is literal. A
template that yields null (a field the event does not have) leaves its key out and
is named among the holes its render is given, so the rule can say so
(``Command.missing``) and apply its ``on_missing``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jmespath.exceptions

from bridge.errors import MappingError
from bridge.rules.expressions import Evaluate, compile_expression, failure

_EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.S)
MISSING = object()  # a template that yielded null: its key is left out

Render = Callable[[dict[str, Any], list[str]], Any]  # (context, holes): a hole per null path


@dataclass(frozen=True, slots=True)
class Expression:
    text: str
    evaluate: Evaluate


def search(expr: Expression, context: dict[str, Any]) -> Any:
    try:
        return expr.evaluate(context)
    except (jmespath.exceptions.JMESPathError, TypeError, ValueError) as exc:
        raise MappingError(f"expression {expr.text!r} failed: {failure(exc)}") from exc


def compile_expr(text: str, where: str, problems: list[str]) -> Expression | None:
    try:
        return Expression(text, compile_expression(text))
    except jmespath.exceptions.JMESPathError as exc:
        reason = str(exc).splitlines()[0].removeprefix("Invalid jmespath expression: ").rstrip(": ")
        problems.append(f"{where}: invalid JMESPath {text!r}: {reason}")
        return None


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def template_paths(node: Any) -> list[str]:
    """The expressions of an ``emit`` node's templates, in order, each once."""
    if isinstance(node, dict):
        return list(dict.fromkeys(p for v in node.values() for p in template_paths(v)))
    if isinstance(node, list):
        return list(dict.fromkeys(p for v in node for p in template_paths(v)))
    return [m.group(1) for m in _EXPR.finditer(node)] if isinstance(node, str) else []


def compile_template(node: Any, where: str, problems: list[str]) -> Render:
    """Compile an ``emit`` node into a function of the event context; each expression
    that yields null (a field the event does not have) is added to the holes."""
    if isinstance(node, dict):
        items = [(k, compile_template(v, f"{where}.{k}", problems)) for k, v in node.items()]

        def render_dict(ctx: dict[str, Any], holes: list[str]) -> Any:
            out = {}
            for key, render in items:
                value = render(ctx, holes)
                if value is not MISSING:
                    out[key] = value
            return out

        return render_dict
    if isinstance(node, list):
        elements = [compile_template(v, f"{where}[{i}]", problems) for i, v in enumerate(node)]
        return lambda ctx, holes: [None if (v := r(ctx, holes)) is MISSING else v for r in elements]
    if not isinstance(node, str) or "{{" not in node:
        return lambda ctx, holes: node
    matches = list(_EXPR.finditer(node))
    if not matches:
        problems.append(f"{where}: unclosed '{{{{' in template")
        return lambda ctx, holes: node
    exprs = [compile_expr(m.group(1), where, problems) for m in matches]
    if any(e is None for e in exprs):
        return lambda ctx, holes: node
    parsed = [e for e in exprs if e is not None]
    literals = _EXPR.split(node)[::2]
    whole = len(matches) == 1 and matches[0].span() == (0, len(node))

    def render(ctx: dict[str, Any], holes: list[str]) -> Any:
        values = [search(expr, ctx) for expr in parsed]
        if None in values:  # the key is left out: never a text with a hole in it
            holes += [expr.text for expr, value in zip(parsed, values, strict=True) if value is None]
            return MISSING
        if whole:
            return values[0]  # the typed value
        return literals[0] + "".join(_as_text(v) + lit for v, lit in zip(values, literals[1:], strict=True))

    return render
