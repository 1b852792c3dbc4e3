"""Identity's use cases: one function per command or query, each in a unit of work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from chassis.auth.claims import make_claims
from chassis.auth.principal import PrincipalKind
from chassis.kernel.audit import Requester
from chassis.kernel.clock import Clock
from chassis.kernel.errors import (
    DomainError,
    FailedPrecondition,
    IdempotencyKeyReused,
    ResourceExhausted,
    Unavailable,
    Violations,
)
from chassis.kernel.pagination import Page, parse_page
from chassis.kernel.uow import run_in_transaction
from screening.matcher import Screener

from identity.domain import validation
from identity.domain.errors import (
    client_disabled,
    client_not_found,
    customer_erased,
    customer_not_found,
    invalid_client,
)
from identity.domain.model import (
    ClientSpec,
    Customer,
    CustomerSpec,
    CustomerView,
    KycDecision,
    KycRequest,
    KycStatus,
    ServiceClient,
    SigningKey,
    TokenPolicy,
    TokenRevocation,
    customer_grant,
    fingerprint,
)
from identity.service_layer.ports import KeyStore, RateLimiter, SecretHasher
from identity.service_layer.unit_of_work import IdentityUnitOfWork

UowFactory = Callable[[], IdentityUnitOfWork]
T = TypeVar("T")


@dataclass(frozen=True)
class Deps:
    """What the use cases run with; bootstrap builds it."""

    uow: UowFactory
    clock: Clock
    hasher: SecretHasher
    keys: KeyStore
    tokens: TokenPolicy
    # How long a retired key stays published beyond the token lifetime (clock skew, slow calls).
    retire_margin: timedelta = timedelta(minutes=2)
    # The scopes the contracts require: a client may be allowed only these.
    declared_scopes: frozenset[str] = frozenset()
    # IssueToken and IssueCustomerToken per client id and overall (None: unlimited).
    rate_limit: RateLimiter | None = None
    # The sanctions list customers are screened against at KYC (None: screening off).
    screener: Screener | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_at: datetime
    expires_in: timedelta
    scopes: tuple[str, ...]

    def __repr__(self) -> str:  # never the token
        return f"IssuedToken(expires_at={self.expires_at!r}, scopes={self.scopes!r})"


# --- customers ----------------------------------------------------------------


def create_customer(
    deps: Deps, spec: CustomerSpec, requester: Requester | None = None
) -> CustomerView:
    validation.validate_customer_spec(spec)

    def work(uow: IdentityUnitOfWork) -> CustomerView:
        existing = uow.customers.get(spec.id)
        if existing is not None:
            if existing.erased_at is not None:
                raise customer_erased(spec.id)
            if not existing.matches(spec):
                raise IdempotencyKeyReused("customer", spec.id)
            return existing.view()
        customer = Customer.create(spec, deps.clock.now(), requester)
        uow.customers.add(customer)
        return customer.view()

    return run_in_transaction(deps.uow, work)


def get_customer(deps: Deps, customer_id: str) -> CustomerView:
    validation.validate_id("customer_id", customer_id, validation.CUSTOMER_PREFIX)
    with deps.uow() as uow:
        customer = uow.customers.get(customer_id)
        if customer is None:
            raise customer_not_found(customer_id)
        return customer.view()


def list_customers(
    deps: Deps, page_size: int, page_token: str, status: KycStatus | None
) -> Page[CustomerView]:
    filters = {"kyc_status": status.name if status else ""}
    page = parse_page(page_size, page_token, filters, after_rule=validation.is_customer_id)
    with deps.uow() as uow:
        views = [c.view() for c in uow.customers.list(page.after, page.fetch, status)]
    return page.page(views, lambda view: view.id)


def erase_customer(deps: Deps, customer_id: str, actor: str) -> CustomerView:
    """Destroy the customer's personal data for good; its id, KYC state and history stay."""
    validation.validate_id("customer_id", customer_id, validation.CUSTOMER_PREFIX)

    def work(uow: IdentityUnitOfWork) -> CustomerView:
        customer = uow.customers.get(customer_id, for_update=True)
        if customer is None:
            raise customer_not_found(customer_id)
        if customer.erase(actor, deps.clock.now()):
            uow.customers.destroy_personal_data(customer)
        return customer.view()

    return run_in_transaction(deps.uow, work)


