"""bridge.runtime.factory.start_up_frozen: start-up's objects out of the collector's sight
while a bridge runs, and back in sight after (a test process runs many bridges)."""

from __future__ import annotations

import gc

import pytest

from bridge.runtime.factory import start_up_frozen


def test_start_up_objects_are_frozen_while_the_bridge_runs_and_thawed_after() -> None:
    assert gc.get_freeze_count() == 0
    rules = [{"name": f"rule-{n}"} for n in range(100)]  # made at start-up, tracked
    with start_up_frozen():
        assert gc.get_freeze_count() >= len(rules)
    assert gc.get_freeze_count() == 0


def test_thawed_even_when_the_bridge_fails() -> None:
    with pytest.raises(RuntimeError), start_up_frozen():
        raise RuntimeError("stopped")
    assert gc.get_freeze_count() == 0
