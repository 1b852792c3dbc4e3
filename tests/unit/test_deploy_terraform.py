"""The Terraform for Google Cloud: formatted, every variable declared, the promised resources there.

``terraform validate`` needs the providers, which cannot be downloaded here; the
structure is checked from the files instead. terraform itself is a required
tool (``terraform fmt`` works offline): without it the test fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

TERRAFORM = Path(__file__).resolve().parents[2] / "deploy" / "terraform"


def _sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(TERRAFORM.glob("*.tf"))}


def _blocks(kind: str, text: str) -> dict[str, str]:
    """Top-level ``<kind> "type" "name" { ... }`` blocks (or ``<kind> "name" {``), by name."""
    found: dict[str, str] = {}
    pattern = re.compile(rf'^{kind}\s+((?:"[^"]+"\s+)+)\{{', re.MULTILINE)
    for match in pattern.finditer(text):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                break
        name = ".".join(re.findall(r'"([^"]+)"', match.group(1)))
        found[name] = text[match.end() : end]
    return found


def test_terraform_files_are_formatted() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.fail("terraform is needed to check deploy/terraform (terraform fmt works offline)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_variable_used_is_declared_and_documented() -> None:
    sources = _sources()
    declared = _blocks("variable", sources["variables.tf"])
    used = {name for text in sources.values() for name in re.findall(r"\bvar\.(\w+)", text)}
    assert used <= set(declared)
    assert set(declared) <= used, "declared but unused"
    for name, body in declared.items():
        assert "description" in body, name


def test_topics_subscriptions_with_dead_letters_and_retry_policy() -> None:
    resources = _blocks("resource", "\n".join(_sources().values()))
    events = resources["google_pubsub_topic.events"]
    assert 'name                       = "astra-${each.key}-events"' in events
    subscription = resources["google_pubsub_subscription.events"]
    for part in ("retry_policy", "dead_letter_policy", "enable_message_ordering = true"):
        assert part in subscription
    assert "google_pubsub_topic.dead_letter[each.key].id" in subscription
    # Pub/Sub's service agent must be allowed to move messages to the dead-letter topic
    assert (
        "roles/pubsub.publisher"
        in resources["google_pubsub_topic_iam_member.dead_letter_publisher"]
    )
    assert (
        "roles/pubsub.subscriber"
        in resources["google_pubsub_subscription_iam_member.dead_letter_forwarder"]
    )


def test_postgres_per_context_and_a_service_account_per_context() -> None:
    resources = _blocks("resource", "\n".join(_sources().values()))
    instance = resources["google_sql_database_instance.context"]
    assert "for_each = toset(var.contexts)" in instance
    assert "database_version    = var.database_version" in instance
    assert "point_in_time_recovery_enabled = true" in instance
    assert "ipv4_enabled    = false" in instance
    assert "for_each = toset(var.contexts)" in resources["google_service_account.context"]
    assert (
        "roles/iam.workloadIdentityUser"
        in resources["google_service_account_iam_member.workload_identity"]
    )
    variables = _blocks("variable", _sources()["variables.tf"])
    assert '["identity", "ledger", "payments"]' in variables["contexts"]
    assert 'default     = "POSTGRES_15"' in variables["database_version"]


def test_outputs_describe_what_the_deployment_needs() -> None:
    outputs = _blocks("output", _sources()["outputs.tf"])
    assert {"topics", "subscriptions", "service_accounts", "database_urls"} <= set(outputs)
    assert "sensitive   = true" in outputs["database_urls"]
    for name, body in outputs.items():
        assert "description" in body, name


def test_database_urls_verify_the_server_against_the_ca_terraform_outputs() -> None:
    sources = _sources()
    outputs = _blocks("output", sources["outputs.tf"])
    (url,) = re.findall(r'"(postgresql://[^"]+)"', outputs["database_urls"])
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    assert query["sslmode"] == "verify-full"
    assert query["sslrootcert"] == "/etc/astra/postgres/ca.crt"  # where k8s mounts postgres-ca
    assert "server_ca_cert" in outputs["database_server_ca"]
    instance = _blocks("resource", sources["cloudsql.tf"])["google_sql_database_instance.context"]
    # Server certificates that name the instance (the shared CA), and no plaintext.
    assert re.search(r'server_ca_mode\s*=\s*"GOOGLE_MANAGED_CAS_CA"', instance)
    assert re.search(r'ssl_mode\s*=\s*"ENCRYPTED_ONLY"', instance)
