"""What each verb does; :mod:`bridge.cli.parser` reads its arguments."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO, TypeVar

import structlog

from bridge import logs
from bridge.config import BridgeConfig, parse_duration
from bridge.errors import ConfigError, DeliveryError, cannot_listen
from bridge.ops.loading import load, load_offline, load_offline_config
from bridge.ops.mapfile import event_lines, map_lines, offline_events
from bridge.ops.plural import counted
from bridge.ops.requests import WindowRun
from bridge.rules.mapping import Mapper

EXIT_FAILED, EXIT_CONFIG = 1, 2
log = structlog.get_logger(__name__)


def configure_logs(args: argparse.Namespace, config: BridgeConfig, stream: TextIO | None = None) -> None:
    """``--log-level`` over ``log.level``; log lines to ``stream`` (standard output)."""
    logs.configure(args.log_level or config.log.level, stream, config.log.hash_user_ids)


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.ops.reload import Candidate, Reloader, failing_tests
    from bridge.runtime.factory import build_bridge, start_up_frozen

    loaded = load(args.config)
    config, mapper, decoder = loaded
    failing = failing_tests(args.tests, loaded, args.config) if args.tests else []
    if failing:  # rules that fail their own tests never start, as they never reload
        raise ConfigError(failing)
    configure_logs(args, config)
    for warning in mapper.warnings:
        log.warning("rule_warning", warning=warning)
    shadow = shadow_rules(args.shadow) if args.shadow else None
    until = args.until_caught_up
    bridge = build_bridge(config, mapper, args.config, until_caught_up=until, decoder=decoder, shadow=shadow)
    reloader = Reloader(
        args.config,
        config,
        bridge.path.use_rules,
        bridge.parts.outcomes.metrics,
        tests=args.tests or (),
        watch=args.watch,
        shadow=Candidate(args.shadow, bridge.path.shadow.use_rules) if bridge.path.shadow else None,
    )
    with start_up_frozen():
        code = asyncio.run(bridge.run(alongside=[reloader.run]))
    if bridge.failure:
        print(f"intilery-bridge: stopped: {logs.redact(bridge.failure)}", file=sys.stderr)
    return code


def shadow_rules(path: str) -> Mapper:
    """``run --shadow``: the candidate's rules (only its ``rules`` are read)."""
    _, mapper = load_offline(path)
    log.info("shadow_rules", config=path, rules=len(mapper), shadow_rules_version=mapper.version)
    return mapper


def cmd_check(args: argparse.Namespace) -> int:
    # Every rule, template and local schema; secrets may be unset unless --require-env.
    unset_secrets: list[str] | None = None if args.require_env else []
    config, mapper, _ = load(args.config, unset_secrets)
    warnings = list(mapper.warnings)
    tested = ""
    if args.tests:
        from bridge.ops.ruleresults import check_suites

        checked = check_suites(args.tests, config, mapper, args.config)
        warnings += [f"rule {name}: no test case exercises it" for name in checked.untested]
        warnings += checked.unsupplied
        tested = f", {checked.summary}"
        for line in checked.failures:  # the rules fail their own tests: not OK
            print(f"{args.config}: test failed: {line}", file=sys.stderr)
        if checked.failures:
            return EXIT_FAILED
    for warning in warnings:
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    if args.strict and warnings:
        return EXIT_FAILED
    topics = logs.redact(", ".join(config.source.topic_names))  # a topic may come from a ${file:}
    print(f"{args.config}: OK ({counted(len(mapper), 'rule')}{tested}, topics: {topics})")
    for problem in unset_secrets or []:
        print(f"{args.config}: {problem} (fine for check; --require-env refuses it)", file=sys.stderr)
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    source, mapper = load_offline(args.config)
    topic, decode = offline_events(source, args.topic, args.format, args.schema, args.config)
    with event_lines(args.file) as lines:
        failures = map_lines(mapper, lines, topic, sys.stdout, sys.stderr, decode, args.ignore_max_age)
    return EXIT_FAILED if failures else 0


