"""``intilery-bridge trace``: one customer's story, from event to message (:mod:`bridge.ops.story`)."""

from __future__ import annotations

import argparse
import json
import sys

from bridge.cli.verbs import ago
from bridge.ops.loading import load

DEFAULT_SINCE = "7d"


def cmd_trace(args: argparse.Namespace) -> int:
    from bridge.ops.story import customer_story

    loaded = load(args.config, unset_secrets=[])  # Kafka's settings; Intilery's token unused
    story = customer_story(loaded, args.user, ago(args.since, "--since"))
    if args.output == "json":
        print(json.dumps(story.as_json(), ensure_ascii=False, default=str))
    else:
        story.report(sys.stdout)
    return 0
