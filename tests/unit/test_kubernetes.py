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


def manifests() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / KUSTOMIZE).read_text())
    return {name: yaml.safe_load((DEPLOY / name).read_text()) for name in kustomization["resources"]}


def of_kind(kind: str) -> dict[str, Any]:
    return next(m for m in manifests().values() if m["kind"] == kind)


def test_kustomization_names_every_manifest_and_nothing_else() -> None:
    listed = set(manifests())
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {KUSTOMIZE}
    assert listed == on_disk


@pytest.mark.parametrize("name", sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != KUSTOMIZE))
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
    secret = of_kind("Secret")["stringData"]
    env = {**secret, "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
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
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")["mountPath"]
    assert container["args"] == ["run", "--config", f"{mount}/bridge.yaml"]
    assert {e["secretRef"]["name"] for e in container["envFrom"]} == {of_kind("Secret")["metadata"]["name"]}
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
    for value in of_kind("Secret")["stringData"].values():
        assert value not in text
