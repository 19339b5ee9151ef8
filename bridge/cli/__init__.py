"""The verbs: run, check, map, diff, test, schema, replay, redrive, sandbox, demo.

Exit codes: 0 success; 1 ``map`` had events that failed, ``test`` had cases that
failed, ``check`` found problems, ``diff`` found differences; 2 the configuration (or a test file) was
refused; 3 a permanent failure with no dead-letter topic; 4 a fatal Kafka error, or Kafka
not reachable where a verb needs an answer (replay, redrive, demo); 5 an exception nobody
expected (a bug), in one line (``INTILERY_BRIDGE_TRACEBACK=1`` adds the traceback). No verb
ends in a bare traceback. A verb whose output is closed (``| head -1``) ends quietly, 0.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from bridge import logs
from bridge.cli.parser import parser
from bridge.cli.verbs import EXIT_CONFIG, EXIT_FAILED
from bridge.errors import BrokerError, ConfigError
from bridge.runtime.health import EXIT_KAFKA_FATAL

EXIT_BUG = 5


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
    except BrokenPipeError:  # `| head -1`: whoever read the output has what they wanted
        _quiet_stdout()
        return 0
    except BrokerError as exc:  # a one-shot verb asked Kafka and got no answer
        print(logs.redact(f"intilery-bridge: stopped: Kafka: {exc}"), file=sys.stderr)
        return EXIT_KAFKA_FATAL
    except Exception as exc:  # the last line of defence: one line, never a traceback
        if os.environ.get("INTILERY_BRIDGE_TRACEBACK"):
            traceback.print_exc()
        reason = f"{type(exc).__name__}: {exc}"[:500]
        print(logs.redact(f"intilery-bridge: unexpected error (a bug): {reason}"), file=sys.stderr)
        return EXIT_BUG
    return code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the interpreter's last flush at exit would fail again on
    the closed pipe and print its own complaint."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
