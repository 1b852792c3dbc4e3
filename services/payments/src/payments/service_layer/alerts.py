"""Monitoring alerts as reviewers see them: list them, resolve one.

Alerts are raised while payments are decided (``service_layer.creation``); here
a reviewer reads them and records a resolution, with who asked (the audit
requester) and a note. Customer tokens see and resolve none: alerts are about
customers, for the operator's reviewers.
"""

from __future__ import annotations

from chassis.kernel.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from chassis.kernel.ids import is_valid_id, require_id
from chassis.kernel.pagination import Page, parse_page
from chassis.kernel.uow import run_in_transaction

from payments.domain import validation
from payments.domain.monitoring import Alert, AlertResolution, AlertRule, AlertState
from payments.service_layer.unit_of_work import PaymentsUnitOfWork
from payments.service_layer.use_cases import SERVICE, Caller, Deps

ALERT_PREFIX = "alr"


def _check_service(caller: Caller) -> None:
    if caller.customer_id:
        raise PermissionDenied(
            "SERVICE_CALLER_REQUIRED", "a customer token cannot read or resolve alerts"
        )


def alert_not_found(alert_id: str) -> NotFound:
    return NotFound(
        "ALERT_NOT_FOUND", f"alert {alert_id} does not exist", metadata={"alert_id": alert_id}
    )


def list_alerts(
    deps: Deps,
    page_size: int,
    page_token: str,
    customer_id: str = "",
    state: AlertState | None = None,
    rule: AlertRule | None = None,
    caller: Caller = SERVICE,
) -> Page[Alert]:
    _check_service(caller)
    validation.validate_customer_filter(customer_id)
    filters = {
        "customer_id": customer_id,
        "state": int(state) if state else 0,
        "rule": int(rule) if rule else 0,
    }
    page = parse_page(
        page_size, page_token, filters, after_rule=lambda v: is_valid_id(v, ALERT_PREFIX)
    )
    with deps.uow() as uow:
        items = uow.payments.alert_page(page.after, page.fetch, customer_id, state, rule)
    return page.page(items, lambda alert: alert.id)


def resolve_alert(
    deps: Deps,
    alert_id: str,
    resolution: AlertResolution | None,
    note: str = "",
    caller: Caller = SERVICE,
) -> Alert:
    """Record a reviewer's resolution; asking again with the same one returns the alert as it
    is, another one is refused (ALERT_ALREADY_RESOLVED)."""
    _check_service(caller)
    require_id(alert_id, ALERT_PREFIX, "alert_id")
    if resolution is None:
        raise InvalidArgument([FieldViolation("resolution", "is required")])
    validation.validate_note(note, "note")

    def work(uow: PaymentsUnitOfWork) -> Alert:
        alert = uow.payments.get_alert(alert_id, lock=True)
        if alert is None:
            raise alert_not_found(alert_id)
        if alert.resolve(resolution, deps.clock.now(), caller.requester, note):
            uow.payments.save_alert(alert)
        return alert

    return run_in_transaction(deps.uow, work)
