"""``astra.identity.v1.IdentityService``: thin, proto -> use case -> proto."""

from __future__ import annotations

import grpc
from astra.identity.v1 import identity_pb2 as pb
from astra.identity.v1 import identity_pb2_grpc
from chassis.auth import current_principal, current_requester
from chassis.kernel.errors import PermissionDenied
from chassis.protos import from_timestamp, set_timestamp, to_duration

from identity.adapters.protos import (
    client_spec_from_pb,
    client_to_pb,
    customer_spec_from_pb,
    customer_to_pb,
    decision_from_pb,
    jwk_to_pb,
    revoked_token_to_pb,
    status_filter_from_pb,
)
from identity.bootstrap import Identity
from identity.service_layer import use_cases
from identity.service_layer.use_cases import IssuedToken


def _actor() -> str:
    principal = current_principal()
    return principal.subject if principal is not None else ""


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, identity: Identity) -> None:
        self._identity = identity
        self._deps = identity.deps

    # --- customers ------------------------------------------------------------------

    def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: grpc.ServicerContext
    ) -> pb.CreateCustomerResponse:
        view = use_cases.create_customer(
            self._deps, customer_spec_from_pb(request.customer), current_requester()
        )
        return pb.CreateCustomerResponse(customer=customer_to_pb(view))

    def GetCustomer(
        self, request: pb.GetCustomerRequest, context: grpc.ServicerContext
    ) -> pb.GetCustomerResponse:
        view = use_cases.get_customer(self._deps, request.customer_id)
        return pb.GetCustomerResponse(customer=customer_to_pb(view))

    def ListCustomers(
        self, request: pb.ListCustomersRequest, context: grpc.ServicerContext
    ) -> pb.ListCustomersResponse:
        page = use_cases.list_customers(
            self._deps,
            request.page_size,
            request.page_token,
            status_filter_from_pb(request.kyc_status),
        )
        return pb.ListCustomersResponse(
            customers=[customer_to_pb(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    def EraseCustomer(
        self, request: pb.EraseCustomerRequest, context: grpc.ServicerContext
    ) -> pb.EraseCustomerResponse:
        view = use_cases.erase_customer(self._deps, request.customer_id, _actor())
        return pb.EraseCustomerResponse(customer=customer_to_pb(view))

    def SubmitKyc(
        self, request: pb.SubmitKycRequest, context: grpc.ServicerContext
    ) -> pb.SubmitKycResponse:
        view = use_cases.submit_kyc(
            self._deps, request.request_id, request.customer_id, _actor(), current_requester()
        )
        return pb.SubmitKycResponse(customer=customer_to_pb(view))

    def ReviewKyc(
        self, request: pb.ReviewKycRequest, context: grpc.ServicerContext
    ) -> pb.ReviewKycResponse:
        view = use_cases.review_kyc(
            self._deps,
            request.request_id,
            request.customer_id,
            decision_from_pb(request.decision),
            request.reason,
            _actor(),
            current_requester(),
        )
        return pb.ReviewKycResponse(customer=customer_to_pb(view))

    # --- service clients ------------------------------------------------------------

    def RegisterClient(
        self, request: pb.RegisterClientRequest, context: grpc.ServicerContext
    ) -> pb.RegisterClientResponse:
        client, secret = use_cases.register_client(
            self._deps, client_spec_from_pb(request.client), current_requester()
        )
        return pb.RegisterClientResponse(client=client_to_pb(client), client_secret=secret)

    def GetClient(
        self, request: pb.GetClientRequest, context: grpc.ServicerContext
    ) -> pb.GetClientResponse:
        client = use_cases.get_client(self._deps, request.client_id)
        return pb.GetClientResponse(client=client_to_pb(client))

    def DisableClient(
        self, request: pb.DisableClientRequest, context: grpc.ServicerContext
    ) -> pb.DisableClientResponse:
        client = use_cases.disable_client(self._deps, request.client_id, current_requester())
        return pb.DisableClientResponse(client=client_to_pb(client))

    # --- tokens and keys ------------------------------------------------------------

    def IssueToken(
        self, request: pb.IssueTokenRequest, context: grpc.ServicerContext
    ) -> pb.IssueTokenResponse:
        issued = use_cases.issue_token(
            self._deps,
            request.client_id,
            request.client_secret,
            list(request.scopes),
            request.audience,
        )
        response = pb.IssueTokenResponse()
        _fill_token(response, issued)
        return response

    def IssueCustomerToken(
        self, request: pb.IssueCustomerTokenRequest, context: grpc.ServicerContext
    ) -> pb.IssueCustomerTokenResponse:
        principal = current_principal()
        if principal is None or principal.customer_id:
            # Only a service client acts for customers; a customer cannot mint for another.
            raise PermissionDenied(
                "CLIENT_TOKEN_REQUIRED", "only a service client may issue customer tokens"
            )
        issued = use_cases.issue_customer_token(
            self._deps,
            principal.client_id,
            request.customer_id,
            list(request.scopes),
            request.audience,
        )
        response = pb.IssueCustomerTokenResponse()
        _fill_token(response, issued)
        return response

    def GetPublicKeys(
        self, request: pb.GetPublicKeysRequest, context: grpc.ServicerContext
    ) -> pb.GetPublicKeysResponse:
        keys = use_cases.published_keys(self._deps)
        settings = self._identity.settings
        response = pb.GetPublicKeysResponse(
            keys=[jwk_to_pb(k) for k in keys], issuer=settings.token_issuer
        )
        response.max_age.seconds = settings.public_keys_max_age_seconds
        return response

    def RotateSigningKey(
        self, request: pb.RotateSigningKeyRequest, context: grpc.ServicerContext
    ) -> pb.RotateSigningKeyResponse:
        rotation = use_cases.rotate_signing_key(self._deps, request.request_id)
        response = pb.RotateSigningKeyResponse(key=jwk_to_pb(rotation.key))
        set_timestamp(response.previous_key_retire_time, rotation.previous_retire_at)
        return response

    def RevokeToken(
        self, request: pb.RevokeTokenRequest, context: grpc.ServicerContext
    ) -> pb.RevokeTokenResponse:
        revocation = use_cases.revoke_token(self._deps, request.token_id)
        return pb.RevokeTokenResponse(revoked_token=revoked_token_to_pb(revocation))

    def ListRevocations(
        self, request: pb.ListRevocationsRequest, context: grpc.ServicerContext
    ) -> pb.ListRevocationsResponse:
        since = from_timestamp(request.since, "since") if request.HasField("since") else None
        feed = use_cases.list_revocations(self._deps, since)
        response = pb.ListRevocationsResponse(
            revoked_tokens=[revoked_token_to_pb(r) for r in feed.tokens],
            disabled_client_ids=feed.disabled_client_ids,
        )
        set_timestamp(response.as_of_time, feed.as_of)
        return response


def _fill_token(
    response: pb.IssueTokenResponse | pb.IssueCustomerTokenResponse, issued: IssuedToken
) -> None:
    response.access_token = issued.access_token
    response.token_type = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    response.expires_in.CopyFrom(to_duration(issued.expires_in))
    set_timestamp(response.expire_time, issued.expires_at)
    response.scopes.extend(issued.scopes)
