"""deploy/kubernetes: every manifest valid against the Kubernetes schemas (the
kubernetes-validate package ships them), and consistent with the bridge it runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import kubernetes_validate
import pytest
import yaml

from bridge.ops.loading import load

DEPLOY = Path(__file__).parents[2] / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"  # the oldest release the manifests promise to fit
KUSTOMIZE = "kustomization.yaml"  # kustomize's own file, not a Kubernetes object
SECRET = "secret.example.yaml"  # created by hand, once: never applied with the kustomization
OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"


def manifests() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / KUSTOMIZE).read_text())
    return {name: yaml.safe_load((DEPLOY / name).read_text()) for name in kustomization["resources"]}


def of_kind(kind: str) -> dict[str, Any]:
    return next(m for m in manifests().values() if m["kind"] == kind)


def secret() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / SECRET).read_text())


def test_kustomization_names_every_manifest_but_the_secret() -> None:
    """`kubectl apply -k` re-applied secret.yaml's placeholder over the real token: every
    pod 403, never ready. The Secret is created once, by hand, and apply -k never has it."""
    listed = set(manifests())
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {KUSTOMIZE, SECRET}
    assert listed == on_disk
    assert "Secret" not in {m["kind"] for m in manifests().values()}
    kustomization = yaml.safe_load((DEPLOY / KUSTOMIZE).read_text())
    assert not {"secretGenerator", "generators"} & kustomization.keys()
    assert secret()["metadata"]["namespace"] == kustomization["namespace"]


def test_the_documented_steps_come_in_an_order_that_works() -> None:
    """The namespace exists before the Secret is created in it (it existed only at the
    next step), the Secret is named as the Deployment reads it, and apply -k comes last."""
    steps = OPERATIONS.read_text().split("## Operating on Kubernetes")[1].split("\n## ")[0]
    commands = [line.strip() for line in steps.splitlines() if line.strip().startswith("kubectl ")]
    namespace = yaml.safe_load((DEPLOY / KUSTOMIZE).read_text())["namespace"]
    creates_namespace = next(
        i
        for i, c in enumerate(commands)
        if c in (f"kubectl create namespace {namespace}", "kubectl apply -f deploy/kubernetes/namespace.yaml")
    )
    creates_secret = next(i for i, c in enumerate(commands) if " create secret generic " in c)
    applies = next(i for i, c in enumerate(commands) if c == "kubectl apply -k deploy/kubernetes")
    assert creates_namespace < creates_secret < applies
    secret_command = commands[creates_secret].split()
    assert secret_command[1:3] == ["-n", namespace]
    name = secret_command[secret_command.index("generic") + 1]
    container = of_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {e["secretRef"]["name"] for e in container["envFrom"]} == {name}
    assert "--from-literal=INTILERY_AUTH_TOKEN=" in commands[creates_secret]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != KUSTOMIZE)
)  # Secret too
def test_manifest_is_valid_kubernetes(name: str) -> None:
    document = yaml.safe_load((DEPLOY / name).read_text())
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)  # raises on any error


def test_the_validator_refuses_a_broken_manifest() -> None:
    """The check above can fail: a misspelt field and a wrong type are refused."""
    deployment = of_kind("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = of_kind("Deployment")
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def bridge_config(tmp_path: Path) -> Any:
    """The ConfigMap's bridge.yaml, loaded as `run` loads it (the Secret's variables set)."""
    path = tmp_path / "bridge.yaml"
    path.write_text(of_kind("ConfigMap")["data"]["bridge.yaml"])
    env = {**secret()["stringData"], "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    with mock.patch.dict(os.environ, env):
        return load(str(path)).config


def test_the_deployment_fits_the_bridge_it_runs(tmp_path: Path) -> None:
    config = bridge_config(tmp_path)
    deployment = of_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # SIGTERM: the commands on the wire finish and the commit is made before the kill.
    assert pod["terminationGracePeriodSeconds"] > config.delivery.shutdown_grace_s
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    assert port == config.observability.port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Membership only: the full /readyz during an Intilery outage made every pod NotReady
    # at once, and the PodDisruptionBudget then blocked node drains.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz?scope=group"
    assert of_kind("Service")["spec"]["publishNotReadyAddresses"] is True  # scraped when not ready
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")["mountPath"]
    assert container["args"] == ["run", "--config", f"{mount}/bridge.yaml"]
    assert {e["secretRef"]["name"] for e in container["envFrom"]} == {secret()["metadata"]["name"]}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        selector = of_kind(kind)["spec"]["selector"]
        assert selector.get("matchLabels", selector).items() <= pod_labels.items(), kind
    service_port = of_kind("Service")["spec"]["ports"][0]
    assert service_port["targetPort"] == "metrics"


def test_no_secret_in_the_configmap(tmp_path: Path) -> None:
    """The token reaches the pod only from the Secret, through the environment."""
    text = of_kind("ConfigMap")["data"]["bridge.yaml"]
    assert "${INTILERY_AUTH_TOKEN}" in text
    for value in secret()["stringData"].values():
        assert value not in text


def test_a_first_deploy_does_not_message_what_the_topics_retain(tmp_path: Path) -> None:
    """The shipped ConfigMap started a new group at earliest with no max_age: a first
    deploy texted every retained abandoned booking."""
    config = bridge_config(tmp_path)
    assert config.source.start_from == "latest"
    assert config.kafka.get("auto.offset.reset") in (None, "latest")
    rules = yaml.safe_load(of_kind("ConfigMap")["data"]["bridge.yaml"])["rules"]
    sends = [rule for rule in rules if str(rule["emit"].get("event", "")).startswith("send_")]
    assert sends and all(rule.get("max_age") for rule in sends), [r["name"] for r in sends]
