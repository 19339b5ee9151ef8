"""Validation errors in the project's own words: what a field must be, never the
validator's class names (``Input should be a valid dictionary or instance of
DeliveryConfig``), and for an unknown key the key it was likely meant to be, as a
command name gets (``dead_leter_topic: unknown key; did you mean dead_letter_topic?``).
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

# By pydantic's error type: what the field must be, said for a person editing YAML.
_MUST_BE = {
    "missing": "required",
    "dict_type": "must be a mapping of keys (empty here: are all its keys commented out?)",
    "model_type": "must be a mapping of keys (empty here: are all its keys commented out?)",
    "model_attributes_type": "must be a mapping of keys",
    "list_type": "must be a list (one '- item' per line, or [a, b])",
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "url_parsing": "must be a URL such as https://host:port",
    "url_scheme": "must be a URL such as https://host:port",
}


def said(error: ErrorDetails, model: type[BaseModel] | None) -> str:
    """One error's message, for the line ``field: message``."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key" + _did_you_mean(error["loc"], model)
    if kind in ("dict_type", "model_type") and error.get("input") not in (None, ""):
        return "must be a mapping of keys"  # something was given, just not a mapping
    if kind in _MUST_BE:
        return _MUST_BE[kind]
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message.replace("Input should be", "must be").replace("String should", "must")


def _did_you_mean(loc: tuple[Any, ...], model: type[BaseModel] | None) -> str:
    """A key of the same mapping close to the unknown one; else, of the other sections,
    one the key is (or is close to), by its whole path (``delivery.dead_letter_topic``)."""
    if model is None:
        return ""
    key = str(loc[-1])
    near = difflib.get_close_matches(key, keys_at(model, loc[:-1]), n=1, cutoff=0.75)
    if near:
        return f"; did you mean {near[0]}?"
    elsewhere = {path.rsplit(".", 1)[-1]: path for path in all_paths(model)}
    near = difflib.get_close_matches(key, list(elsewhere), n=1, cutoff=0.75)
    return f"; did you mean {elsewhere[near[0]]}?" if near else ""


def all_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key of ``model`` and the models it holds, as dotted paths (``[]`` for a list)."""
    found = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"
        found.append(path)
        inner = _model_in(info.annotation)
        if _element(inner) is not None:
            inner, path = _element(inner), f"{path}[]"
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            found += all_paths(inner, f"{path}.")
    return found


def keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the mapping at ``loc`` (under ``model``) may hold, or none where ``loc``
    leaves the models (a free-form mapping such as ``kafka``)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            current = _element(current)
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = _model_in(current.model_fields[part].annotation)
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _model_in(annotation: Any) -> Any:
    """The model (or list of models) an annotation holds, optional or not."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _model_in(inner[0]) if len(inner) == 1 else None
    return annotation


def _element(annotation: Any) -> Any:
    """The model a list holds, or None."""
    if typing.get_origin(annotation) is list:
        return _model_in(typing.get_args(annotation)[0])
    return None
