"""The verbs: run, check, map, test, schema, replay, redrive, sandbox, demo.

Exit codes: 0 success; 1 ``map`` had events that failed, ``test`` had cases that
failed, ``check`` found problems; 2 the configuration (or a test file) was
refused; 3 a permanent failure with no dead-letter topic; 4 a fatal Kafka error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

import structlog
from fastavro.types import Schema

from bridge import __version__, logs
from bridge.config import BridgeConfig
from bridge.decode.avro import load_schema, read_json
from bridge.decode.decoder import decode_json, resolve_path
from bridge.errors import ConfigError, RecordError, cannot_listen
from bridge.ops.loading import load, load_offline
from bridge.rules.mapping import Mapper

EXIT_FAILED, EXIT_CONFIG = 1, 2
log = structlog.get_logger(__name__)


def configure_logs(args: argparse.Namespace, config: BridgeConfig, stream: TextIO | None = None) -> None:
    """``--log-level`` over ``log.level``; log lines to ``stream`` (standard output)."""
    logs.configure(args.log_level or config.log.level, stream, config.log.hash_user_ids)


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.runtime.factory import build_bridge

    config, mapper, decoder = load(args.config)
    configure_logs(args, config)
    for warning in mapper.warnings:
        log.warning("rule_warning", warning=warning)
    bridge = build_bridge(config, mapper, args.config, until_caught_up=args.until_caught_up, decoder=decoder)
    code = asyncio.run(bridge.run())
    if bridge.failure:
        print(f"intilery-bridge: stopped: {logs.redact(bridge.failure)}", file=sys.stderr)
    return code


def cmd_check(args: argparse.Namespace) -> int:
    # Every rule, template and local schema; secrets may be unset unless --require-env.
    unset_secrets: list[str] | None = None if args.require_env else []
    config, mapper, _ = load(args.config, unset_secrets)
    warnings = list(mapper.warnings)
    tested = ""
    if args.tests:
        from bridge.ops import ruletests

        results = ruletests.run(
            ruletests.load_suites(args.tests, config.source, mapper, args.config),
            mapper,
            config.source.topic_names[0],
        )
        untested = ruletests.untested_rules(results, mapper)
        warnings += [f"rule {name}: no test case exercises it" for name in untested]
        tested = f", {len(results)} test cases exercise {len(mapper) - len(untested)} of them"
    for warning in warnings:
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    if args.strict and warnings:
        return EXIT_FAILED
    print(f"{args.config}: OK ({len(mapper)} rules{tested}, topics: {', '.join(config.source.topic_names)})")
    for problem in unset_secrets or []:
        print(f"{args.config}: {problem} (fine for check; --require-env refuses it)", file=sys.stderr)
    return 0


DecodeLine = Callable[[str], dict[str, Any]]


def avro_json_decoder(schema: Schema) -> DecodeLine:
    """Events in the schema's JSON form; a ``_kafka`` object beside the fields is kept."""

    def decode(line: str) -> dict[str, Any]:
        raw = decode_json(line.encode())
        overrides = raw.pop("_kafka", None)
        event = read_json(json.dumps(raw), schema)
        if overrides is not None:
            event["_kafka"] = overrides
        return event

    return decode


def map_lines(
    mapper: Mapper,
    lines: Iterable[str],
    topic: str,
    out: TextIO,
    err: TextIO,
    decode: DecodeLine | None = None,
) -> int:
    """Map JSON Lines events; print commands to ``out``, failures to ``err``, then a
    summary line to ``err``; count failures."""
    decode = decode or (lambda line: decode_json(line.encode()))
    failures = read = produced = unmatched = 0
    now_ms = int(time.time() * 1000)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        read += 1
        try:
            event = decode(line)
            meta = {
                "topic": topic,
                "partition": 0,
                "offset": number - 1,
                "key": None,
                "timestamp": now_ms,
                "headers": {},
            }
            overrides = event.pop("_kafka", None)
            if isinstance(overrides, dict):
                meta.update(overrides)
            commands = mapper.map(event, meta)
        except RecordError as exc:
            failures += 1
            rule = f" rule {exc.rule}:" if exc.rule else ""
            print(f"line {number}: {exc.error_class}:{rule} {logs.redact(exc.reason)}", file=err)
            continue
        produced += len(commands)
        unmatched += not commands
        for command in commands:
            out.write(json.dumps(command.as_json_line(), ensure_ascii=False) + "\n")
    print(
        f"map: {read} events read, {produced} commands, {unmatched} matched no rule, {failures} failed",
        file=err,
    )
    return failures


