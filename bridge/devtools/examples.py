"""The examples outside a checkout: ``demo --copy-examples DIR`` puts the packaged example
configurations, events, rule tests and Avro schemas in a folder of the user's, laid out as
in the repository (``DIR/examples``, ``DIR/schemas``), so that every command the README and
the demo show runs there as it stands; and how to call the CLI from where the user is."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bridge.errors import ConfigError

PACKAGE = Path(__file__).resolve().parents[1]  # the examples and schemas ship inside it
TREES = ("examples", "schemas")
TRY = "map --config examples/bridge.yaml examples/events/bookings.jsonl"


def copy_examples(target: Path) -> int:
    """The packaged trees under ``target``; the number of files copied. Never overwrites."""
    if existing := [str(target / tree) for tree in TREES if (target / tree).exists()]:
        raise ConfigError([f"--copy-examples {target}: {existing[0]} exists already; nothing copied"])
    for tree in TREES:
        shutil.copytree(PACKAGE / tree, target / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return sum(1 for tree in TREES for path in (target / tree).rglob("*") if path.is_file())


def cli_command(absolute: bool = False) -> str:
    """How to run this CLI from here: its name when the shell finds it, else its path
    (``.venv/bin/intilery-bridge`` after ``make demo``; ``absolute``: from anywhere)."""
    script = Path(sys.executable).parent / "intilery-bridge"
    found = shutil.which("intilery-bridge")
    if found and script.exists() and Path(found).resolve() == script.resolve():
        return "intilery-bridge"
    if script.exists():
        relative = os.path.relpath(script)
        return str(script.absolute()) if absolute or relative.startswith("..") else relative
    return f"{sys.executable} -m bridge"


def closing_hint() -> str:
    """What to try next: on the examples here in a checkout, else after copying them."""
    cli = cli_command()
    run = f"The CLI is {cli}" + ("" if cli == "intilery-bridge" else " (or `source .venv/bin/activate`)")
    if (Path("examples") / "bridge.yaml").is_file():
        return f"{run}. Try your own rules offline: {cli} {TRY}"
    anywhere = cli_command(absolute=True)
    copy = f"{anywhere} demo --copy-examples my-bridge && cd my-bridge && {anywhere} {TRY}"
    return f"{run}. Try your own rules offline: {copy}"