def submit_kyc(
    deps: Deps,
    request_id: str,
    customer_id: str,
    actor: str,
    requester: Requester | None = None,
) -> CustomerView:
    validation.validate_kyc_request(request_id, customer_id)
    content = fingerprint("submit", customer_id)
    return _kyc_change(
        deps,
        request_id,
        customer_id,
        content,
        lambda c, now: _submitted(c, now, actor, requester, deps.screener),
    )


def _submitted(
    customer: Customer,
    now: datetime,
    actor: str,
    requester: Requester | None,
    screener: Screener | None,
) -> None:
    customer.submit_for_review(actor, now, requester)
    customer.screen(screener, now)


RESCREEN_BATCH = 200
# Who can move money, or will once reviewed: the customers a new list version re-screens.
SCREENED_STATUSES = (KycStatus.PENDING_REVIEW, KycStatus.VERIFIED)


@dataclass(frozen=True, slots=True)
class Rescreened:
    """One batch of ``rescreen_customers``: how many changed, and the id the next begins after
    (None: none of the status is left)."""

    changed: int
    next_after: str | None


def rescreen_customers(
    deps: Deps, status: KycStatus, after: str | None = None, limit: int = RESCREEN_BATCH
) -> Rescreened:
    """Screen the next ``limit`` customers of ``status`` (after id ``after``) against the
    loaded list unless screened with its version already; a new hit takes a VERIFIED customer
    back to PENDING_REVIEW (``Customer.rescreen``). Each customer in its own transaction with
    its row locked, so a KYC review meanwhile is decided before or after, never lost."""
    screener = deps.screener
    if screener is None or status not in SCREENED_STATUSES:
        return Rescreened(0, None)
    with deps.uow() as uow:
        ids = [c.id for c in uow.customers.list(after, limit, status)]
    changed = 0
    for customer_id in ids:

        def work(uow: IdentityUnitOfWork, customer_id: str = customer_id) -> bool:
            customer = uow.customers.get(customer_id, for_update=True)
            return customer is not None and customer.rescreen(screener, deps.clock.now())

        changed += run_in_transaction(deps.uow, work)
    return Rescreened(changed, ids[-1] if ids else None)


def review_kyc(
    deps: Deps,
    request_id: str,
    customer_id: str,
    decision: KycDecision | None,
    reason: str,
    actor: str,
    requester: Requester | None = None,
) -> CustomerView:
    validation.validate_kyc_request(request_id, customer_id, decision, reason)
    if decision is None:
        violations = Violations()
        violations.add("decision", "must be KYC_DECISION_APPROVE or KYC_DECISION_REJECT")
        violations.raise_if_any()
    assert decision is not None
    content = fingerprint("review", customer_id, decision.name, reason)

    def change(customer: Customer, now: datetime) -> object:
        assert decision is not None
        return customer.review(decision, reason, actor, now, requester)

    return _kyc_change(deps, request_id, customer_id, content, change)


def _kyc_change(
    deps: Deps,
    request_id: str,
    customer_id: str,
    content: str,
    change: Callable[[Customer, datetime], object],
) -> CustomerView:
    """Apply ``change`` once per request id; replays return the recorded outcome."""

    def work(uow: IdentityUnitOfWork) -> CustomerView | DomainError:
        recorded = uow.kyc_requests.get(request_id)
        if recorded is not None:
            if recorded.fingerprint != content or recorded.customer_id != customer_id:
                raise IdempotencyKeyReused("KYC request", request_id)
            refusal = recorded.replay_error()
            if refusal is not None:
                return refusal
            replayed = uow.customers.get(recorded.customer_id)
            assert replayed is not None
            return replayed.view(recorded.kyc_version)
        customer = uow.customers.get(customer_id, for_update=True)
        if customer is None:
            raise customer_not_found(customer_id)
        now = deps.clock.now()
        try:
            change(customer, now)
        except FailedPrecondition as refused:
            # Recorded, so that the same request id keeps getting the same answer.
            uow.kyc_requests.add(
                KycRequest(
                    request_id,
                    customer_id,
                    content,
                    now,
                    error_reason=refused.reason,
                    error_message=refused.message,
                )
            )
            return refused
        uow.kyc_requests.add(
            KycRequest(request_id, customer_id, content, now, kyc_version=customer.kyc_version)
        )
        return customer.view()

    outcome = run_in_transaction(deps.uow, work)
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome


# --- service clients ----------------------------------------------------------


