"""An Intilery-compatible HTTP server for the demo, the tests and rule authors."""

from bridge.devtools.sandbox.server import Sandbox
from bridge.devtools.sandbox.state import SandboxState

__all__ = ["Sandbox", "SandboxState"]
