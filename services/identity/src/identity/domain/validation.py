"""Request validation: every offending field reported at once (google.rpc.BadRequest)."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from chassis.kernel.errors import Violations
from chassis.kernel.ids import id_rule, is_valid_id, require_id
from chassis.kernel.text import check_text, has_control

from identity.domain.model import ClientSpec, CustomerSpec, KycDecision

CUSTOMER_PREFIX = "cus"
CLIENT_PREFIX = "cli"
KYC_REQUEST_PREFIX = "kyc"
ROTATION_REQUEST_PREFIX = "rot"
MAX_NAME = 200
MAX_EMAIL = 254
MAX_REASON = 500
MAX_SCOPES = 64
# A token id (`jti`): what identity issues (32 hex digits) and room for others' ids.
TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Dotted lower-case words: "ledger.accounts.read".
SCOPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,4}")
# Deliberately loose: one "@", something on each side, a dot in the domain, no spaces.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def is_customer_id(value: str) -> bool:
    return is_valid_id(value, CUSTOMER_PREFIX)


def check_id(violations: Violations, field: str, value: str, prefix: str) -> None:
    if not value:
        violations.add(field, "is required")
    elif not is_valid_id(value, prefix):
        violations.add(field, id_rule(prefix))


def validate_id(field: str, value: str, prefix: str) -> None:
    """Refuse a malformed id before it is looked up (an id with NUL cannot even be queried)."""
    require_id(value, prefix, field)


def validate_customer_spec(spec: CustomerSpec) -> None:
    violations = Violations()
    check_id(violations, "customer.id", spec.id, CUSTOMER_PREFIX)
    check_text(violations, "customer.display_name", spec.display_name, MAX_NAME, required=True)
    if not spec.email:
        violations.add("customer.email", "is required")
    elif len(spec.email) > MAX_EMAIL or not EMAIL.fullmatch(spec.email) or has_control(spec.email):
        violations.add("customer.email", f"must be an e-mail address of at most {MAX_EMAIL} chars")
    violations.raise_if_any()


def check_scopes(violations: Violations, field: str, scopes: Sequence[str]) -> None:
    if len(scopes) > MAX_SCOPES:
        violations.add(field, f"must hold at most {MAX_SCOPES} scopes")
    for index, scope in enumerate(scopes):
        if not SCOPE.fullmatch(scope):
            violations.add(
                f"{field}[{index}]", 'must be dotted lower-case words, e.g. "ledger.accounts.read"'
            )


def validate_client_spec(spec: ClientSpec, declared_scopes: Collection[str]) -> None:
    """``declared_scopes``: the scopes some contract requires; a client may hold only those."""
    violations = Violations()
    check_id(violations, "client.id", spec.id, CLIENT_PREFIX)
    check_text(violations, "client.display_name", spec.display_name, MAX_NAME, required=True)
    # No scope at all is allowed: such a client gets tokens that open nothing but the open
    # methods, until an operator grants it more (register-client without --scope).
    check_scopes(violations, "client.allowed_scopes", spec.allowed_scopes)
    for index, scope in enumerate(spec.allowed_scopes):
        if SCOPE.fullmatch(scope) and scope not in declared_scopes:
            violations.add(
                f"client.allowed_scopes[{index}]",
                "is no scope any method requires",
                "UNKNOWN_SCOPE",
            )
    violations.raise_if_any()


def validate_kyc_request(
    request_id: str, customer_id: str, decision: KycDecision | None = None, reason: str = ""
) -> None:
    violations = Violations()
    check_id(violations, "request_id", request_id, KYC_REQUEST_PREFIX)
    check_id(violations, "customer_id", customer_id, CUSTOMER_PREFIX)
    check_text(violations, "reason", reason, MAX_REASON)
    if decision is KycDecision.REJECT and not reason.strip():
        violations.add("reason", "is required for a rejection")
    violations.raise_if_any()


def check_audience(violations: Violations, field: str, audience: str, known: Sequence[str]) -> None:
    if not audience:
        violations.add(field, f"is required: one of {', '.join(known)}")
    elif audience not in known:
        violations.add(field, f"must be one of {', '.join(known)}", "UNKNOWN_AUDIENCE")


def validate_token_id(token_id: str) -> None:
    violations = Violations()
    if not token_id:
        violations.add("token_id", "is required")
    elif not TOKEN_ID.fullmatch(token_id):
        violations.add("token_id", "must be 1 to 64 of [A-Za-z0-9_-] (a token's jti)")
    violations.raise_if_any()
