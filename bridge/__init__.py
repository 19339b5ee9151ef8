"""intilery-bridge: Kafka domain events to Intilery commands, through mapping rules."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("intilery-bridge")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
