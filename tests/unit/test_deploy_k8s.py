"""The Kubernetes manifests, rendered by ``kubectl kustomize`` as a cluster would get them.

kubectl is a required tool of this repository (CI has it): without it the
test fails and says so, it does not skip.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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


PROBES = ("readinessProbe", "livenessProbe", "startupProbe")


def test_probes_run_the_health_check_over_mutual_tls(manifests: tuple[Manifest, ...]) -> None:
    """Kubernetes' gRPC probes present no client certificate: each probe execs the image's
    own ``health`` command, which does."""
    specs = pod_specs(manifests)
    for name in [*SERVERS, *RELAYS]:
        (container,) = specs[name]["containers"]
        program = "astra-relay" if name in RELAYS else f"astra-{name}"
        for probe in PROBES:
            assert container[probe].keys() & {"grpc", "httpGet", "tcpSocket"} == set(), name
            assert container[probe]["exec"]["command"] == [program, "health"], (name, probe)
            assert container[probe]["timeoutSeconds"] >= 2, (name, probe)
        if name in SERVERS:
            assert container["args"] == ["serve"]
        else:
            assert container["command"] == ["astra-relay"]


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
    assert config["PAYMENTS_BANK_URL"] == "https://sandbox-bank:8181"


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


# --- mutual TLS: certificates, mounts, settings -------------------------------------------

TLS_PREFIX = {**{name: name.upper() for name in SERVERS}, **dict.fromkeys(RELAYS, "RELAY")}
TLS_FILES = {"CERT": "tls.crt", "KEY": "tls.key", "CA": "ca.crt"}


def namespace_of(manifests: tuple[Manifest, ...]) -> str:
    (namespace,) = {m["metadata"]["namespace"] for m in manifests if m["kind"] == "Deployment"}
    return str(namespace)


def hours(duration: str) -> float:
    match = re.fullmatch(r"(\d+)h", duration)
    assert match, f"{duration!r}: durations are written in hours"
    return float(match.group(1))


def test_every_part_has_a_certificate_naming_it(manifests: tuple[Manifest, ...]) -> None:
    certificates = of_kind(manifests, "Certificate")
    issuers = of_kind(manifests, "Issuer")
    assert "ca" in issuers["astra-ca"]["spec"]
    namespace = namespace_of(manifests)
    for part in [*SERVERS, *RELAYS]:
        spec = certificates[part]["spec"]
        assert spec["issuerRef"] == {"kind": "Issuer", "name": "astra-ca"}, part
        if part in SERVERS:
            assert spec["uris"] == [f"spiffe://astra/{part}"]
            assert {part, f"{part}.{namespace}.svc"} <= set(spec["dnsNames"]), part
        else:
            # The relays' role is one: the name the relay's health check expects.
            assert spec["uris"] == ["spiffe://astra/relay"]
            assert {"relay", part} <= set(spec["dnsNames"])
        assert {"server auth", "client auth"} <= set(spec["usages"]), part
        assert 0 < hours(spec["renewBefore"]) < hours(spec["duration"]) <= 24 * 90, part
        assert spec["privateKey"]["rotationPolicy"] == "Always", part
        assert spec["secretName"] == f"{part}-tls"


def test_every_part_mounts_its_certificate_and_its_settings_point_into_it(
    manifests: tuple[Manifest, ...],
) -> None:
    certificates = of_kind(manifests, "Certificate")
    for name, spec in pod_specs(manifests).items():
        if name not in TLS_PREFIX:
            continue
        secret = certificates[name]["spec"]["secretName"]
        (volume,) = [
            v["name"] for v in spec["volumes"] if v.get("secret", {}).get("secretName") == secret
        ]
        for container in containers(spec):
            where = f"{name}/{container['name']}"
            (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume]
            # A subPath mount is never updated: a renewed certificate would not be seen.
            assert "subPath" not in mount, where
            assert mount["readOnly"] is True, where
            env = {v["name"]: v.get("value") for v in container.get("env", [])}
            for setting, file in TLS_FILES.items():
                variable = f"{TLS_PREFIX[name]}_TLS_{setting}_FILE"
                assert env.get(variable) == f"{mount['mountPath']}/{file}", (where, variable)


# --- who may talk to whom -------------------------------------------------------------------

GATEWAY = "gateway"
MONITORING = "monitoring"
# Outside callers reach identity (tokens) and payments through the gateway; the ledger only
# serves payments.
FROM_OUTSIDE = {"identity": {GATEWAY}, "ledger": set(), "payments": {GATEWAY}}
DNS, POSTGRES, HTTPS = ("dns", 53), ("any", 5432), ("any", 443)
EGRESS = {
    "identity": {DNS, POSTGRES},
    "ledger": {DNS, POSTGRES, ("identity", 50051)},
    "payments": {DNS, POSTGRES, HTTPS, ("ledger", 50052), ("identity", 50051)},
    **{relay: {DNS, POSTGRES, HTTPS} for relay in RELAYS},
}


def selects(policy: Manifest, labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return bool(wanted.items() <= labels.items())


def peer(entry: Manifest) -> str:
    """Who a ``from``/``to`` entry lets through: a server by name, the gateway, monitoring."""
    pods = entry.get("podSelector", {}).get("matchLabels", {})
    namespaces = entry.get("namespaceSelector", {}).get("matchLabels")
    if namespaces == {"astra.io/gateway": "true"} and pods == {"astra.io/gateway": "true"}:
        return GATEWAY
    if namespaces == {"astra.io/monitoring": "true"} and not pods:
        return MONITORING
    if namespaces == {"kubernetes.io/metadata.name": "kube-system"}:
        assert pods == {"k8s-app": "kube-dns"}
        return "dns"
    assert namespaces is None, entry
    if pods == {"app.kubernetes.io/part-of": "astra"}:
        return "astra"
    if pods.get("app.kubernetes.io/component") == "relay":
        return "relay"
    # A server by its name (or one of the dev stand-ins, which have no component).
    return str(pods["app.kubernetes.io/name"])


def rules(
    manifests: tuple[Manifest, ...], labels: dict[str, str], way: str
) -> set[tuple[str, int]]:
    """(peer, port) pairs the policies selecting pods with ``labels`` let through ``way``."""
    allowed: set[tuple[str, int]] = set()
    for policy in of_kind(manifests, "NetworkPolicy").values():
        if not selects(policy, labels):
            continue
        for rule in policy["spec"].get(way, []):
            peers = [peer(e) for e in rule.get("from" if way == "ingress" else "to", [])] or ["any"]
            assert rule.get("ports"), (policy["metadata"]["name"], "a rule names its ports")
            allowed |= {(p, port["port"]) for p in peers for port in rule["ports"]}
    return allowed


def callers_by_config(manifests: tuple[Manifest, ...]) -> dict[str, set[str]]:
    """Who calls each server, from the ``*_TARGET`` settings (host = the Service's name)."""
    callers: dict[str, set[str]] = {name: set() for name in SERVERS}
    for map_name, config in of_kind(manifests, "ConfigMap").items():
        caller = map_name.split("-config")[0]
        for key, value in config.get("data", {}).items():
            if key.endswith("_TARGET") and caller in SERVERS:
                callers[value.split(":")[0]].add(caller)
    return callers


def test_everything_is_denied_unless_a_policy_lets_it(manifests: tuple[Manifest, ...]) -> None:
    deny = of_kind(manifests, "NetworkPolicy")["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for policy in of_kind(manifests, "NetworkPolicy").values():
        kinds = set(policy["spec"]["policyTypes"])
        assert {"Egress"} <= kinds, policy["metadata"]["name"]


def test_each_server_is_reached_only_by_its_callers(manifests: tuple[Manifest, ...]) -> None:
    deployments = of_kind(manifests, "Deployment")
    callers = callers_by_config(manifests)
    assert callers == {
        "identity": {"ledger", "payments"},
        "ledger": {"payments"},
        "payments": set(),
    }
    for name, (grpc_port, metrics_port, _) in SERVERS.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        allowed = rules(manifests, labels, "ingress")
        expected = {(c, grpc_port) for c in callers[name] | FROM_OUTSIDE[name]}
        assert allowed == expected | {(MONITORING, metrics_port)}, name
    for relay in RELAYS:
        labels = deployments[relay]["spec"]["template"]["metadata"]["labels"]
        assert rules(manifests, labels, "ingress") == {(MONITORING, 9104)}


def test_each_part_reaches_only_what_it_calls() -> None:
    manifests = render("base")
    deployments = of_kind(manifests, "Deployment")
    for name, expected in EGRESS.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert rules(manifests, labels, "egress") == expected, name


def test_the_dev_stand_ins_are_let_in_from_their_users_only() -> None:
    manifests = render("overlays/dev")
    deployments = {**of_kind(manifests, "Deployment"), **of_kind(manifests, "StatefulSet")}
    expected = {
        "postgres": 5432,
        "pubsub-emulator": 8085,
        "sandbox-bank": 8181,
    }
    for name, port in expected.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        ingress = rules(manifests, labels, "ingress")
        assert ingress, name
        assert {p for _, p in ingress} == {port}, name
        assert ("any", port) not in ingress, name
    payments = deployments["payments"]["spec"]["template"]["metadata"]["labels"]
    assert {("sandbox-bank", 8181), ("pubsub-emulator", 8085)} <= rules(
        manifests, payments, "egress"
    )


# --- PostgreSQL and the bank: the server is verified ---------------------------------------


def secret_values(manifests: tuple[Manifest, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for secret in of_kind(manifests, "Secret").values():
        for key, value in secret.get("data", {}).items():
            values[key] = base64.b64decode(value).decode()
    return values


def test_database_urls_verify_the_servers_certificate_and_name() -> None:
    manifests = render("overlays/dev")
    urls = {k: v for k, v in secret_values(manifests).items() if k.endswith("DATABASE_URL")}
    assert set(urls) == {f"{name.upper()}_DATABASE_URL" for name in SERVERS}
    specs = pod_specs(manifests)
    for variable, url in urls.items():
        query = parse_qs(urlsplit(url).query)
        assert query["sslmode"] == ["verify-full"], variable
        (root,) = query["sslrootcert"]
        # Every container given this URL has the CA file mounted where the URL says.
        context = variable.split("_")[0].lower()
        for name in (context, f"{context}-relay"):
            for container in containers(specs[name]):
                paths = {m["mountPath"] for m in container["volumeMounts"]}
                assert root.rsplit("/", 1)[0] in paths, (name, container["name"], root)
    # The base names no database URL (Terraform's database_urls output has them) but mounts
    # the CA those URLs point to.
    outputs = (ROOT / "deploy" / "terraform" / "outputs.tf").read_text()
    (terraform_root,) = re.findall(r"sslrootcert=([^\"&]+)", outputs)
    for name, spec in pod_specs(render("base")).items():
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["postgres-ca"]["secret"]["secretName"] == "postgres-ca", name
        for container in containers(spec):
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts[terraform_root.rsplit("/", 1)[0]] == "postgres-ca", name


def test_payments_talks_to_the_bank_over_https_with_a_signing_key(
    manifests: tuple[Manifest, ...],
) -> None:
    config = next(
        m["data"] for n, m in of_kind(manifests, "ConfigMap").items() if n.startswith("payments-")
    )
    assert config["PAYMENTS_ENVIRONMENT"] == "production"
    assert config["PAYMENTS_BANK_URL"].startswith("https://")


def test_in_dev_payments_and_the_sandbox_bank_share_the_signing_key_and_the_ca() -> None:
    manifests = render("overlays/dev")
    values = secret_values(manifests)
    assert len(values["PAYMENTS_BANK_SIGNING_KEY"]) >= 32
    assert values["PAYMENTS_BANK_SIGNING_KEY"] == values["SANDBOX_BANK_SIGNING_KEY"]
    config = next(
        m["data"] for n, m in of_kind(manifests, "ConfigMap").items() if n.startswith("payments-")
    )
    (payments,) = pod_specs(manifests)["payments"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in payments["volumeMounts"]}
    ca_dir = config["PAYMENTS_BANK_CA_FILE"].rsplit("/", 1)[0]
    assert mounts[ca_dir] == "tls"  # the CA that also signed the sandbox bank's certificate
    bank = of_kind(manifests, "Certificate")["sandbox-bank"]["spec"]
    assert urlsplit(config["PAYMENTS_BANK_URL"]).hostname in bank["dnsNames"]
    assert bank["issuerRef"]["name"] == "astra-ca"
