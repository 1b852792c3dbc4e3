"""Authorization is declared in the contracts: every RPC states its scopes or that it is open."""

from __future__ import annotations

import pytest
from astra.identity.v1 import identity_pb2
from astra.ledger.v1 import ledger_pb2
from chassis.auth.policy import (
    AccessPolicy,
    UndeclaredAccess,
    contract_services,
    declared_scopes,
)
from grpc_health.v1 import health_pb2

LEDGER = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"]
IDENTITY = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"]


def test_every_ledger_and_identity_method_declares_a_rule() -> None:
    policy = AccessPolicy.for_services(LEDGER, IDENTITY)
    assert len(policy.methods) == len(LEDGER.methods) + len(IDENTITY.methods)


def test_every_service_in_the_contracts_declares_its_rules() -> None:
    services = list(contract_services())
    assert {s.full_name for s in services} >= {LEDGER.full_name, IDENTITY.full_name}
    policy = AccessPolicy.for_services(*services)  # raises on any method without a rule
    assert len(policy.methods) == sum(len(s.methods) for s in services)


def test_only_the_token_endpoint_public_keys_and_revocations_are_open() -> None:
    policy = AccessPolicy.for_services(*contract_services())
    open_methods = {m for m, rule in policy.methods.items() if rule.allow_unauthenticated}
    assert open_methods == {
        "/astra.identity.v1.IdentityService/IssueToken",
        "/astra.identity.v1.IdentityService/GetPublicKeys",
        # What verifiers follow: they have no token of their own; it holds no secret.
        "/astra.identity.v1.IdentityService/ListRevocations",
    }
    closed = [r for r in policy.methods.values() if not r.allow_unauthenticated]
    assert all(r.required_scopes for r in closed)


@pytest.mark.parametrize(
    ("method", "scope"),
    [
        ("/astra.ledger.v1.LedgerService/OpenAccount", "ledger.accounts.write"),
        ("/astra.ledger.v1.LedgerService/GetAccount", "ledger.accounts.read"),
        ("/astra.ledger.v1.LedgerService/ListAccountEntries", "ledger.accounts.read"),
        ("/astra.ledger.v1.LedgerService/CreateTransfers", "ledger.transfers.write"),
        ("/astra.ledger.v1.LedgerService/GetTransfer", "ledger.transfers.read"),
        ("/astra.identity.v1.IdentityService/ReviewKyc", "identity.kyc.review"),
        ("/astra.identity.v1.IdentityService/RotateSigningKey", "identity.keys.admin"),
        ("/astra.identity.v1.IdentityService/RegisterClient", "identity.clients.admin"),
        (
            "/astra.identity.v1.IdentityService/IssueCustomerToken",
            "identity.tokens.issue_customer",
        ),
    ],
)
def test_methods_require_their_scope(method: str, scope: str) -> None:
    rule = AccessPolicy.for_services(LEDGER, IDENTITY).rule_for(method)
    assert rule is not None
    assert rule.required_scopes == {scope}


def test_a_service_without_rules_cannot_be_served() -> None:
    health = health_pb2.DESCRIPTOR.services_by_name["Health"]
    with pytest.raises(UndeclaredAccess, match="declares no"):
        AccessPolicy.for_services(health)


def test_the_scope_catalogue_comes_from_the_contracts() -> None:
    scopes = declared_scopes()
    assert {
        "ledger.accounts.read",
        "ledger.accounts.write",
        "ledger.transfers.read",
        "ledger.transfers.write",
        "identity.customers.read",
        "identity.customers.write",
        "identity.kyc.review",
        "identity.clients.admin",
        "identity.keys.admin",
        "identity.tokens.issue_customer",
    } <= scopes