def cmd_map(args: argparse.Namespace) -> int:
    source, mapper = load_offline(args.config)
    topic = args.topic or source.topic_names[0]
    if topic not in source.topic_names:
        print(f"--topic {topic}: not in source.topics ({', '.join(source.topic_names)})", file=sys.stderr)
        return EXIT_CONFIG
    decode = None
    if args.format == "avro":
        configured = next(t for t in source.resolved() if t.name == topic).schema_path
        path = args.schema or configured
        if not path:
            print(
                f"--format avro: give --schema FILE.avsc (topic {topic} takes its schemas from the registry)",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        try:
            schema = load_schema(path if args.schema else resolve_path(path, args.config))
        except ValueError as exc:
            print(f"--schema: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        decode = avro_json_decoder(schema)
    if args.file == "-":
        failures = map_lines(mapper, sys.stdin, topic, sys.stdout, sys.stderr, decode)
    else:
        try:
            handle = open(args.file, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
            return EXIT_CONFIG
        with handle:
            failures = map_lines(mapper, handle, topic, sys.stdout, sys.stderr, decode)
    return EXIT_FAILED if failures else 0


def cmd_test(args: argparse.Namespace) -> int:
    from bridge.ops import ruletests

    source, mapper = load_offline(args.config)
    try:
        suites = ruletests.load_suites(args.files, source, mapper, args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        if args.junit_xml:
            write_junit(args.junit_xml, ruletests.junit_xml([], exc.problems))
        return EXIT_CONFIG
    results = ruletests.run(suites, mapper, source.topic_names[0])
    ruletests.report(results, sys.stdout)
    if args.junit_xml:
        write_junit(args.junit_xml, ruletests.junit_xml(results))
    return 0 if all(r.passed for r in results) else EXIT_FAILED


def write_junit(path: str, report: bytes) -> None:
    try:
        with open(path, "wb") as out:
            out.write(report)
    except OSError as exc:
        raise ConfigError([f"--junit-xml {path}: cannot write: {exc.strerror}"]) from exc


def cmd_schema(args: argparse.Namespace) -> int:
    from bridge.ops.schema import config_schema, reference_table

    print(reference_table() if args.reference else json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from bridge.ops.replay import replay

    loaded = load(args.config)
    configure_logs(args, loaded.config, sys.stderr if args.dry_run else sys.stdout)
    return replay(loaded, args.config, args)


def cmd_redrive(args: argparse.Namespace) -> int:
    from bridge.ops.replay import redrive

    loaded = load(args.config)
    configure_logs(args, loaded.config, sys.stderr if args.dry_run else sys.stdout)
    return redrive(loaded, args.config, args)


RATE_HELP = (
    "requests/s to Intilery (default: a tenth of intilery.rate_limit.per_second, the live "
    "bridge having the rest; 0: no limit); with intilery.rate_limit.redis, the account's "
    "bucket in Redis paces it and this only while Redis is away"
)


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


SANDBOX_TOKEN = "sandbox-token"  # not a secret: the sandbox is for local use


def cmd_sandbox(args: argparse.Namespace) -> int:
    from bridge.devtools.sandbox import Sandbox

    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    try:
        sandbox = Sandbox(
            port=args.port, token=args.token, host=args.host, tls=tls, rate=args.rate, burst=args.burst
        )
    except OSError as exc:
        raise cannot_listen(f"--port {args.port}", args.host, args.port, exc) from exc
    if args.latency_ms:
        sandbox.state.set_faults({"latency_ms": args.latency_ms})
    token = "the default, sandbox-token" if args.token == SANDBOX_TOKEN else "as given with --token"
    print(f"intilery sandbox listening on {sandbox.url} (token: {token})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sandbox.serve_forever()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.devtools.demo import run_demo

    return run_demo(log_level=args.log_level or "warning", bootstrap_servers=args.bootstrap_servers)


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

    run = verb("run", "Consume, map and deliver until stopped (SIGTERM/SIGINT stop it cleanly).")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides log.level")
    run.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit 0 once every assigned partition is read to its end and committed",
    )
    run.set_defaults(func=cmd_run)

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
        "--tests", nargs="+", metavar="FILE",
        help="test files (or globs): also warn of rules no test case exercises",
    )  # fmt: skip
    check.set_defaults(func=cmd_check)

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
    mapping.add_argument("file", nargs="?", default="-", metavar="FILE|-", help="events file, - for stdin")
    mapping.set_defaults(func=cmd_map)

    test = verb(
        "test", "Run the rules' test cases (YAML golden files) offline: no Kafka, Intilery or secrets."
    )
    test.add_argument("files", nargs="+", metavar="FILE", help="test files, or globs such as 'tests/*.yaml'")
    test.add_argument("--junit-xml", metavar="FILE", help="also write a JUnit XML report here, for CI")
    test.set_defaults(func=cmd_test)

    schema = verb("schema", "Print the JSON Schema of the configuration file, for editors.", config=False)
    schema.add_argument(
        "--reference", action="store_true", help="print the configuration reference (Markdown) instead"
    )
    schema.set_defaults(func=cmd_schema)

    again = verb("replay", "Re-run a window of one topic through the rules, as a group of its own.")
    again.add_argument("--topic", required=True, help="the topic to replay (one of source.topics)")
    start = again.add_mutually_exclusive_group(required=True)
    start.add_argument(
        "--from", dest="from_time", metavar="TIME", help="first record at or after this ISO-8601 time"
    )
    start.add_argument(
        "--from-offset", metavar="P:O[,P:O...]", help="first offset per partition (only these)"
    )
    start.add_argument("--from-beginning", action="store_true", help="every partition from its first record")
    end = again.add_mutually_exclusive_group()
    end.add_argument(
        "--to", dest="to_time", metavar="TIME", help="last record at or before this ISO-8601 time"
    )
    end.add_argument("--to-offset", metavar="P:O[,P:O...]", help="last offset per partition (inclusive)")
    again.add_argument(
        "--dry-run", action="store_true", help="print the commands (as map does); send nothing"
    )
    again.add_argument("--group", help="record progress in this consumer group, so a rerun resumes")
    again.add_argument(
        "--ignore-max-age", action="store_true", help="send even what rules' max_age would skip"
    )
    again.add_argument("--rate", type=non_negative, metavar="PER_SECOND", help=RATE_HELP)
    again.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    again.add_argument(
        "--observability-port", type=int, metavar="PORT",
        help="serve /metrics, /healthz, /readyz on this port (default: none, beside a live bridge)",
    )  # fmt: skip
    again.set_defaults(func=cmd_replay)

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
        "--error-class", action="append", choices=["decode", "mapping", "rejected"],
        help="redrive only dead letters of this class (repeat for several)",
    )  # fmt: skip
    drive.add_argument(
        "--rule", action="append", metavar="NAME", help="redrive only dead letters of this rule (repeatable)"
    )
    drive.add_argument(
        "--source-topic", action="append", metavar="TOPIC",
        help="redrive only dead letters from this source topic (repeatable)",
    )  # fmt: skip
    drive.add_argument("--rate", type=non_negative, metavar="PER_SECOND", help=RATE_HELP)
    drive.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    drive.add_argument(
        "--observability-port", type=int, metavar="PORT",
        help="serve /metrics, /healthz, /readyz on this port (default: none, beside a live bridge)",
    )  # fmt: skip
    drive.set_defaults(func=cmd_redrive)

    sandbox = verb("sandbox", "Run the local Intilery-compatible server.", config=False)
    sandbox.add_argument("--port", type=int, default=8080)
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

    demo = verb("demo", "Embedded Kafka + sandbox + the example rules, end to end.", config=False)
    demo.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    demo.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="run against this Kafka instead of the embedded one (topics created when missing)",
    )
    demo.set_defaults(func=cmd_demo)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args: Any = parser().parse_args(argv)
    logs.configure("warning", sys.stderr)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(logs.redact(problem), file=sys.stderr)
        return EXIT_CONFIG if args.verb != "check" else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
