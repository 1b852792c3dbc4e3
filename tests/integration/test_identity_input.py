"""Hostile input to identity over gRPC: each is INVALID_ARGUMENT naming its field, nothing is
written, and no call is INTERNAL (found by the contract fuzzer, tests/e2e/test_contract_fuzz.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import grpc
import pytest
from astra.identity.v1 import identity_pb2 as pb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from chassis.grpc.status import bad_request
from identity.adapters import tables
from identity.bootstrap import Identity
from sqlalchemy import func, select

from tests.identity_fixtures import IdentityServer


def refused_fields(call: Callable[[], Any]) -> list[tuple[str, str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    violations = bad_request(caught.value)
    assert violations is not None
    return [(v.field, v.reason) for v in violations.field_violations]


def rows(identity: Identity) -> tuple[int, int, int]:
    with identity.engine.connect() as connection:
        return (
            connection.execute(select(func.count()).select_from(tables.customers)).scalar_one(),
            connection.execute(select(func.count()).select_from(tables.clients)).scalar_one(),
            connection.execute(select(func.count()).select_from(tables.outbox)).scalar_one(),
        )


def test_nul_in_an_unauthenticated_token_request_is_invalid_argument(
    identity_server: IdentityServer,
) -> None:
    with identity_server.anonymous() as channel:
        stub = IdentityServiceStub(channel)
        for client_id in ("cli_\x00", "\x00", "cli_a\x00b"):
            request = pb.IssueTokenRequest(
                client_id=client_id, client_secret="s", audience="ledger"
            )
            assert refused_fields(partial(stub.IssueToken, request)) == [("client_id", "")]


@pytest.mark.parametrize("bad", ["cus_\x00", "a\x00b", "cus_" + "a" * 61])
def test_nul_or_malformed_ids_are_refused_before_they_are_looked_up(
    identity_stub: IdentityServiceStub, bad: str
) -> None:
    assert refused_fields(
        lambda: identity_stub.GetCustomer(pb.GetCustomerRequest(customer_id=bad))
    ) == [("customer_id", "")]
    client_id = bad.replace("cus_", "cli_")
    assert refused_fields(
        lambda: identity_stub.GetClient(pb.GetClientRequest(client_id=client_id))
    ) == [("client_id", "")]
    assert refused_fields(
        lambda: identity_stub.DisableClient(pb.DisableClientRequest(client_id=client_id))
    ) == [("client_id", "")]


def test_text_with_nul_or_control_characters_is_refused_and_nothing_is_written(
    identity_stub: IdentityServiceStub, identity: Identity
) -> None:
    before = rows(identity)
    customer = pb.Customer(id="cus_nul", display_name="Ada\x00", email="ada@example.com")
    assert refused_fields(
        lambda: identity_stub.CreateCustomer(pb.CreateCustomerRequest(customer=customer))
    ) == [("customer.display_name", "")]
    client = pb.Client(id="cli_nul", display_name="App\x1b[2J", allowed_scopes=["x.y"])
    assert refused_fields(
        lambda: identity_stub.RegisterClient(pb.RegisterClientRequest(client=client))
    ) == [("client.display_name", ""), ("client.allowed_scopes[0]", "UNKNOWN_SCOPE")]
    assert rows(identity) == before


def test_a_client_cannot_be_allowed_a_scope_no_contract_declares(
    identity_stub: IdentityServiceStub, identity: Identity
) -> None:
    before = rows(identity)
    client = pb.Client(
        id="cli_new",
        display_name="New",
        allowed_scopes=["ledger.accounts.read", "ledger.everything", "payments.payments.write"],
    )
    assert refused_fields(
        lambda: identity_stub.RegisterClient(pb.RegisterClientRequest(client=client))
    ) == [("client.allowed_scopes[1]", "UNKNOWN_SCOPE")]
    assert rows(identity) == before


@pytest.mark.parametrize("status", [5, 99, -1, 2**31 - 1])
def test_an_undefined_kyc_status_filter_is_refused_not_ignored(
    identity_stub: IdentityServiceStub, status: int
) -> None:
    assert refused_fields(
        lambda: identity_stub.ListCustomers(pb.ListCustomersRequest(kyc_status=status))  # type: ignore[arg-type]
    ) == [("kyc_status", "")]
