"""The command line: one sub-command per verb, each with its options."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bridge import __version__
from bridge.cli.story import DEFAULT_SINCE, cmd_trace
from bridge.cli.verbs import (
    RATE_HELP,
    SANDBOX_TOKEN,
    cmd_check,
    cmd_demo,
    cmd_diff,
    cmd_map,
    cmd_redrive,
    cmd_replay,
    cmd_run,
    cmd_sandbox,
    cmd_schema,
    cmd_test,
    non_negative,
)


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535; anything else is a usage error, not a traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535)")
    return value


Verb = Callable[..., argparse.ArgumentParser]  # adds a verb's sub-parser: (name, help, config=True)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="intilery-bridge",
        description="Kafka domain events → mapping rules → Intilery commands, at least once.",
    )
    top.add_argument("--version", action="version", version=f"intilery-bridge {__version__}")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_text: str, config: bool = True) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        if config:
            sub.add_argument("--config", "-c", required=True, help="the bridge YAML file")
        return sub

    for add in (
        _add_run,
        _add_check,
        _add_map,
        _add_diff,
        _add_trace,
        _add_test,
        _add_schema,
        _add_replay,
        _add_redrive,
        _add_sandbox,
        _add_demo,
    ):
        add(verb)
    return top


def _add_run(verb: Verb) -> None:
    run = verb(
        "run",
        "Consume, map and deliver until stopped (SIGTERM/SIGINT stop it cleanly; SIGHUP reloads the rules).",
    )
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides log.level")
    run.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit 0 once every assigned partition is read to its end and committed",
    )
    run.add_argument(
        "--watch",
        action="store_true",
        help="reload the rules when the file changes (SIGHUP reloads them in any case)",
    )
    run.add_argument(
        "--shadow",
        metavar="CANDIDATE",
        help="also map every record by CANDIDATE's rules and count how they differ; nothing is sent for them",
    )
    run.add_argument(
        "--tests",
        nargs="+",
        metavar="FILE",
        help="rule test files (or globs) whose cases must pass before a reload is put in force",
    )
    run.set_defaults(func=cmd_run)


def _add_check(verb: Verb) -> None:
    check = verb("check", "Validate the file, every rule and template; touches neither Kafka nor Intilery.")
    check.add_argument(
        "--strict", action="store_true", help="fail on warnings too (likely mistakes in rules)"
    )
    check.add_argument(
        "--require-env",
        action="store_true",
        help="also refuse unset variables in secret fields (for a deploy step; a rules CI needs no secrets)",
    )
    check.add_argument(
        "--tests",
        nargs="+",
        metavar="FILE",
        help="test files (or globs): also warn of rules no test case exercises",
    )
    check.set_defaults(func=cmd_check)


def _add_map(verb: Verb) -> None:
    mapping = verb("map", "Map events (JSON Lines) to the commands that would be posted, offline.")
    mapping.add_argument("--topic", help="the topic the events come from (default: the first source topic)")
    mapping.add_argument(
        "--format",
        choices=["json", "avro"],
        default="json",
        help="avro: events in the Avro schema's JSON form, decoded with --schema "
        "(default: the topic's local schema)",
    )
    mapping.add_argument("--schema", help="an .avsc file, for --format avro")
    ignoring_max_age(mapping, "show")
    mapping.add_argument("file", nargs="?", default="-", metavar="FILE|-", help="events file, - for stdin")
    mapping.set_defaults(func=cmd_map)


def _add_trace(verb: Verb) -> None:
    trace = verb(
        "trace",
        "one customer's story: every command the audit topic (delivery.audit_topic) says Intilery "
        "accepted for them, and their dead letters, in time order, each with its event, rule, rules "
        "version and trace id",
    )
    trace.add_argument("--user", required=True, metavar="ID", help="the customer's userId")
    trace.add_argument(
        "--since", default=DEFAULT_SINCE, metavar="DURATION", help=f"how far back (default {DEFAULT_SINCE})"
    )
    trace.add_argument("--output", choices=["text", "json"], default="text", help="json: one object")
    trace.set_defaults(func=cmd_trace)


def _add_diff(verb: Verb) -> None:
    diff = verb(
        "diff",
        "Map the same events with the current rules and a candidate's, and show what would change.",
    )
    diff.add_argument(
        "--candidate", required=True, metavar="FILE", help="the configuration with the new rules"
    )
    diff.add_argument("--topic", help="for FILE: the topic the events come from (default: the first)")
    diff.add_argument("--format", choices=["json", "avro"], default="json", help="for FILE: as map's")
    diff.add_argument("--schema", help="for FILE: an .avsc file, for --format avro")
    window = diff.add_argument_group("a window of the source topics in Kafka, instead of FILE")
    time_option(window, "--from", "records at or after TIME")
    time_option(window, "--to", "records at or before TIME (default: now)")
    window.add_argument("--last", metavar="DURATION", help="the last DURATION (24h, 90m, ...) up to now")
    ignoring_max_age(diff, "compare")
    diff.add_argument("--samples", type=non_negative, default=5, help="differences shown field by field (5)")
    diff.add_argument("--output", choices=["text", "json"], default="text", help="json: one object")
    diff.add_argument("file", nargs="?", metavar="FILE|-", help="events (JSON Lines), - for stdin")
    diff.set_defaults(func=cmd_diff)


def _add_test(verb: Verb) -> None:
    test = verb(
        "test", "Run the rules' test cases (YAML golden files) offline: no Kafka, Intilery or secrets."
    )
    test.add_argument("files", nargs="+", metavar="FILE", help="test files, or globs such as 'tests/*.yaml'")
    test.add_argument("--junit-xml", metavar="FILE", help="also write a JUnit XML report here, for CI")
    test.set_defaults(func=cmd_test)


def _add_schema(verb: Verb) -> None:
    schema = verb("schema", "Print the JSON Schema of the configuration file, for editors.", config=False)
    schema.add_argument(
        "--reference", action="store_true", help="print the configuration reference (Markdown) instead"
    )
    schema.set_defaults(func=cmd_schema)


def _add_replay(verb: Verb) -> None:
    again = verb("replay", "Re-run a window of one topic through the rules, as a group of its own.")
    again.add_argument("--topic", required=True, help="the topic to replay (one of source.topics)")
    start = again.add_mutually_exclusive_group(required=True)
    time_option(start, "--from", "first record at or after TIME")
    start.add_argument(
        "--from-offset", metavar="P:O[,P:O...]", help="first offset per partition (only these)"
    )
    start.add_argument("--from-beginning", action="store_true", help="every partition from its first record")
    end = again.add_mutually_exclusive_group()
    time_option(end, "--to", "last record at or before TIME")
    end.add_argument("--to-offset", metavar="P:O[,P:O...]", help="last offset per partition (inclusive)")
    again.add_argument(
        "--dry-run", action="store_true", help="print the commands (as map does); send nothing"
    )
    again.add_argument("--group", help="record progress in this consumer group, so a rerun resumes")
    ignoring_max_age(again, "send")
    again.add_argument(
        "--ignore-dedupe",
        action="store_true",
        help="send even what rules' dedupe finds sent already (a resend on purpose; not recorded)",
    )
    again.add_argument(
        "--ignore-caps",
        action="store_true",
        help="send even past the frequency caps and rules' max_per_minute (on purpose; not counted)",
    )
    beside_live(again)
    again.set_defaults(func=cmd_replay)


def _add_redrive(verb: Verb) -> None:
    drive = verb(
        "redrive", "Run the dead-letter topic through the current rules, as from the original topics."
    )
    drive.add_argument(
        "--dry-run", action="store_true", help="print the commands (as map does); send nothing"
    )
    drive.add_argument(
        "--group", help="the consumer group that records progress (default: <group.id>-redrive)"
    )
    drive.add_argument(
        "--error-class",
        action="append",
        choices=["decode", "mapping", "rejected", "capped", "held", "internal"],
        help="redrive only dead letters of this class (repeat for several)",
    )
    drive.add_argument(
        "--rule", action="append", metavar="NAME", help="redrive only dead letters of this rule (repeatable)"
    )
    drive.add_argument(
        "--source-topic",
        action="append",
        metavar="TOPIC",
        help="redrive only dead letters from this source topic (repeatable)",
    )
    drive.add_argument(
        "--discard",
        action="store_true",
        help="acknowledge the dead letters the filters pick without sending them (the next "
        "redrive passes them over); with --dry-run, list them",
    )
    beside_live(drive)
    drive.set_defaults(func=cmd_redrive)


def _add_sandbox(verb: Verb) -> None:
    sandbox = verb("sandbox", "Run the local Intilery-compatible server.", config=False)
    sandbox.add_argument("--port", type=port, default=8080)
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument(
        "--token", default=SANDBOX_TOKEN, help="the auth-token it accepts (default: %(default)s)"
    )
    sandbox.add_argument(
        "--rate", type=float, default=100, help="requests/s of its token bucket; 0: no limit"
    )
    sandbox.add_argument("--burst", type=int, default=500, help="burst of its token bucket")
    sandbox.add_argument("--latency-ms", type=float, default=0, help="delay every answer by this much")
    sandbox.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (needs --tls-key)")
    sandbox.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    sandbox.set_defaults(func=cmd_sandbox)


def _add_demo(verb: Verb) -> None:
    demo = verb("demo", "Embedded Kafka + sandbox + the example rules, end to end.", config=False)
    demo.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    demo.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="run against this Kafka instead of the embedded one (topics created when missing)",
    )
    demo.add_argument(
        "--copy-examples",
        metavar="DIR",
        help="copy the example configurations, events, rule tests and schemas to DIR/examples and "
        "DIR/schemas (never overwriting) and stop, to try them outside a checkout",
    )
    demo.set_defaults(func=cmd_demo)


def beside_live(verb: argparse.ArgumentParser) -> None:
    """What ``replay`` and ``redrive`` share: they run beside a live bridge."""
    verb.add_argument("--rate", type=non_negative, metavar="PER_SECOND", help=RATE_HELP)
    verb.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    verb.add_argument(
        "--observability-port",
        type=port,
        metavar="PORT",
        help="serve /metrics, /healthz, /readyz on this port (default: none, beside a live bridge)",
    )


def ignoring_max_age(verb: argparse.ArgumentParser, does: str) -> None:
    """``--ignore-max-age``, for ``replay`` and the previews that show what ``run`` would skip."""
    verb.add_argument(
        "--ignore-max-age", action="store_true", help=f"{does} even what rules' max_age would skip"
    )


def time_option(group: argparse._ActionsContainer, flag: str, does: str) -> None:
    """``--from`` or ``--to`` TIME, as every verb that takes a time reads it."""
    group.add_argument(
        flag, dest=f"{flag[2:]}_time", metavar="TIME", help=f"{does}: ISO-8601, or a duration such as 7d ago"
    )
