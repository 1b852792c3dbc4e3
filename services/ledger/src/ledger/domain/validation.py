"""Stateless checks of what a client asked for, before anything is read or written.

Every violation names its field by path (``transfers[3].movement.legs[0].amount``)
so that the error carries one ``BadRequest`` violation per offending field.
"""

from __future__ import annotations

from collections.abc import Sequence

from chassis.kernel.errors import Violations
from chassis.kernel.ids import id_rule, is_valid_id, require_id
from chassis.kernel.money import MAX_AMOUNT, is_currency
from chassis.kernel.text import CONTROL_RULE, check_text, has_control

from ledger.domain.model import (
    MAX_BATCH,
    MAX_EXTERNAL_REFERENCE,
    MAX_LEGS,
    MAX_LOOKUP,
    MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY,
    MAX_METADATA_VALUE,
    MAX_PENDING_TIMEOUT,
    AccountSpec,
    Direction,
    Leg,
    Metadata,
    MovementOp,
    PendingOp,
    PostPendingOp,
    ReversalOp,
    TransferRequest,
    VoidPendingOp,
)

ACCOUNT_PREFIX = "acct"
TRANSFER_PREFIX = "tr"
# The expiry worker voids a hold under the hold's id with this prefix (exp_tr_...).
EXPIRY_PREFIX = "exp_"
CUSTOMER_PREFIX = "cus"


def is_account_id(value: str) -> bool:
    return is_valid_id(value, ACCOUNT_PREFIX)


def check_metadata(metadata: Metadata, path: str, out: Violations) -> None:
    if len(metadata) > MAX_METADATA_ENTRIES:
        out.add(path, f"at most {MAX_METADATA_ENTRIES} entries")
    for key, value in metadata:
        if not key or len(key) > MAX_METADATA_KEY:
            out.add(f"{path}[{key[:20]!r}]", f"keys are 1 to {MAX_METADATA_KEY} characters")
        elif has_control(key):
            out.add(f"{path}[{key[:20]!r}]", f"keys {CONTROL_RULE}")
        if len(value) > MAX_METADATA_VALUE:
            out.add(f"{path}[{key[:20]!r}]", f"values are at most {MAX_METADATA_VALUE} characters")
        elif has_control(value):
            out.add(f"{path}[{key[:20]!r}]", f"values {CONTROL_RULE}")


def validate_account_spec(spec: AccountSpec, path: str = "account") -> None:
    out = Violations()
    if not is_valid_id(spec.id, ACCOUNT_PREFIX):
        out.add(f"{path}.id", id_rule(ACCOUNT_PREFIX))
    if not is_currency(spec.currency):
        out.add(
            f"{path}.currency",
            "must be an ISO 4217 currency code with minor units",
            "UNKNOWN_CURRENCY",
        )
    if spec.normal_side is None:
        out.add(f"{path}.normal_side", "required: NORMAL_SIDE_DEBIT or NORMAL_SIDE_CREDIT")
    if spec.debits_must_not_exceed_credits and spec.credits_must_not_exceed_debits:
        out.add(
            f"{path}.credits_must_not_exceed_debits",
            "cannot be combined with debits_must_not_exceed_credits",
        )
    check_text(out, f"{path}.external_reference", spec.external_reference, MAX_EXTERNAL_REFERENCE)
    if spec.customer_id and not is_valid_id(spec.customer_id, CUSTOMER_PREFIX):
        out.add(f"{path}.customer_id", id_rule(CUSTOMER_PREFIX))
    check_metadata(spec.metadata, f"{path}.metadata", out)
    out.raise_if_any()


def _check_leg(leg: Leg, path: str, out: Violations) -> bool:
    ok = True
    if not is_valid_id(leg.account_id, ACCOUNT_PREFIX):
        out.add(f"{path}.account_id", id_rule(ACCOUNT_PREFIX))
        ok = False
    if leg.direction is None:
        out.add(f"{path}.direction", "required: DIRECTION_DEBIT or DIRECTION_CREDIT")
        ok = False
    if leg.amount <= 0 or leg.amount > MAX_AMOUNT:
        out.add(
            f"{path}.amount",
            f"must be between 1 and {MAX_AMOUNT} minor units",
            "AMOUNT_OUT_OF_RANGE",
        )
        ok = False
    if not is_currency(leg.currency):
        out.add(
            f"{path}.currency",
            "must be an ISO 4217 currency code with minor units",
            "UNKNOWN_CURRENCY",
        )
        ok = False
    return ok


