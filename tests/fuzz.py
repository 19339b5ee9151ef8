"""``make fuzz``: the record path's fuzzing harness (``tests/fuzzing.py``) for longer.

Coverage-guided with atheris (libFuzzer) when it installs, else hypothesis with a large
budget, for three quarters of the time; the last quarter at the edges (``tests/edgefuzz.py``:
records produced through librdkafka, answers from a hostile Intilery); ``--seconds``
(``FUZZ_SECONDS``, 600 by default). Every input that breaks an
invariant is kept in ``tests/corpus/`` (which ``make test`` replays), a crash that kills
the process included (libFuzzer's artifact, turned into the same form afterwards).
``--figures FILE`` writes what the run did and what every kept input comes to.

    python -m tests.fuzz --seconds 600 --figures docs/figures/hostile.md
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.model import Record

ROOT = Path(__file__).parent.parent
WORK = ROOT / ".cache" / "fuzz"
KINDS = 4


def records_from(data: bytes) -> list[Record]:
    """A batch of hostile records from libFuzzer's bytes: topic, key, value (raw, framed
    for the registry, JSON text, or none), headers and record time, each chosen by them."""
    import atheris

    from bridge.model import Record
    from tests import fuzzing

    fdp = atheris.FuzzedDataProvider(data)
    records = []
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        topic = fuzzing.TOPICS[fdp.ConsumeIntInRange(0, len(fuzzing.TOPICS) - 1)]
        kind = fdp.ConsumeIntInRange(0, KINDS - 1)
        key = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8)) if fdp.ConsumeBool() else None
        headers = [
            (fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 8)), fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16)))
            for _ in range(fdp.ConsumeIntInRange(0, 2))
        ]
        timestamp = fdp.ConsumeInt(8) if fdp.ConsumeBool() else None
        size = fdp.ConsumeIntInRange(0, 512)
        value: bytes | None
        if kind == 0:
            value = fdp.ConsumeBytes(size)
        elif kind == 1:
            schema_id = [*fuzzing.SCHEMA_IDS, 99][fdp.ConsumeIntInRange(0, len(fuzzing.SCHEMA_IDS))]
            value = fuzzing.framed(schema_id, fdp.ConsumeBytes(size))
        elif kind == 2:
            value = fdp.ConsumeUnicode(size).encode("utf-8", "surrogatepass")
        else:
            value = None
        records.append(Record(topic, 0, 0, key, value, headers, timestamp))
    return records


def _fuzz_atheris(seconds: int) -> dict[str, Any]:
    """libFuzzer in a child process (a crash that kills it leaves an artifact), then its
    crashes turned into kept inputs."""
    from tests import fuzzing

    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "inputs").mkdir(exist_ok=True)
    for old in WORK.glob("crash-*"):
        old.unlink()
    command = [sys.executable, "-m", "tests.fuzz", "--child", f"-max_total_time={seconds}"]
    command += [f"-artifact_prefix={WORK}/", "-print_final_stats=1", "-rss_limit_mb=2048"]
    command.append(str(WORK / "inputs"))
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, cwd=fuzzing.ROOT)
    stats = {
        line.removeprefix("stat::").split(":")[0].strip(): line.split(":")[-1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("stat::")
    }
    kept = [
        str(fuzzing.save(records_from(path.read_bytes()), f"make fuzz (atheris): {path.name}").name)
        for path in sorted(WORK.glob("crash-*"))
    ]
    if run.returncode != 0 and not kept:
        sys.stderr.write(run.stderr[-4000:])
    return {
        "engine": "atheris (libFuzzer, coverage-guided)",
        "seconds": round(time.monotonic() - started),
        "executions": int(stats.get("number_of_executed_units", "0")),
        "kept": kept,
        "failed": run.returncode != 0,
    }


def _child() -> None:
    """libFuzzer's side: the bridge's own code instrumented for coverage, imported under it."""
    import atheris

    with atheris.instrument_imports(include=["bridge"]):
        from bridge import logs
        from tests import fuzzing
    logs.configure("critical", open(os.devnull, "w"))  # noqa: SIM115  # tens of lines an input
    harness = fuzzing.harness()

    def one_input(data: bytes) -> None:
        harness.check(records_from(data))

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


def _fuzz_hypothesis(seconds: int) -> dict[str, Any]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests import fuzzing
    from tests.unit.test_fuzz_record_path import records

    harness, last = fuzzing.harness(), dict[str, Any]()
    executions = 0
    kept = []
    deadline = time.monotonic() + seconds

    @settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(batch=st.lists(records, min_size=1, max_size=4))
    def run(batch: list[Record]) -> None:
        nonlocal executions
        executions += 1
        try:
            harness.check(batch)
        except Exception:
            last["batch"] = batch  # the last failure is hypothesis' shrunk one
            raise

    started = time.monotonic()
    while time.monotonic() < deadline:
        try:
            run()
        except Exception as exc:
            kept.append(fuzzing.save(last["batch"], f"make fuzz (hypothesis): {type(exc).__name__}").name)
    return {
        "engine": "hypothesis (no atheris here)",
        "seconds": round(time.monotonic() - started),
        "executions": executions,
        "kept": kept,
        "failed": bool(kept),
    }


def _fuzz_edges(seconds: int) -> dict[str, Any]:
    """The edge drivers (tests/edgefuzz.py) with hypothesis for ``seconds``: records produced
    through librdkafka and read by the consumer's code, answers from a hostile Intilery. A
    failure is reported with hypothesis' shrunk input (the Kafka driver's as a kept input)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests import edgefuzz, fuzzing
    from tests.integration.test_edge_fuzz import produced

    kafka = edgefuzz.KafkaEdge()
    intilery = edgefuzz.IntileryEdge()
    registry = edgefuzz.RegistryEdge()
    edges: dict[str, tuple[Any, Any]] = {  # name -> (what it is given, how it is checked)
        "kafka": (st.lists(produced, min_size=1, max_size=3), kafka.check),
        "intilery": (edgefuzz.answers, intilery.check),
        "registry": (edgefuzz.registry_answers, registry.check),
    }
    counts = dict.fromkeys(edges, 0)
    failures: list[str] = []
    kept: list[str] = []
    last: dict[str, Any] = {}
    quiet = settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))

    def driven(name: str, given_what: Any, check: Any) -> Any:
        @quiet
        @given(given_what)
        def drive(value: Any) -> None:
            counts[name] += 1
            last[name] = value  # the last failure is hypothesis' shrunk one
            check(value)

        return drive

    drivers = {name: driven(name, *edge) for name, edge in edges.items()}
    started = time.monotonic()
    deadline = started + seconds
    try:
        while time.monotonic() < deadline:
            for name, drive in drivers.items():
                try:
                    drive()
                except Exception as exc:
                    failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
                    if name == "kafka":
                        records = [record for record, _ in last[name]]
                        kept.append(fuzzing.save(records, f"make fuzz (edges): {type(exc).__name__}").name)
    finally:
        kafka.close()
        intilery.close()
        registry.close()
    return {
        "seconds": round(time.monotonic() - started),
        "executions": counts,
        "failures": failures,
        "kept": kept,
    }