def cmd_diff(args: argparse.Namespace) -> int:
    from bridge.ops.diffing import compare_lines, comparing, window_comparison

    _, candidate = load_offline(args.candidate)
    if (args.from_time or args.last) and args.file:
        raise ConfigError(["diff: give FILE or a window (--from, --last), not both"])
    if args.from_time and args.last:
        raise ConfigError(["diff: give --from or --last, not both"])
    if args.from_time or args.last:
        loaded = load(args.config, unset_secrets=[])  # Kafka's settings; Intilery's token unused
        since = args.from_time or ago(args.last)
        sets = comparing(loaded.mapper, candidate, args.samples, args.ignore_max_age)
        try:  # Kafka unreachable is a BrokerError: exit 4, as for replay and trace
            comparison = window_comparison(sets, loaded, candidate, since, args.to_time)
        except DeliveryError as exc:  # the schema registry unreachable
            raise ConfigError([f"diff: {exc}"]) from exc
    else:
        source, current = load_offline(args.config)
        topic, decode = offline_events(source, args.topic, args.format, args.schema, args.config)
        sets = comparing(current, candidate, args.samples, args.ignore_max_age)
        with event_lines(args.file or "-") as lines:
            comparison = compare_lines(sets, current, candidate, lines, topic, decode)
    if args.output == "json":
        print(json.dumps(comparison.as_json(), ensure_ascii=False, default=str))
    else:
        comparison.report(sys.stdout)
    return EXIT_FAILED if comparison.differs else 0


def ago(duration: str, flag: str = "--last") -> str:
    """``--last DURATION`` (or ``flag``): the ISO-8601 time that long before now."""
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise ConfigError([f"{flag} {duration}: {exc}"]) from exc
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def cmd_test(args: argparse.Namespace) -> int:
    from bridge.ops import ruleresults, ruletests

    config, mapper = load_offline_config(args.config)
    source = config.source
    try:
        suites = ruletests.load_suites(args.files, source, mapper, args.config, config.delivery.caps)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        if args.junit_xml:
            write_junit(args.junit_xml, ruleresults.junit_xml([], exc.problems))
        return EXIT_CONFIG
    results = ruleresults.run(suites, mapper, source.topic_names[0])
    ruleresults.report(results, sys.stdout)
    if args.junit_xml:
        write_junit(args.junit_xml, ruleresults.junit_xml(results))
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
    from bridge.ops.requests import ReplayRequest

    loaded = load(args.config)
    configure_logs(args, loaded.config, sys.stderr if args.dry_run else sys.stdout)
    return replay(loaded, args.config, request(ReplayRequest, args))


def cmd_redrive(args: argparse.Namespace) -> int:
    from bridge.ops.replay import redrive
    from bridge.ops.requests import RedriveRequest

    loaded = load(args.config)
    configure_logs(args, loaded.config, sys.stderr if args.dry_run else sys.stdout)
    return redrive(loaded, args.config, request(RedriveRequest, args))


Request = TypeVar("Request", bound=WindowRun)


def request(kind: type[Request], args: argparse.Namespace) -> Request:
    """The operation's request from the flags given (the request's field names are the
    flags' ``dest``; a repeatable flag's list becomes a tuple)."""
    given: dict[str, Any] = {
        field.name: tuple(value) if isinstance(value, list) else value
        for field in dataclasses.fields(kind)
        if (value := getattr(args, field.name, None)) is not None
    }
    return kind(**given)


RATE_HELP = (
    "requests/s to Intilery (default: a tenth of intilery.rate_limit.per_second, the live "
    "bridge having the rest; 0: no limit of its own); with intilery.rate_limit.redis, the "
    "account's bucket in Redis paces it and this only while Redis is away (with 0, the "
    "account's rate then)"
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
    for option, file in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if file is not None and not os.access(file, os.R_OK):
            problem = "cannot be read" if os.path.exists(file) else "no such file"
            raise ConfigError([f"{option} {file}: {problem}"])
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
    if args.copy_examples:
        from pathlib import Path

        from bridge.devtools.examples import TRY, cli_command, copy_examples

        target = Path(args.copy_examples)
        copied = copy_examples(target)
        print(f"{copied} files copied to {target / 'examples'} and {target / 'schemas'}.")
        print(f"Try: cd {target} && {cli_command()} {TRY}")
        return 0
    from bridge.devtools.demo import run_demo

    return run_demo(log_level=args.log_level or "warning", bootstrap_servers=args.bootstrap_servers)