def check_legs(legs: Sequence[Leg], path: str, out: Violations, *, minimum: int = 2) -> None:
    """Each leg well formed, each account once, and debits equal credits in every currency."""
    if len(legs) < minimum:
        out.add(path, f"at least {minimum} legs")
        return
    if len(legs) > MAX_LEGS:
        out.add(path, f"at most {MAX_LEGS} legs")
        return
    seen: set[str] = set()
    net: dict[str, int] = {}
    total: dict[str, int] = {}
    all_ok = True
    for j, leg in enumerate(legs):
        leg_path = f"{path}[{j}]"
        if not _check_leg(leg, leg_path, out):
            all_ok = False
            continue
        if leg.account_id in seen:
            out.add(f"{leg_path}.account_id", "each account may appear in one leg only")
            all_ok = False
        seen.add(leg.account_id)
        signed = leg.amount if leg.direction is Direction.DEBIT else -leg.amount
        net[leg.currency] = net.get(leg.currency, 0) + signed
        total[leg.currency] = total.get(leg.currency, 0) + leg.amount
    if not all_ok:
        return
    for code, value in net.items():
        if value != 0:
            out.add(
                path, f"debits and credits differ by {abs(value)} in {code}", "UNBALANCED_TRANSFER"
            )
        if total[code] // 2 > MAX_AMOUNT:
            out.add(path, f"the {code} total exceeds {MAX_AMOUNT}", "AMOUNT_OUT_OF_RANGE")


def _check_transfer_id(transfer_id: str, path: str, out: Violations) -> None:
    if not is_valid_id(transfer_id, TRANSFER_PREFIX):
        out.add(path, id_rule(TRANSFER_PREFIX))


def _check_post_pending(
    op: PostPendingOp, out: Violations, *, pending_transfer_id: str, legs: str
) -> None:
    _check_transfer_id(op.pending_transfer_id, pending_transfer_id, out)
    if op.legs:
        check_legs(op.legs, legs, out, minimum=1)


def _check_reversal(
    op: ReversalOp, out: Violations, *, transfer_id: str, shortfall_account_id: str
) -> None:
    _check_transfer_id(op.transfer_id, transfer_id, out)
    if op.shortfall_account_id and not is_valid_id(op.shortfall_account_id, ACCOUNT_PREFIX):
        out.add(shortfall_account_id, id_rule(ACCOUNT_PREFIX))


def check_transfer(request: TransferRequest, path: str, out: Violations) -> None:
    """A ``TransferSpec`` at ``path``: its id, metadata and the one operation it carries."""
    _check_transfer_id(request.id, f"{path}.id", out)
    check_metadata(request.metadata, f"{path}.metadata", out)
    op = request.operation
    if op is None:
        out.add(
            f"{path}.operation",
            "required: one of movement, pending, post_pending, void_pending, reversal",
        )
    elif isinstance(op, MovementOp):
        check_legs(op.legs, f"{path}.movement.legs", out)
    elif isinstance(op, PendingOp):
        check_legs(op.legs, f"{path}.pending.legs", out)
        if op.timeout is not None and (
            op.timeout.total_seconds() <= 0 or op.timeout > MAX_PENDING_TIMEOUT
        ):
            out.add(f"{path}.pending.timeout", "must be positive and at most 366 days")
    elif isinstance(op, PostPendingOp):
        _check_post_pending(
            op,
            out,
            pending_transfer_id=f"{path}.post_pending.pending_transfer_id",
            legs=f"{path}.post_pending.legs",
        )
    elif isinstance(op, VoidPendingOp):
        _check_transfer_id(op.pending_transfer_id, f"{path}.void_pending.pending_transfer_id", out)
    elif isinstance(op, ReversalOp):
        _check_reversal(
            op,
            out,
            transfer_id=f"{path}.reversal.transfer_id",
            shortfall_account_id=f"{path}.reversal.shortfall_account_id",
        )