def figures(run: dict[str, Any]) -> str:
    from tests import fuzzing

    harness, rows = fuzzing.harness(), []
    for name, batch in fuzzing.load_corpus():
        note = fuzzing.read_kept(fuzzing.CORPUS / name)["note"]
        try:
            outcome = harness.check(batch)
        except Exception as exc:  # shown, and make fuzz fails
            rows.append(f"| {note} | FAILED: {type(exc).__name__} | |")
            run["failed"] = True
            continue
        reasons = "; ".join(
            f"`{c}`: {r[:90]}" + (f" (written without its {', '.join(o)})" if o else "")
            for c, r, o in outcome["reasons"]
        )
        rows.append(f"| {note} | {len(batch)} of {outcome['records']} | {reasons.replace('|', '/') or '-'} |")
    kept = ", ".join(f"`{name}`" for name in run["kept"]) or "nothing: no invariant broke"
    edges = run["edges"]
    edge_failures = "; ".join(edges["failures"]) or "none: no invariant broke"
    return "\n".join(
        [
            "# Hostile input: the fuzzing run and the kept inputs",
            "",
            "<!-- generated by `make fuzz` (tests/fuzz.py); do not edit: run it again -->",
            "",
            f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}: {run['engine']}, {run['seconds']} s, "
            f"{run['executions']:,} inputs through the record path (each a batch of hostile records "
            f"between good events). Kept from this run: {kept}.",
            "",
            f"At the edges (`tests/edgefuzz.py`, hypothesis, {edges['seconds']} s): "
            f"{edges['executions']['kafka']:,} batches produced through librdkafka (raw header names, any "
            f"key, value and time) and read by the consumer's code into the record path; "
            f"{edges['executions']['intilery']:,} answers from a hostile Intilery (any status, header "
            f"bytes, body, slow or cut short) read by the real client; {edges['executions']['registry']:,} "
            f"answers from a hostile schema registry read by its real client. Failures: {edge_failures}.",
            "",
            "Every input kept in `tests/corpus/` through the same harness (`make test` replays them): "
            "how many hostile records among all, and what each dead letter says "
            "(`x-bridge-error-class`: `x-bridge-error-reason`, cut here at 90 characters).",
            "",
            "| kept input | hostile records | dead letters |",
            "| --- | --- | --- |",
            *rows,
            "",
        ]
    )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "600")))
    parser.add_argument("--figures", type=Path, help="write what the run did to this Markdown file")
    args = parser.parse_args()
    from bridge import logs

    logs.configure("critical", open(os.devnull, "w"))  # noqa: SIM115  # the harness' bridges log a lot
    edge_seconds = args.seconds // 4  # a quarter of the time at the edges
    try:
        import atheris  # noqa: F401

        run = _fuzz_atheris(args.seconds - edge_seconds)
    except ImportError:
        run = _fuzz_hypothesis(args.seconds - edge_seconds)
    run["edges"] = edges = _fuzz_edges(edge_seconds)
    run["kept"] += edges["kept"]
    run["failed"] = run["failed"] or bool(edges["failures"])
    print(f"make fuzz: {run['engine']}, {run['seconds']} s, {run['executions']:,} inputs, kept {run['kept']}")
    print(
        f"make fuzz at the edges: {edges['seconds']} s, {edges['executions']}, failures {edges['failures']}"
    )
    if args.figures:
        args.figures.write_text(figures(run))
    return 1 if run["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
