"""JMESPath expressions, compiled for the hot path.

Takes an expression's text; gives a function of the event. The common subset
rules use (field paths, literals, ``@``, comparisons, ``&&``, ``||``, ``!``) is
compiled into plain Python closures with exactly JMESPath's semantics (the
tests compare both on generated events); everything else runs on jmespath's
own interpreter, built once rather than per search. Raises jmespath's
ParseError for bad syntax, and UnknownFunctionError for a function JMESPath does
not have or one called with the wrong number of arguments (which jmespath itself
finds only when the expression runs: every record would fail); evaluation raises
what jmespath raises, and :func:`failure` says why without the value it failed on.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable
from numbers import Number
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath.functions import Functions
from jmespath.lexer import Lexer
from jmespath.visitor import Options, TreeInterpreter

Evaluate = Callable[[Any], Any]
_INTERPRETER = TreeInterpreter(Options())
_FUNCTIONS: dict[str, Any] = Functions.FUNCTION_TABLE
_ORDERING = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


def compile_expression(text: str) -> Evaluate:
    ast: Any = jmespath.compile(text).parsed
    _check_functions(ast)
    fast = _compile(ast)
    if fast is not None:
        return fast
    return lambda value: _INTERPRETER.visit(ast, value)


def _check_functions(node: dict[str, Any]) -> None:
    """Every function called exists and gets as many arguments as it takes."""
    if node["type"] == "function_expression":
        name, given = node["value"], len(node["children"])
        spec = _FUNCTIONS.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, sorted(_FUNCTIONS), n=1)
            hint = f"; did you mean {close[0]}()?" if close else ""
            raise jmespath.exceptions.UnknownFunctionError(f"unknown function {name}(){hint}")
        signature = spec["signature"]
        variadic = bool(signature) and signature[-1].get("variadic", False)
        if given < len(signature) or (given > len(signature) and not variadic):
            takes = f"{len(signature)}{' or more' if variadic else ''}"
            raise jmespath.exceptions.UnknownFunctionError(
                f"{name}() takes {takes} argument{'s' if len(signature) != 1 else ''}, given {given}"
            )
    for child in node.get("children", ()):
        if isinstance(child, dict):
            _check_functions(child)


_COMPARATORS = {"eq", "ne", "lt", "gt", "lte", "gte"}


def quoted_field_comparisons(text: str) -> list[str]:
    """Double-quoted names beside a comparison (``type == "booking_abandoned"``): in
    JMESPath a double-quoted string is a field name, so such a rule almost never
    matches; the value was meant as ``'booking_abandoned'``."""
    try:
        tokens = list(Lexer().tokenize(text))
    except jmespath.exceptions.JMESPathError:
        return []  # the compiler reports bad syntax
    return [
        token["value"]
        for before, token, after in zip([None, *tokens[:-1]], tokens, [*tokens[1:], None], strict=True)
        if token["type"] == "quoted_identifier"
        and any(t is not None and t["type"] in _COMPARATORS for t in (before, after))
    ]


def _is_number(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _equals(x: Any, y: Any) -> bool:
    if _is_number(x) and x in (0, 1):
        return not isinstance(y, bool) and x == y
    if _is_number(y) and y in (0, 1):
        return not isinstance(x, bool) and x == y
    return bool(x == y)


def is_false(value: Any) -> bool:
    """JMESPath falsiness: false, null, and empty strings, lists and objects."""
    return value is None or value is False or value == "" or value == [] or value == {}


def _field(name: str) -> Evaluate:
    def field(value: Any) -> Any:
        return value.get(name) if type(value) is dict else _get(value, name)

    return field


def _get(value: Any, name: str) -> Any:
    try:
        return value.get(name)
    except AttributeError:
        return None


def _compile(node: dict[str, Any]) -> Evaluate | None:
    kind = node["type"]
    if kind == "field":
        return _field(node["value"])
    if kind == "literal":
        literal = node["value"]
        return lambda value: literal
    if kind == "current":
        return lambda value: value
    children = [_compile(child) for child in node["children"]]
    if any(child is None for child in children):
        return None
    parts: list[Evaluate] = [c for c in children if c is not None]
    if kind == "subexpression":
        return _chain(parts)
    if kind == "comparator":
        return _comparator(node["value"], parts[0], parts[1])
    if kind == "and_expression":
        left, right = parts
        return lambda value: matched if is_false(matched := left(value)) else right(value)
    if kind == "or_expression":
        left, right = parts
        return lambda value: right(value) if is_false(matched := left(value)) else matched
    if kind == "not_expression":
        [inner] = parts
        return lambda value: False if _is_number(result := inner(value)) and result == 0 else not result
    return None


def _chain(parts: list[Evaluate]) -> Evaluate:
    def chain(value: Any) -> Any:
        for part in parts:
            value = part(value)
        return value

    return chain


def _comparator(op: str, left: Evaluate, right: Evaluate) -> Evaluate:
    if op == "eq":
        return lambda value: _equals(left(value), right(value))
    if op == "ne":
        return lambda value: not _equals(left(value), right(value))
    compare = _ORDERING[op]

    def ordering(value: Any) -> Any:
        x, y = left(value), right(value)
        if not ((_is_number(x) or isinstance(x, str)) and (_is_number(y) or isinstance(y, str))):
            return None
        return compare(x, y)

    return ordering


def described(value: Any) -> str:
    """A value as a reason may name it: its type and size, never itself."""
    size = f" of size {len(value)}" if isinstance(value, str | list | dict) else ""
    return f"{type(value).__name__}{size}"


def failure(exc: Exception) -> str:
    """Why an expression failed, without the value it failed on (jmespath's message quotes it:
    a phone number, a name, an e-mail address): the function and the types."""
    if isinstance(exc, jmespath.exceptions.JMESPathTypeError):
        expected = ", ".join(exc.expected_types)
        return (
            f"{exc.function_name}() takes {expected}, not {exc.actual_type} ({described(exc.current_value)})"
        )
    if isinstance(exc, jmespath.exceptions.ArityError):
        return f"{exc.function_name}() takes {exc.expected_arity} arguments, not {exc.actual_arity}"
    return type(exc).__name__  # other messages may quote the value too