def validate_transfers(requests: Sequence[TransferRequest], path: str = "transfers") -> None:
    """Raises InvalidArgument naming every malformed field; nothing may be written then."""
    out = Violations()
    if not requests:
        out.add(path, f"between 1 and {MAX_BATCH} transfers")
    elif len(requests) > MAX_BATCH:
        out.add(path, f"at most {MAX_BATCH} transfers, got {len(requests)}", "BATCH_TOO_LARGE")
    else:
        for i, request in enumerate(requests):
            check_transfer(request, f"{path}[{i}]", out)
            if len(out) > 100:  # enough to act on; the rest would only bloat the error
                break
        if requests[-1].linked:
            out.add(
                f"{path}[{len(requests) - 1}].linked",
                "the last transfer of a batch cannot be linked: its chain would never close",
                "LINKED_CHAIN_OPEN",
            )
    out.raise_if_any()


def validate_transfer(request: TransferRequest, path: str = "transfer") -> None:
    out = Violations()
    check_transfer(request, path, out)
    if request.linked:
        out.add(f"{path}.linked", "only items of a CreateTransfers batch can be linked")
    out.raise_if_any()


# The single-operation requests (PostPendingTransferRequest, VoidPendingTransferRequest,
# ReverseTransferRequest) carry one transfer's fields flat: each is checked under the
# request's own field names.


def validate_post_pending_transfer(request: TransferRequest) -> None:
    """``transfer_id``, ``pending_transfer_id``, ``legs``, ``metadata``."""
    assert isinstance(request.operation, PostPendingOp)
    out = Violations()
    _check_transfer_id(request.id, "transfer_id", out)
    check_metadata(request.metadata, "metadata", out)
    _check_post_pending(
        request.operation, out, pending_transfer_id="pending_transfer_id", legs="legs"
    )
    out.raise_if_any()


def validate_void_pending_transfer(request: TransferRequest) -> None:
    """``transfer_id``, ``pending_transfer_id``, ``metadata``."""
    assert isinstance(request.operation, VoidPendingOp)
    out = Violations()
    _check_transfer_id(request.id, "transfer_id", out)
    check_metadata(request.metadata, "metadata", out)
    _check_transfer_id(request.operation.pending_transfer_id, "pending_transfer_id", out)
    out.raise_if_any()


def validate_reverse_transfer(request: TransferRequest) -> None:
    """``transfer_id``, ``reversed_transfer_id``, ``shortfall_account_id``, ``metadata``."""
    assert isinstance(request.operation, ReversalOp)
    out = Violations()
    _check_transfer_id(request.id, "transfer_id", out)
    check_metadata(request.metadata, "metadata", out)
    _check_reversal(
        request.operation,
        out,
        transfer_id="reversed_transfer_id",
        shortfall_account_id="shortfall_account_id",
    )
    out.raise_if_any()


def validate_account_id(account_id: str, field: str = "account_id") -> None:
    """Refuse a malformed id before it is looked up (an id with NUL cannot even be queried)."""
    require_id(account_id, ACCOUNT_PREFIX, field)


def validate_customer_filter(customer_id: str, field: str = "customer_id") -> None:
    """A list's customer filter: empty (every customer) or a customer id."""
    require_id(customer_id, CUSTOMER_PREFIX, field, optional=True)


def is_transfer_id(value: str) -> bool:
    """A transfer's id: a client's ``tr_...``, or the ``exp_tr_...`` of an expiry."""
    return is_valid_id(value.removeprefix(EXPIRY_PREFIX), TRANSFER_PREFIX)


def validate_transfer_id(transfer_id: str, field: str = "transfer_id") -> None:
    out = Violations()
    if not is_transfer_id(transfer_id):
        out.add(field, id_rule(TRANSFER_PREFIX))
    out.raise_if_any()


def validate_lookup(transfer_ids: Sequence[str], path: str = "transfer_ids") -> None:
    out = Violations()
    if not transfer_ids:
        out.add(path, f"between 1 and {MAX_LOOKUP} transfer ids")
    elif len(transfer_ids) > MAX_LOOKUP:
        out.add(path, f"at most {MAX_LOOKUP} transfer ids, got {len(transfer_ids)}")
    else:
        for i, transfer_id in enumerate(transfer_ids):
            if not is_transfer_id(transfer_id):
                out.add(f"{path}[{i}]", id_rule(TRANSFER_PREFIX))
            if len(out) > 100:  # enough to act on; the rest would only bloat the error
                break
    out.raise_if_any()
