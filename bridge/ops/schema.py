"""``intilery-bridge schema``: the JSON Schema of the configuration file, for editors.

Generated from the models of :mod:`bridge.config` (their field docstrings are the
descriptions), so it cannot drift from what ``run`` accepts. Two widenings keep
it true of files as written: any number, integer or boolean may also be a
``${VAR}`` reference (expanded at start-up), and ``rules[].max_age`` is a
duration such as ``2h``.
"""

from __future__ import annotations

from typing import Any

from bridge.config import BridgeConfig

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENV_REFERENCE = {"type": "string", "pattern": r"\$\{", "description": "an environment reference: ${VAR}"}
DURATION = {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$"}


def config_schema() -> dict[str, Any]:
    schema = BridgeConfig.model_json_schema(by_alias=True)
    schema = _widen(schema)
    max_age = schema["$defs"]["RuleConfig"]["properties"]["max_age"]
    max_age["anyOf"].insert(0, DURATION)
    return {
        "$schema": DIALECT,
        "title": "intilery-bridge configuration",
        "description": "The YAML file given to intilery-bridge run, check, map, test, replay and redrive.",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def _widen(node: Any) -> Any:
    """Every number, integer or boolean may also be a ``${VAR}`` reference."""
    if isinstance(node, list):
        return [_widen(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _widen(value) for key, value in node.items()}
    if isinstance(node.get("description"), str):  # a docstring's line breaks are not the text's
        node["description"] = " ".join(node["description"].split())
    if node.get("type") in ("number", "integer", "boolean"):
        typed = {k: v for k, v in node.items() if k not in ("title", "description", "default")}
        kept = {k: v for k, v in node.items() if k in ("title", "description", "default")}
        return {**kept, "anyOf": [typed, ENV_REFERENCE]}
    return node
