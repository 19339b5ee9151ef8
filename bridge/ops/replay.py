"""``intilery-bridge replay``: re-run one topic's records through the rules, on purpose.

Takes a topic and a window (times, offsets, or the beginning); reads it with
``assign()`` as a consumer group of its own, so the live group's offsets are
never touched. ``--dry-run`` prints the commands it would send (the JSON Lines
of ``map``) and sends nothing; otherwise it delivers with every guarantee of
``run`` and ends with a summary. ``--group NAME`` commits progress to NAME, so
an interrupted replay started again resumes where it stopped. Rules' ``max_age``
applies unless ``--ignore-max-age``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, TextIO

import structlog
from confluent_kafka import Consumer

from bridge import logs
from bridge.config import BridgeConfig
from bridge.convert import preview, record_commands
from bridge.errors import ConfigError, RecordError
from bridge.kafka.consumer import (
    asking_kafka,
    committed_map,
)
from bridge.kafka.window import Window, read_window, window_reader
from bridge.model import Record
from bridge.ops.discard import discard
from bridge.ops.loading import Loaded
from bridge.ops.mapfile import notes
from bridge.ops.planning import plan, plan_redrive
from bridge.ops.plural import counted
from bridge.ops.progress import Progress
from bridge.ops.requests import RedriveRequest, ReplayRequest, WindowRun
from bridge.runtime.factory import build_bridge, start_up_frozen
from bridge.runtime.pipeline import Bridge

log = structlog.get_logger("bridge.ops.replay")


def dry_run(
    loaded: Loaded, window: Window, consumer: Any, *, out: TextIO, err: TextIO, ignore_max_age: bool = False
) -> int:
    """Print the commands the window would send; send nothing, commit nothing. Records the
    group's last commit names finished, and dead letters the filters leave, are passed over
    as a real run would; a command the run would skip (its rule's ``max_age`` now, unless
    ``ignore_max_age``; ``on_missing: skip``) is named on ``err`` with why, not printed."""
    assignment = window.assignment()
    consumer.assign(assignment)
    finished = (
        {(tp.topic, tp.partition): committed_map(tp).finished for tp in consumer.committed(assignment, 10)}
        if window.commits and assignment
        else {}
    )
    failures = read = produced = withheld = 0
    verb = "redrive" if window.redrive else "replay"
    progress = Progress(f"{verb} --dry-run", window.total, err, made="commands")
    for record in read_window(consumer, window):
        read += 1
        progress.update(read, produced)
        passed_over = record.offset in finished.get(record.tp, ()) or not window.selects(record)
        try:
            if passed_over:
                commands = []
            else:
                commands = record_commands(loaded.decoder, loaded.mapper, window.origin(record), fetch=True)
        except RecordError as exc:
            failures += 1
            progress.say(f"{_named(window, record)}: {exc.error_class}: {logs.redact(exc.reason)}")
        else:
            shown = preview(commands, None if ignore_max_age else int(time.time() * 1000))
            for note in notes(shown):
                progress.say(f"{_named(window, record)}: {note}")
            produced += len(shown.sent)
            withheld += len(shown.withheld)
            for command in shown.sent:
                out.write(json.dumps(command.as_json_line(), ensure_ascii=False) + "\n")
    progress.close()
    failed = "would stay in the dead-letter topic" if window.redrive else "would be dead-lettered"
    records = counted(window.total, "record")
    summary = f"{verb} --dry-run of {window.topic}: {read} of {records} in the window read, "
    summary += counted(produced, "command") + (f", {withheld} not sent" if withheld else "")
    print(f"{summary}, {failures} {failed} (nothing sent, nothing committed)", file=err)
    return 1 if failures else 0


def _named(window: Window, record: Record) -> str:
    """A record as ``topic[p]@o``; a dead letter as its original, then where it is now."""
    try:
        origin = window.origin(record)
    except RecordError:
        return record.position
    if origin is record:
        return record.position
    return f"{origin.position} (dead letter {record.position})"


async def report_progress(
    bridge: Any, total: int, stream: TextIO, log_every_s: float | None = None, verb: str = "replay"
) -> None:
    """The bridge's records done of ``total`` and commands sent (:class:`Progress`), until
    cancelled; off a terminal each line is logged too (``replay_progress``)."""
    progress = Progress(verb, total, stream, log_event="replay_progress", every_s=log_every_s)
    try:
        while True:
            await asyncio.sleep(min(progress.every_s, 1.0))
            progress.update(bridge.counts["consumed"], bridge.counts["delivered"])
    finally:
        progress.close()


async def _run(bridge: Bridge, total: int, verb: str) -> int:
    progress = asyncio.create_task(report_progress(bridge, total, sys.stderr, verb=verb))
    try:
        return await bridge.run()
    finally:
        progress.cancel()
        await asyncio.gather(progress, return_exceptions=True)  # its line ended before the summary


def replay(
    loaded: Loaded, config_file: str, args: ReplayRequest, consumer_factory: Callable[..., Any] = Consumer
) -> int:
    topic = args.topic
    if topic not in loaded.config.source.topic_names:
        names = ", ".join(loaded.config.source.topic_names)
        raise ConfigError([f"--topic {topic}: not in source.topics ({names})"])
    group = args.group or f"intilery-bridge-replay-{uuid.uuid4().hex[:12]}"
    window = _planned(
        loaded, args, consumer_factory, group, lambda c: plan(c, topic, group, bool(args.group), args)
    )
    return _deliver_window(loaded, config_file, args, window)


def redrive(
    loaded: Loaded, config_file: str, args: RedriveRequest, consumer_factory: Callable[..., Any] = Consumer
) -> int:
    """Read the dead-letter topic through the current rules, each record as if from its
    original topic; progress is committed to ``--group`` (default ``<group.id>-redrive``)."""
    topic = loaded.config.delivery.dead_letter_topic
    if not topic:
        raise ConfigError([f"{config_file}: delivery.dead_letter_topic: required for redrive"])
    group = args.group or f"{loaded.config.kafka['group.id']}-redrive"
    if unknown := [rule for rule in args.rule if rule not in loaded.mapper.names]:
        names = ", ".join(loaded.mapper.names)
        raise ConfigError([f"--rule {unknown[0]}: no such rule in {config_file} ({names})"])
    filters = args.filters()
    act = (
        partial(discard, loaded, dry_run=args.dry_run, out=sys.stdout, err=sys.stderr)
        if args.discard
        else None
    )
    window = _planned(
        loaded, args, consumer_factory, group, lambda c: plan_redrive(c, topic, group, filters), act
    )
    return _deliver_window(loaded, config_file, args, window)


def _planned(
    loaded: Loaded,
    args: WindowRun,
    consumer_factory: Callable[..., Any],
    group: str,
    make: Callable[[Any], Window],
    act: Callable[[Window, Any], int] | None = None,
) -> Window | int:
    """The window to read; or the exit code of what was done with it instead by ``act``
    (given the window and its consumer), or by ``--dry-run``: printing it."""
    if group == loaded.config.kafka.get("group.id"):
        raise ConfigError([f"--group {group}: that is the live group; its offsets must not move"])
    consumer = window_reader(loaded.config.kafka, group, consumer_factory)
    try:
        with asking_kafka("planning the window"):
            window = make(consumer)
        log.info(
            "window_planned",
            topic=window.topic,
            group=group,
            total=window.total,
            redrive=window.redrive,
            partitions={p: list(b) for p, b in window.bounds.items()},
        )
        if act is None and args.dry_run:
            act = partial(dry_run, loaded, out=sys.stdout, err=sys.stderr, ignore_max_age=args.ignore_max_age)
        if act is not None:
            with asking_kafka("reading the window"):
                return act(window, consumer)
        return window
    finally:
        consumer.close()


REPLAY_SHARE = 0.1  # of the account's rate, for a replay or redrive without --rate


def _beside_live(config: BridgeConfig, args: WindowRun) -> tuple[BridgeConfig, float]:
    """Replay and redrive run beside a live bridge (same host, or inside its pod): they
    serve /metrics only on the port ``--observability-port`` asks for, and send at
    ``--rate`` requests/s (by default a tenth of the account's limit, which the live
    replicas share; their back-off on 429 makes room for it). Gives the rate too."""
    port = args.observability_port
    observe = config.observability.model_copy(update={"enabled": port is not None, "port": port or 0})
    rate = args.rate if args.rate is not None else config.intilery.rate_limit.per_second * REPLAY_SHARE
    return config.model_copy(update={"observability": observe}), rate


def _deliver_window(loaded: Loaded, config_file: str, args: WindowRun, window: Window | int) -> int:
    """Deliver the window with every guarantee of ``run``, then summarise."""
    if isinstance(window, int):  # a dry run already printed it
        return window
    verb = "redrive" if window.redrive else "replay"
    if window.total == 0:
        print(f"{verb}: nothing to read in {window.topic}", file=sys.stderr)
        return 0
    config, rate = _beside_live(loaded.config, args)
    bridge = build_bridge(
        config,
        loaded.mapper,
        config_file,
        decoder=loaded.decoder,
        window=window,
        rate=rate,
        guard_stale=not args.ignore_max_age,
        dedupe=not args.ignore_dedupe,
        caps=not args.ignore_caps,
    )
    with start_up_frozen():
        code = asyncio.run(_run(bridge, window.total, verb))
    counts = bridge.counts
    outcomes = ", ".join(
        f"{counts[k]} {k.replace('_', '-')}"
        for k in ("delivered", "dead_lettered", "skipped", "stale", "incomplete")
    )
    read = f"{counts['consumed']} of {counted(window.total, 'record')} read"
    summary = f"{verb} of {window.topic}: {read}; {outcomes}"
    if counts["already_finished"]:
        summary += f"; {counts['already_finished']} done by an earlier run (not sent again)"
    if window.redrive:
        if counts["failing_again"]:
            summary += f"; {counts['failing_again']} failing again, left in {window.topic}"
        if counts["not_selected"]:
            summary += f"; {counts['not_selected']} not selected by the filters, left in {window.topic}"
        if not counts["delivered"]:
            summary += "; nothing sent, nothing written"
        if counts["failing_again"] and code == 0:
            code = 1  # dead letters remain unrecovered
    print(summary, file=sys.stderr)
    log.info(f"{verb}_finished", topic=window.topic, group=window.group, **counts)
    return code