def register_client(
    deps: Deps, spec: ClientSpec, requester: Requester | None = None
) -> tuple[ServiceClient, str]:
    """The client and its new secret; a replay returns the client and an empty secret."""
    validation.validate_client_spec(spec, deps.declared_scopes)
    secret = deps.hasher.new_secret()
    # Hashed before the transaction: nothing of it needs to be held open for that.
    secret_hash = deps.hasher.hash(secret)

    def work(uow: IdentityUnitOfWork) -> tuple[ServiceClient, str]:
        existing = uow.clients.get(spec.id)
        if existing is not None:
            if existing.fingerprint != spec.fingerprint():
                raise IdempotencyKeyReused("client", spec.id)
            return existing, ""
        client = ServiceClient(
            spec.id,
            spec.display_name,
            spec.allowed_scopes,
            secret_hash,
            deps.clock.now(),
            requester,
        )
        uow.clients.add(client)
        return client, secret

    return run_in_transaction(deps.uow, work)


def reset_client_secret(deps: Deps, client_id: str) -> str:
    """A new secret for an existing client (operators only: the CLI, never an RPC)."""
    secret = deps.hasher.new_secret()
    secret_hash = deps.hasher.hash(secret)

    def work(uow: IdentityUnitOfWork) -> None:
        client = uow.clients.get(client_id, for_update=True)
        if client is None:
            raise client_not_found(client_id)
        client.secret_hash = secret_hash

    run_in_transaction(deps.uow, work)
    return secret


def get_client(deps: Deps, client_id: str) -> ServiceClient:
    validation.validate_id("client_id", client_id, validation.CLIENT_PREFIX)
    with deps.uow() as uow:
        client = uow.clients.get(client_id)
    if client is None:
        raise client_not_found(client_id)
    return client


def disable_client(deps: Deps, client_id: str, requester: Requester | None = None) -> ServiceClient:
    validation.validate_id("client_id", client_id, validation.CLIENT_PREFIX)

    def work(uow: IdentityUnitOfWork) -> ServiceClient:
        client = uow.clients.get(client_id, for_update=True)
        if client is None:
            raise client_not_found(client_id)
        client.disable(deps.clock.now(), requester)
        return client

    return run_in_transaction(deps.uow, work)


# --- tokens and keys ----------------------------------------------------------


def _check_requested_scopes(field: str, scopes: Sequence[str]) -> None:
    violations = Violations()
    validation.check_scopes(violations, field, scopes)
    violations.raise_if_any()


def _rate_limited(deps: Deps, client_id: str) -> None:
    """Refuse the call if ``client_id`` (known or not) or everyone is over the rate."""
    wait = deps.rate_limit.take(client_id) if deps.rate_limit is not None else 0.0
    if wait > 0:
        raise ResourceExhausted(
            "RATE_LIMITED",
            f"too many token requests; retry in {wait:.3f} s",
            retry_after=wait,
        )


def _sign(
    deps: Deps,
    key: SigningKey | None,
    subject: str,
    kind: PrincipalKind,
    client_id: str,
    scopes: tuple[str, ...],
    audience: str,
) -> IssuedToken:
    if key is None:
        raise Unavailable("NO_SIGNING_KEY", "identity has no signing key yet; retry shortly")
    now = deps.clock.now()
    policy = deps.tokens
    claims = make_claims(
        issuer=policy.issuer,
        audience=audience,
        subject=subject,
        kind=kind,
        client_id=client_id,
        scopes=scopes,
        issued_at=now,
        ttl=policy.ttl,
    )
    token = deps.keys.sign(claims, key)
    expires_at = datetime.fromtimestamp(claims["exp"], now.tzinfo)
    return IssuedToken(token, expires_at, policy.ttl, scopes)


def issue_token(
    deps: Deps, client_id: str, client_secret: str, scopes: Sequence[str], audience: str
) -> IssuedToken:
    """Client credentials -> a token for ``audience`` with the scopes asked for (each allowed).

    An unknown client costs what a known one does (one lookup, one keyed hash): the
    answer time says nothing about which ids exist.
    """
    violations = Violations()
    validation.check_id(violations, "client_id", client_id, validation.CLIENT_PREFIX)
    if not client_secret:
        violations.add("client_secret", "is required")
    validation.check_scopes(violations, "scopes", scopes)
    validation.check_audience(violations, "audience", audience, deps.tokens.audiences)
    violations.raise_if_any()
    _rate_limited(deps, client_id)
    with deps.uow() as uow:
        client = uow.clients.get(client_id)
        key = uow.signing_keys.active()
    if not deps.hasher.verify(client.secret_hash if client else None, client_secret):
        raise invalid_client()
    assert client is not None
    if client.disabled:
        raise client_disabled()
    granted = client.grant(scopes)
    return _sign(deps, key, client.id, PrincipalKind.CLIENT, client.id, granted, audience)


