"""The verbs: run, check, map, test, schema, replay, redrive, sandbox, demo.

Exit codes: 0 success; 1 ``map`` had events that failed, ``test`` had cases that
failed, ``check`` found problems; 2 the configuration (or a test file) was
refused; 3 a permanent failure with no dead-letter topic; 4 a fatal Kafka error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from bridge import logs
from bridge.cli.parser import parser
from bridge.cli.verbs import EXIT_CONFIG, EXIT_FAILED
from bridge.errors import ConfigError


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
