"""Sanctions screening of customers at KYC, on PostgreSQL through identity's gRPC API."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from astra.identity.v1 import identity_pb2 as pb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from chassis.auth.policy import declared_scopes
from chassis.grpc.status import reason_of
from identity.bootstrap import bootstrap
from identity.domain.model import ClientSpec
from identity.entrypoints.admin import rescreen_all
from identity.entrypoints.server import build_server
from identity.service_layer import use_cases
from screening.matcher import Screener
from screening.samples import sample_list, write_sdn
from screening.sdn import SdnEntry, load_sdn

from tests.identity_fixtures import ADMIN_ID, IdentityServer, identity_settings
from tests.ledger_fixtures import MovableClock

LISTED = SdnEntry("93001", "KORVANI, Dashel Miro", "individual", ("SDGT",), ("QORVANI, Dashil",))
LATER = SdnEntry("93002", "PELLATRO, Marin", "individual", ("CYBER2",))


@pytest.fixture
def screened(identity_db_url: str, tmp_path: Path) -> Iterator[tuple[IdentityServer, object]]:
    listed = write_sdn([*sample_list(12, 200).entries, LISTED], tmp_path / "v1")
    app = bootstrap(
        identity_settings(identity_db_url, sanctions_list_file=str(listed)), MovableClock()
    )
    _, secret = use_cases.register_client(
        app.deps, ClientSpec(ADMIN_ID, "Test admin", tuple(sorted(declared_scopes())))
    )
    server = build_server(app, app.settings)
    port = server.start()
    yield IdentityServer(f"127.0.0.1:{port}", server, ADMIN_ID, secret), app
    server.server.stop(0)
    app.close()


def kyc(stub: IdentityServiceStub, customer_id: str, name: str) -> pb.Customer:
    stub.CreateCustomer(
        pb.CreateCustomerRequest(
            customer=pb.Customer(id=customer_id, display_name=name, email="x@example.com")
        )
    )
    return stub.SubmitKyc(
        pb.SubmitKycRequest(request_id=f"kyc_{customer_id}_s", customer_id=customer_id)
    ).customer


def review(
    stub: IdentityServiceStub, customer_id: str, decision: int, reason: str, n: int = 0
) -> pb.Customer:
    return stub.ReviewKyc(
        pb.ReviewKycRequest(
            request_id=f"kyc_{customer_id}_r{n}",
            customer_id=customer_id,
            decision=decision,  # type: ignore[arg-type]
            reason=reason,
        )
    ).customer


def test_a_listed_customer_is_held_until_an_analyst_clears_it_with_a_reason(
    screened: tuple[IdentityServer, object],
) -> None:
    server, _ = screened
    with server.channel() as channel:
        stub = IdentityServiceStub(channel)
        submitted = kyc(stub, "cus_sdn_hit", "Dashil Qorvany")
        found = submitted.sanctions_screening
        assert found.outcome == pb.SANCTIONS_SCREENING_OUTCOME_HIT
        assert (found.entry_uid, found.matched_name, list(found.programs)) == (
            "93001",
            "QORVANI, Dashil",
            ["SDGT"],
        )
        assert found.decision == pb.SANCTIONS_SCREENING_DECISION_UNSPECIFIED
        with pytest.raises(grpc.RpcError) as refused:
            review(stub, "cus_sdn_hit", pb.KYC_DECISION_APPROVE, "")
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(refused.value) == "SANCTIONS_CLEARANCE_REASON_REQUIRED"
        read = stub.GetCustomer(pb.GetCustomerRequest(customer_id="cus_sdn_hit")).customer
        assert read.kyc_status == pb.KYC_STATUS_PENDING_REVIEW
        approved = review(stub, "cus_sdn_hit", pb.KYC_DECISION_APPROVE, "namesake", 1)
        assert approved.kyc_status == pb.KYC_STATUS_VERIFIED
        decided = stub.GetCustomer(pb.GetCustomerRequest(customer_id="cus_sdn_hit")).customer
        screening = decided.sanctions_screening
        assert screening.decision == pb.SANCTIONS_SCREENING_DECISION_CLEARED
        assert screening.decided_by.client_id == ADMIN_ID
        assert screening.decision_reason == "namesake"
        clean = kyc(stub, "cus_sdn_clean", "Ada Lovelace")
        assert clean.sanctions_screening.outcome == pb.SANCTIONS_SCREENING_OUTCOME_CLEAR


def test_a_new_list_version_takes_a_verified_customer_back_to_review(
    screened: tuple[IdentityServer, object], tmp_path: Path
) -> None:
    server, app = screened
    with server.channel() as channel:
        stub = IdentityServiceStub(channel)
        kyc(stub, "cus_sdn_later", "Marin Pellatro")
        review(stub, "cus_sdn_later", pb.KYC_DECISION_APPROVE, "")
        second = load_sdn(write_sdn([LISTED, LATER], tmp_path / "v2"))
        deps = dataclasses.replace(app.deps, screener=Screener(second, 90))  # type: ignore[attr-defined]
        assert rescreen_all(deps) >= 1
        held = stub.GetCustomer(pb.GetCustomerRequest(customer_id="cus_sdn_later")).customer
        assert (held.kyc_status, held.kyc_reason) == (
            pb.KYC_STATUS_PENDING_REVIEW,
            "SANCTIONS_MATCH",
        )
        assert held.kyc_history[-1].actor == "sanctions-screening"
        assert held.sanctions_screening.entry_uid == "93002"
        assert held.sanctions_screening.list_version == second.version
        assert rescreen_all(deps) == 0
