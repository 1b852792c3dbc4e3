"""The Kubernetes manifests, rendered by ``kubectl kustomize`` as a cluster would get them.

kubectl is a required tool of this repository (CI has it): without it the
test fails and says so, it does not skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SERVERS = {
    "identity": (50051, 9101, "astra.identity.v1.IdentityService"),
    "ledger": (50052, 9102, "astra.ledger.v1.LedgerService"),
    "payments": (50053, 9103, "astra.payments.v1.PaymentsService"),
}
RELAYS = {f"{name}-relay": name for name in SERVERS}

Manifest = dict[str, Any]


@cache
def render(folder: str) -> tuple[Manifest, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (with its built-in kustomize) is needed to render deploy/k8s")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_specs(manifests: tuple[Manifest, ...]) -> dict[str, Manifest]:
    workloads = {**of_kind(manifests, "Deployment"), **of_kind(manifests, "StatefulSet")}
    return {name: w["spec"]["template"]["spec"] for name, w in workloads.items()}


def containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.fixture(params=["base", "overlays/dev"])
def manifests(request: pytest.FixtureRequest) -> tuple[Manifest, ...]:
    return render(request.param)


def test_every_server_and_relay_is_deployed(manifests: tuple[Manifest, ...]) -> None:
    deployments = of_kind(manifests, "Deployment")
    assert set(SERVERS) | set(RELAYS) <= set(deployments)
    services = of_kind(manifests, "Service")
    for name, (grpc_port, metrics_port, _) in SERVERS.items():
        ports = {p["name"]: p["port"] for p in services[name]["spec"]["ports"]}
        assert ports == {"grpc": grpc_port, "metrics": metrics_port}
        assert services[name]["spec"]["selector"].items() <= (
            deployments[name]["spec"]["template"]["metadata"]["labels"].items()
        )


def test_servers_have_grpc_readiness_and_liveness_probes(manifests: tuple[Manifest, ...]) -> None:
    specs = pod_specs(manifests)
    for name, (grpc_port, _, proto_service) in SERVERS.items():
        (server,) = specs[name]["containers"]
        assert server["readinessProbe"]["grpc"] == {"port": grpc_port, "service": proto_service}
        assert server["livenessProbe"]["grpc"]["port"] == grpc_port
        assert server["args"] == ["serve"]
    for relay in RELAYS:
        (container,) = specs[relay]["containers"]
        assert container["command"] == ["astra-relay"]
        assert "grpc" in container["readinessProbe"]
        assert "grpc" in container["livenessProbe"]


def test_every_container_has_resources_and_runs_unprivileged(
    manifests: tuple[Manifest, ...],
) -> None:
    for name, spec in pod_specs(manifests).items():
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] != 0, name
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in containers(spec):
            where = f"{name}/{container['name']}"
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), where
            assert {"cpu", "memory"} <= resources["limits"].keys(), where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where


def test_our_images_run_with_read_only_root_and_the_migrations_first(
    manifests: tuple[Manifest, ...],
) -> None:
    specs = pod_specs(manifests)
    for name in SERVERS:
        (migrate,) = specs[name]["initContainers"]
        assert migrate["args"] == ["migrate"]
        assert migrate["image"] == specs[name]["containers"][0]["image"]
    for name in [*SERVERS, *RELAYS]:
        for container in containers(specs[name]):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["image"].split(":")[0].startswith("astra-")


def test_config_comes_from_config_maps_and_secrets_from_secrets(
    manifests: tuple[Manifest, ...],
) -> None:
    specs = pod_specs(manifests)
    for name in SERVERS:
        for container in containers(specs[name]):
            sources = container["envFrom"]
            maps = [s["configMapRef"]["name"] for s in sources if "configMapRef" in s]
            secrets = [s["secretRef"]["name"] for s in sources if "secretRef" in s]
            assert any(m.startswith(f"{name}-config") for m in maps)
            assert any(m.startswith("astra-common") for m in maps)
            assert [s.split("-secrets")[0] for s in secrets] == [name]
    config_maps = of_kind(manifests, "ConfigMap")
    for data in (m.get("data", {}) for m in config_maps.values()):
        for key in data:
            # database URLs carry passwords; tokens and keys are secrets
            assert not any(word in key for word in ("DATABASE_URL", "SECRET", "KEY", "PASSWORD"))


def test_the_dev_overlay_provides_every_secret_and_config_map_it_references() -> None:
    manifests = render("overlays/dev")
    secrets = set(of_kind(manifests, "Secret"))
    config_maps = set(of_kind(manifests, "ConfigMap"))
    for name, spec in pod_specs(manifests).items():
        for container in containers(spec):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = of_kind(manifests, "Secret")[ref["name"]]
                    assert ref["key"] in secret.get("data", {}), (name, ref)


def test_the_dev_overlay_runs_one_of_each_with_dev_images_in_its_namespace() -> None:
    manifests = render("overlays/dev")
    assert {m["metadata"].get("namespace") for m in manifests if m["kind"] != "Namespace"} == {
        "astra-dev"
    }
    deployments = of_kind(manifests, "Deployment")
    assert {"sandbox-bank", "pubsub-emulator"} <= set(deployments)
    for name in [*SERVERS, *RELAYS]:
        assert deployments[name]["spec"]["replicas"] == 1
        image = deployments[name]["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"astra-{RELAYS.get(name, name)}:dev"
    config = next(
        m["data"] for n, m in of_kind(manifests, "ConfigMap").items() if n.startswith("payments-")
    )
    assert config["PAYMENTS_BANK_URL"] == "http://sandbox-bank:8181"


def test_metrics_are_announced_for_scraping(manifests: tuple[Manifest, ...]) -> None:
    deployments = of_kind(manifests, "Deployment")
    for name, (_, metrics_port, _) in SERVERS.items():
        annotations = deployments[name]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(metrics_port)
        ports = {
            p["name"]: p["containerPort"]
            for p in deployments[name]["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert ports["metrics"] == metrics_port


def test_payments_follows_identity_through_the_subscription_terraform_declares(
    manifests: tuple[Manifest, ...],
) -> None:
    variables = (ROOT / "deploy" / "terraform" / "variables.tf").read_text()
    declared = {
        name: (consumer, producer)
        for name, consumer, producer in re.findall(
            r'"([a-z0-9-]+)"\s*=\s*\{\s*consumer\s*=\s*"(\w+)",\s*producer\s*=\s*"(\w+)"\s*\}',
            variables,
        )
    }
    config = next(
        m["data"]
        for name, m in of_kind(manifests, "ConfigMap").items()
        if name.startswith("payments-config")
    )
    subscription = config["PAYMENTS_KYC_SUBSCRIPTION"]
    assert declared.get(subscription) == ("payments", "identity"), (subscription, declared)
    # Where the relay creates topics (dev), it creates this subscription before publishing.
    (relay,) = pod_specs(manifests)["identity-relay"]["containers"]
    env = {variable["name"]: variable.get("value", "") for variable in relay.get("env", [])}
    assert subscription in env["RELAY_SUBSCRIPTIONS"].split(",")
