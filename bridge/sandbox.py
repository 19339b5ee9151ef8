"""The sandbox's documented import path: ``from bridge.sandbox import Sandbox``. It
lives in :mod:`bridge.devtools.sandbox` with the other development tools."""

from bridge.devtools.sandbox import Sandbox, SandboxState

__all__ = ["Sandbox", "SandboxState"]
