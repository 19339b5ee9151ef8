"""Helpers the tests share (imported, unlike fixtures, which live in conftest.py)."""

from __future__ import annotations

import sys

import pytest

from bridge import logs
from bridge.cli import main

_STDERR = sys.stderr  # the test process's own: it stays open after any one test


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """A verb run in this process: its exit code, standard output and error. The verbs
    point the log lines at ``sys.stderr``, which capsys closes after the test: they are
    pointed back at the process's own afterwards, or a later test's log line would fail."""
    try:
        code = main(list(args))
    finally:
        logs.configure("warning", _STDERR)
    out, err = capsys.readouterr()
    return code, out, err
