"""`intilery-bridge schema`: the configuration's JSON Schema, generated from the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from bridge.config import BridgeConfig
from bridge.ops.schema import REFERENCE_END, REFERENCE_START, config_schema, reference_table
from tests.support import run_cli

ROOT = Path(__file__).parents[2]
COMMITTED = ROOT / "examples" / "intilery-bridge.schema.json"


def validator() -> Draft202012Validator:
    schema = config_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def configmap_config() -> dict[str, Any]:
    configmap = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "configmap.yaml").read_text())
    return dict(yaml.safe_load(configmap["data"]["bridge.yaml"]))


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            lambda: yaml.safe_load((ROOT / "examples" / "bridge.yaml").read_text()), id="bridge.yaml"
        ),
        pytest.param(
            lambda: yaml.safe_load((ROOT / "examples" / "bridge-avro.yaml").read_text()), id="bridge-avro"
        ),
        pytest.param(configmap_config, id="kubernetes-configmap"),
    ],
)
def test_every_example_configuration_is_valid_against_the_schema(config: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(config())]
    assert errors == []


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda c: c["delivery"].update(max_in_flght=3), "'max_in_flght' was unexpected"),
        (lambda c: c["delivery"].update(max_in_flight="many"), "'many' is not valid"),
        (lambda c: c["delivery"].update(max_in_flight=0), "0 is not valid"),
        (lambda c: c["log"].update(level="verbose"), "'verbose' is not one of"),
        (lambda c: c["rules"][0].update(max_age="soon"), "'soon' is not valid"),
        (lambda c: c.pop("intilery"), "'intilery' is a required property"),
    ],
)
def test_the_schema_refuses_what_the_bridge_refuses(change: Any, said: str) -> None:
    config = yaml.safe_load((ROOT / "examples" / "bridge.yaml").read_text())
    config.setdefault("log", {})
    change(config)
    messages = [e.message for e in validator().iter_errors(config)]
    assert any(said in m for m in messages), messages


def test_references_and_durations_as_written_are_accepted() -> None:
    config = yaml.safe_load((ROOT / "examples" / "bridge.yaml").read_text())
    config["delivery"].update(max_in_flight="${MAX_IN_FLIGHT:-32}", batch={"linger_ms": "${LINGER}"})
    config["rules"][0]["max_age"] = "1h30m"
    assert list(validator().iter_errors(config)) == []


def models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for field in model.model_fields.values():
        for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
            for inner in [arg, *getattr(arg, "__args__", ())]:
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in found:
                    found += [m for m in models(inner) if m not in found]
    return found


def test_every_field_of_every_model_is_in_the_schema_with_its_description_and_default() -> None:
    schema = config_schema()
    checked = 0
    for model in models(BridgeConfig):
        node = schema if model is BridgeConfig else schema["$defs"][model.__name__]
        for name, field in model.model_fields.items():
            prop = node["properties"][field.alias or name]
            assert field.description, f"{model.__name__}.{name} has no description (a docstring under it)"
            assert prop["description"] == " ".join(field.description.split())
            if not field.is_required():
                default = field.get_default(call_default_factory=True)
                expected = default.model_dump(by_alias=True) if isinstance(default, BaseModel) else default
                assert prop["default"] == expected, f"{model.__name__}.{name}"
            checked += 1
    assert checked > 50


def test_the_committed_schema_is_what_the_models_give(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "schema")
    assert code == 0
    printed = json.loads(out)
    assert printed == config_schema()
    assert json.loads(COMMITTED.read_text()) == printed, (
        "examples/intilery-bridge.schema.json is stale: "
        "intilery-bridge schema > examples/intilery-bridge.schema.json"
    )


def test_the_docs_reference_is_what_the_models_give(capsys: pytest.CaptureFixture[str]) -> None:
    """The configuration reference in docs/configuration.md is generated from the models'
    field docstrings: it fails when one changes and the docs are not regenerated."""
    code, out, _ = run_cli(capsys, "schema", "--reference")
    assert code == 0 and out == reference_table() + "\n"
    readme = (ROOT / "docs" / "configuration.md").read_text()
    start, end = readme.index(REFERENCE_START), readme.index(REFERENCE_END)
    assert readme[start + len(REFERENCE_START) : end].strip() == reference_table(), (
        "docs/configuration.md's configuration reference is stale: intilery-bridge schema --reference"
    )
    keys = [line.split("`")[1] for line in reference_table().splitlines()[2:]]
    for key in ("kafka", "source.topics", "intilery.auth_token", "delivery.batch.max_calls", "rules[].emit"):
        assert key in keys
