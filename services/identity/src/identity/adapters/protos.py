"""Domain values <-> ``astra.identity.v1`` messages."""

from __future__ import annotations

from astra.identity.v1 import identity_pb2 as pb
from chassis.protos import enum_filter, set_requester, set_timestamp
from screening.matcher import Outcome

from identity.domain.model import (
    ClientSpec,
    CustomerSpec,
    CustomerView,
    KycDecision,
    KycStatus,
    ServiceClient,
    SigningKey,
    TokenRevocation,
)
from identity.domain.screening import CustomerScreening, Decision

_STATUS_TO_PB = {
    KycStatus.UNVERIFIED: pb.KYC_STATUS_UNVERIFIED,
    KycStatus.PENDING_REVIEW: pb.KYC_STATUS_PENDING_REVIEW,
    KycStatus.VERIFIED: pb.KYC_STATUS_VERIFIED,
    KycStatus.REJECTED: pb.KYC_STATUS_REJECTED,
}
_STATUS_FROM_PB: dict[int, KycStatus] = {int(v): k for k, v in _STATUS_TO_PB.items()}
_DECISION_FROM_PB: dict[int, KycDecision] = {
    pb.KYC_DECISION_APPROVE: KycDecision.APPROVE,
    pb.KYC_DECISION_REJECT: KycDecision.REJECT,
}


def status_to_pb(status: KycStatus) -> pb.KycStatus.ValueType:
    return _STATUS_TO_PB[status]


def status_filter_from_pb(value: int, field: str = "kyc_status") -> KycStatus | None:
    """A status to filter by: None for unset; an undefined number is refused."""
    return enum_filter(value, _STATUS_FROM_PB, pb.KycStatus.Name, field)


def decision_from_pb(value: int) -> KycDecision | None:
    return _DECISION_FROM_PB.get(value)


def customer_spec_from_pb(message: pb.Customer) -> CustomerSpec:
    return CustomerSpec(message.id, message.display_name, message.email)


def customer_to_pb(view: CustomerView) -> pb.Customer:
    message = pb.Customer(
        id=view.id,
        display_name=view.display_name,
        email=view.email,
        kyc_status=status_to_pb(view.kyc_status),
        kyc_reason=view.kyc_reason,
        kyc_version=view.kyc_version,
    )
    set_timestamp(message.kyc_update_time, view.kyc_updated_at)
    set_timestamp(message.create_time, view.created_at)
    set_requester(message.created_by, view.created_by)
    if view.erased_at is not None:
        set_timestamp(message.erase_time, view.erased_at)
    if view.sanctions is not None:
        screening_to_pb(message.sanctions_screening, view.sanctions)
    for change in view.history:
        item = message.kyc_history.add(
            kyc_version=change.kyc_version,
            previous_status=status_to_pb(change.previous_status),
            status=status_to_pb(change.status),
            reason=change.reason,
            actor=change.actor,
        )
        set_timestamp(item.change_time, change.changed_at)
        set_requester(item.changed_by, change.changed_by)
    return message


_OUTCOMES = {
    Outcome.CLEAR: pb.SANCTIONS_SCREENING_OUTCOME_CLEAR,
    Outcome.HIT: pb.SANCTIONS_SCREENING_OUTCOME_HIT,
    Outcome.NOT_SCREENED: pb.SANCTIONS_SCREENING_OUTCOME_NOT_SCREENED,
}
_DECISIONS = {
    Decision.CLEARED: pb.SANCTIONS_SCREENING_DECISION_CLEARED,
    Decision.CONFIRMED: pb.SANCTIONS_SCREENING_DECISION_CONFIRMED,
}


def screening_to_pb(message: pb.CustomerSanctionsScreening, screening: CustomerScreening) -> None:
    message.outcome = _OUTCOMES[screening.outcome]
    message.list_version = screening.list_version
    message.score = screening.score
    set_timestamp(message.screen_time, screening.screened_at)
    if screening.match is not None:
        message.entry_uid = screening.match.entry_uid
        message.entry_name = screening.match.entry_name
        message.matched_name = screening.match.matched_name
        message.programs.extend(screening.match.programs)
    if screening.decision is not None:
        message.decision = _DECISIONS[screening.decision]
        set_requester(message.decided_by, screening.decided_by)
        message.decision_reason = screening.decision_reason


def client_spec_from_pb(message: pb.Client) -> ClientSpec:
    return ClientSpec(message.id, message.display_name, tuple(message.allowed_scopes))


def client_to_pb(client: ServiceClient) -> pb.Client:
    message = pb.Client(
        id=client.id,
        display_name=client.display_name,
        allowed_scopes=list(client.allowed_scopes),
        disabled=client.disabled,
    )
    set_timestamp(message.create_time, client.created_at)
    set_timestamp(message.disable_time, client.disabled_at)
    set_requester(message.created_by, client.created_by)
    set_requester(message.disabled_by, client.disabled_by)
    return message


def jwk_to_pb(key: SigningKey) -> pb.JsonWebKey:
    fields = pb.JsonWebKey.DESCRIPTOR.fields_by_name
    return pb.JsonWebKey(**{k: v for k, v in key.public_jwk.items() if k in fields})


def revoked_token_to_pb(revocation: TokenRevocation) -> pb.RevokedToken:
    message = pb.RevokedToken(token_id=revocation.token_id)
    set_timestamp(message.revoke_time, revocation.revoked_at)
    set_timestamp(message.expire_time, revocation.expire_at)
    return message
