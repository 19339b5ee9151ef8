"""What can be checked of the container set-up without a Docker engine."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from bridge.devtools.kafkanode import BROKER_SETTINGS, kafka_version

ROOT = Path(__file__).parents[2]


def test_compose_parses_and_names_existing_paths() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "producer", "sandbox", "bridge"} <= set(services)
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["bridge"], "the image is built once"
    assert services["sandbox"]["image"] == services["bridge"]["image"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    for service in services.values():
        for volume in service.get("volumes", []):
            assert (ROOT / volume.split(":")[0]).exists(), volume
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists()
    bridge = services["bridge"]
    mount = next(v for v in bridge["volumes"] if v.split(":")[1] == "/config")
    config_arg = bridge["command"][bridge["command"].index("--config") + 1]
    assert (ROOT / mount.split(":")[0] / Path(config_arg).name).exists()
    assert services["sandbox"]["command"][0] == "sandbox"


def test_compose_runs_the_broker_the_tests_run() -> None:
    """No Docker engine runs here, so compose itself is never started by the tests: this
    keeps its broker the one they exercise (version from kafka/pom.xml, same settings)."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("kafka", "producer"):
        assert services[name]["image"] == f"apache/kafka:{kafka_version()}", name
    environment = services["kafka"]["environment"]
    for key, value in BROKER_SETTINGS.items():
        assert str(environment["KAFKA_" + key.upper().replace(".", "_")]).lower() == value, key


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["intilery-bridge"]' in text and "USER bridge" in text
    from bridge.config import ObservabilityConfig

    port = ObservabilityConfig().port
    assert f"'OBSERVABILITY_PORT', '{port}'" in text and f"EXPOSE {port}" in text
    default = text.split("CMD [")[-1]
    assert (
        '"run", "--config", "/app/examples/bridge.yaml"' in default
        and (ROOT / "examples/bridge.yaml").exists()
    )
    copied = [word for line in text.splitlines() if line.startswith("COPY ") for word in line.split()[1:-1]]
    assert {"bridge", "bridge/examples", "bridge/schemas", "pyproject.toml", "README.md"} <= set(copied)
    assert all((ROOT / path).exists() for path in copied)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'intilery-bridge = "bridge.cli:main"' in pyproject


def test_decode_benchmark_runs() -> None:
    """`make bench` runs bench/decode.py after bench/run.py; keep it runnable. Without
    --figures it leaves the measured figures (of `make bench`'s full run) as they are."""
    import subprocess
    import sys

    figures = ROOT / "docs" / "figures" / "decode.md"
    before = figures.read_text()
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench/decode.py"), "300"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "avro/json ratio" in result.stdout
    assert figures.read_text() == before


def healthcheck(dockerfile: str) -> list[str]:
    """The image's HEALTHCHECK command (exec form)."""
    line = dockerfile.split("HEALTHCHECK", 1)[1].split("CMD", 1)[1].split("\n")[0]
    return list(json.loads(line))


def test_the_image_health_check_follows_observability_port() -> None:
    """The HEALTHCHECK, run as Docker would, against a /healthz on a port of our choosing."""
    command = healthcheck((ROOT / "Dockerfile").read_text())
    command[0] = sys.executable

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), Health) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = str(server.server_address[1])
        assert subprocess.run(command, env={**os.environ, "OBSERVABILITY_PORT": port}).returncode == 0
        server.shutdown()
    assert (
        subprocess.run(
            command, env={**os.environ, "OBSERVABILITY_PORT": port}, capture_output=True
        ).returncode
        != 0
    )


def test_compose_sandbox_checks_its_own_port() -> None:
    sandbox = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["sandbox"]
    port = sandbox["command"][sandbox["command"].index("--port") + 1]
    assert f"http://127.0.0.1:{port}/_sandbox/" in " ".join(sandbox["healthcheck"]["test"])