def issue_customer_token(
    deps: Deps, acting_client_id: str, customer_id: str, scopes: Sequence[str], audience: str
) -> IssuedToken:
    """A token whose subject is ``customer_id``, for the trusted service acting for it.

    Its scopes are at most the customer scopes the acting client is allowed too; a
    disabled client gets none, whatever token it still holds.
    """
    violations = Violations()
    validation.check_id(violations, "customer_id", customer_id, validation.CUSTOMER_PREFIX)
    validation.check_scopes(violations, "scopes", scopes)
    validation.check_audience(violations, "audience", audience, deps.tokens.audiences)
    violations.raise_if_any()
    _rate_limited(deps, acting_client_id)
    with deps.uow() as uow:
        client = uow.clients.get(acting_client_id)
        customer = uow.customers.get(customer_id)
        key = uow.signing_keys.active()
    if client is None or client.disabled:
        raise client_disabled()
    if customer is None:
        raise customer_not_found(customer_id)
    if customer.erased_at is not None:
        raise customer_erased(customer_id)
    granted = customer_grant(scopes, deps.tokens.customer_scopes, client)
    return _sign(deps, key, customer_id, PrincipalKind.CUSTOMER, client.id, granted, audience)


def revoke_token(deps: Deps, token_id: str) -> TokenRevocation:
    """Refuse the token ``token_id`` everywhere from now on (idempotent: once revoked, the
    original revocation is returned)."""
    validation.validate_token_id(token_id)

    def work(uow: IdentityUnitOfWork) -> TokenRevocation:
        existing = uow.revocations.get(token_id)
        if existing is not None:
            return existing
        now = deps.clock.now()
        # No token issued before now is valid past its lifetime (and the margin for clocks).
        revocation = TokenRevocation(token_id, now, now + deps.tokens.ttl + deps.retire_margin)
        uow.revocations.add(revocation)
        return revocation

    return run_in_transaction(deps.uow, work)


@dataclass(frozen=True, slots=True)
class RevocationFeed:
    tokens: list[TokenRevocation]
    disabled_client_ids: list[str]
    as_of: datetime


def list_revocations(deps: Deps, since: datetime | None) -> RevocationFeed:
    """What verifiers follow: the revocations and disabled clients since ``since``."""
    with deps.uow() as uow:
        # Read first: whatever commits after this instant is in the next answer.
        as_of = deps.clock.now()
        tokens = uow.revocations.listed(since, as_of)
        disabled = [c.id for c in uow.clients.disabled_since(since)]
    return RevocationFeed(tokens, disabled, as_of)


def published_keys(deps: Deps) -> list[SigningKey]:
    """Every key a still-valid token may have been signed with, the signing key first."""
    with deps.uow() as uow:
        return uow.signing_keys.published(deps.clock.now())


def ensure_signing_key(deps: Deps) -> SigningKey:
    """The active signing key, made on first start."""

    def work(uow: IdentityUnitOfWork) -> SigningKey:
        active = uow.signing_keys.active()
        if active is not None:
            return active
        key = deps.keys.new_signing_key(deps.clock.now())
        uow.signing_keys.add(key)
        return key

    return run_in_transaction(deps.uow, work)


@dataclass(frozen=True, slots=True)
class Rotation:
    key: SigningKey
    previous_retire_at: datetime | None


def rotate_signing_key(deps: Deps, request_id: str) -> Rotation:
    """Sign with a new key from now on; the old one stays published until its tokens expire."""
    violations = Violations()
    validation.check_id(violations, "request_id", request_id, validation.ROTATION_REQUEST_PREFIX)
    violations.raise_if_any()

    def work(uow: IdentityUnitOfWork) -> Rotation:
        done = uow.signing_keys.by_request(request_id)
        if done is not None:
            return Rotation(done, uow.signing_keys.retired_by(done))
        now = deps.clock.now()
        previous = uow.signing_keys.active(for_update=True)
        if previous is not None:
            previous.retire(now, deps.tokens.ttl, deps.retire_margin)
        key = deps.keys.new_signing_key(now, request_id)
        uow.signing_keys.add(key)
        return Rotation(key, previous.retire_at if previous else None)

    return run_in_transaction(deps.uow, work)
