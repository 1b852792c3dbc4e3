"""Payments, their history, the KYC projection, the bank cursor and reconciliation runs, in SQL.

Core statements, no ORM: the worker loads and saves payments in batches, and
the plain mapping below keeps that to a few statements per batch. Rows are
locked with ``FOR UPDATE`` (``SKIP LOCKED`` where a worker claims work) on
PostgreSQL; on SQLite the whole database is locked per write transaction
(``BEGIN IMMEDIATE``), which gives the same guarantee for one process.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from chassis.db.data_keys import DataKeys
from chassis.kernel.audit import Requester, flat, requester_from
from chassis.kernel.clock import utc
from chassis.kernel.uow import TracksAggregates
from chassis.pii import Envelope, associated_data
from screening.matcher import Outcome, match_from_record, match_record
from sqlalchemy import (
    BigInteger,
    Connection,
    Row,
    SmallInteger,
    String,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from payments.adapters import tables
from payments.adapters.risk_rows import (
    alert_changes,
    alert_from_row,
    alert_row,
    counterparty_tag,
    decision_from_row,
    decision_row,
)
from payments.domain.customers import CustomerErasure, CustomerKyc
from payments.domain.model import BankAccount, LedgerStep, Payment, Transition
from payments.domain.monitoring import Activity, Alert, AlertRule, AlertState, RecentPayment
from payments.domain.reconciliation import Break, BreakKind, ReconciliationReport
from payments.domain.sanctions import OPEN_STATES, SCREENED_KINDS, SanctionsScreening
from payments.domain.states import UNSUCCESSFUL, PaymentKind, PaymentState
from payments.service_layer.ports import StaleWrite

P = tables.payments
DK = tables.data_keys
T = tables.payment_transitions
K = tables.customer_kyc
C = tables.bank_cursor
R = tables.reconciliation_runs
RD = tables.payment_risk_decisions
A = tables.risk_alerts

# Hot-path statements are built once, with bound parameters: building a statement from
# literal values costs more Python time than running it.
# Payments come with their customer's wrapped data key (none once erased), which opens
# the counterparty's sealed account number and name.
_SELECT = select(P, DK.c.wrapped_key.label("data_key")).select_from(
    P.outerjoin(DK, DK.c.subject_id == P.c.customer_id)
)
_GET = _SELECT.where(P.c.id == bindparam("b_id"))
_GET_LOCKED = _GET.with_for_update(of=P)
_HISTORY = select(T).where(T.c.payment_id == bindparam("b_id")).order_by(T.c.sequence)
_INSERT = insert(P)
_INSERT_TRANSITIONS = insert(T)
_CUSTOMER = select(K).where(K.c.customer_id == bindparam("b_id"))
_CUSTOMER_LOCKED = _CUSTOMER.with_for_update()


def _activity_statement() -> Any:
    """Monitoring's read of a group's customers, in one round trip. Three kinds of rows
    (``rule``): 0, a payment since ``b_since`` (and whether the customer paid its counterparty
    before ``b_window_start``); -1, a counterparty of ``b_asked`` paid before the window;
    above 0, the rule of an open alert."""
    customers: Any = bindparam("b_customers", expanding=True)
    window_start: Any = bindparam("b_window_start")
    earlier = P.alias("earlier")
    paid_before = (
        select(literal(1))
        .where(
            earlier.c.customer_id == P.c.customer_id,
            earlier.c.counterparty_tag == P.c.counterparty_tag,
            earlier.c.kind == int(PaymentKind.PAYOUT),
            earlier.c.state != int(PaymentState.DECLINED),
            earlier.c.created_at < window_start,
        )
        .exists()
    )
    payments_since = select(
        P.c.customer_id,
        P.c.id,
        P.c.kind,
        P.c.amount,
        P.c.currency,
        P.c.created_at,
        P.c.counterparty_tag,
        literal(0, SmallInteger).label("rule"),
        paid_before.label("known"),
    ).where(
        P.c.customer_id.in_(customers),
        P.c.created_at >= bindparam("b_since"),
        P.c.kind.in_((int(PaymentKind.PAYOUT), int(PaymentKind.COLLECTION))),
        P.c.state != int(PaymentState.DECLINED),
    )
    asked_paid_before = (
        select(
            P.c.customer_id,
            literal("", String),
            literal(0, SmallInteger),
            literal(0, BigInteger),
            literal("", String),
            func.min(P.c.created_at),
            P.c.counterparty_tag,
            literal(-1, SmallInteger),
            literal(True),
        )
        .where(
            P.c.customer_id.in_(customers),
            P.c.counterparty_tag.in_(bindparam("b_asked", expanding=True)),
            P.c.kind == int(PaymentKind.PAYOUT),
            P.c.state != int(PaymentState.DECLINED),
            P.c.created_at < window_start,
        )
        .group_by(P.c.customer_id, P.c.counterparty_tag)
    )
    open_alerts = select(
        A.c.customer_id,
        A.c.id,
        literal(0, SmallInteger),
        literal(0, BigInteger),
        literal("", String),
        A.c.created_at,
        literal("", String),
        A.c.rule,
        literal(False),
    ).where(A.c.customer_id.in_(customers), A.c.state == int(AlertState.OPEN))
    return union_all(payments_since, asked_paid_before, open_alerts)


_ACTIVITY = _activity_statement()
_INSERT_DECISIONS = insert(RD)
_INSERT_ALERTS = insert(A)


def _dt(value: datetime | None) -> datetime | None:
    return utc(value) if value is not None else None


def counterparty_place(column: str, payment_id: str) -> bytes:
    """The associated data of a sealed counterparty field: ``payments.<column>:<payment id>``."""
    return associated_data("payments", column, payment_id)


def _payment(row: Row[Any], envelope: Envelope) -> Payment:
    m = row._mapping
    key = m["data_key"]
    key = bytes(key) if key is not None else None

    def opened(column: str) -> str:
        return envelope.open(key, m[f"{column}_sealed"], counterparty_place(column, m["id"]))

    return Payment(
        id=m["id"],
        kind=PaymentKind(m["kind"]),
        customer_id=m["customer_id"],
        amount=m["amount"],
        currency=m["currency"],
        fee=m["fee"],
        counterparty=BankAccount(
            opened("counterparty_account"), opened("counterparty_name"), m["counterparty_country"]
        ),
        description=m["description"],
        original_payment_id=m["original_payment_id"],
        fingerprint=m["fingerprint"],
        ledger_account_id=m["ledger_account_id"],
        state=PaymentState(m["state"]),
        created_at=utc(m["created_at"]),
        updated_at=utc(m["updated_at"]),
        reason=m["reason"],
        review_required=m["review_required"],
        review_reason=m["review_reason"],
        review_outcome=m["review_outcome"],
        bank_payment_id=m["bank_payment_id"],
        bank_attempts=m["bank_attempts"],
        bank_settled_at=_dt(m["bank_settled_at"]),
        bank_returned_at=_dt(m["bank_returned_at"]),
        ledger_done=LedgerStep(m["ledger_done"]),
        hold_uncertain=m["hold_uncertain"],
        ledger_error=m["ledger_error"],
        next_action_at=_dt(m["next_action_at"]),
        leased_until=_dt(m["leased_until"]),
        retries=m["retries"],
        version=m["version"],
        transition_count=m["transition_count"],
        trace_context=m["trace_context"],
        created_by=requester_from(
            m["created_by"], m["created_by_customer"], m["created_request_id"]
        ),
        reviewed_by=requester_from(
            m["reviewed_by"], m["reviewed_by_customer"], m["reviewed_request_id"]
        ),
        review_note=m["review_note"],
        sanctions=screening_from_json(m["sanctions_screening"]),
    )


def screening_to_json(screening: SanctionsScreening | None) -> str | None:
    if screening is None:
        return None
    match = screening.match
    return json.dumps(
        {
            "outcome": screening.outcome.value,
            "list_version": screening.list_version,
            "score": screening.score,
            "screened_at": screening.screened_at.isoformat(),
            "match": match_record(match),
        }
    )


def screening_from_json(text: str | None) -> SanctionsScreening | None:
    if text is None:
        return None
    data = json.loads(text)
    found = data["match"]
    return SanctionsScreening(
        Outcome(data["outcome"]),
        data["list_version"],
        data["score"],
        utc(datetime.fromisoformat(data["screened_at"])),
        match_from_record(found),
    )


def _requester_columns(prefix: str, requester: Requester | None) -> dict[str, str]:
    """``<prefix>_by``, ``<prefix>_by_customer`` and the request id column of ``requester``."""
    client_id, customer_id, request_id = flat(requester)
    request_column = "created_request_id" if prefix == "created" else "reviewed_request_id"
    return {
        f"{prefix}_by": client_id,
        f"{prefix}_by_customer": customer_id,
        request_column: request_id,
    }


def _mutable_columns(p: Payment) -> dict[str, Any]:
    return {
        "state": int(p.state),
        "reason": p.reason[:64],
        "review_required": p.review_required,
        "review_reason": p.review_reason,
        "review_outcome": p.review_outcome,
        **_requester_columns("reviewed", p.reviewed_by),
        "review_note": p.review_note,
        "sanctions_screening": screening_to_json(p.sanctions),
        "bank_payment_id": p.bank_payment_id,
        "bank_attempts": p.bank_attempts,
        "bank_settled_at": p.bank_settled_at,
        "bank_returned_at": p.bank_returned_at,
        "ledger_done": int(p.ledger_done),
        "hold_uncertain": p.hold_uncertain,
        "ledger_error": p.ledger_error[:200],
        "next_action_at": p.next_action_at,
        "leased_until": p.leased_until,
        "retries": p.retries,
        "transition_count": p.transition_count,
        "updated_at": p.updated_at,
    }


_MUTABLE = (
    "state", "reason", "review_required", "review_reason", "review_outcome", "reviewed_by",
    "reviewed_by_customer", "reviewed_request_id", "review_note", "sanctions_screening",
    "bank_payment_id", "bank_attempts", "bank_settled_at", "bank_returned_at", "ledger_done",
    "hold_uncertain", "ledger_error", "next_action_at", "leased_until", "retries",
    "transition_count", "updated_at",
)  # fmt: skip
# One statement for every save, guarded by the version the payment was loaded with.
_UPDATE = (
    update(P)
    .where(P.c.id == bindparam("b_id"), P.c.version == bindparam("b_version"))
    .values(version=bindparam("b_new_version"), **{k: bindparam(f"b_{k}") for k in _MUTABLE})
)


def _columns(p: Payment, envelope: Envelope, wrapped: bytes) -> dict[str, Any]:
    def sealed(column: str, value: str) -> bytes:
        return envelope.seal(wrapped, value, counterparty_place(column, p.id))

    tag = counterparty_tag(envelope.unwrap(wrapped), p.counterparty.account_number)

    return {
        "id": p.id,
        "kind": int(p.kind),
        "customer_id": p.customer_id,
        "amount": p.amount,
        "currency": p.currency,
        "fee": p.fee,
        "counterparty_account_sealed": sealed(
            "counterparty_account", p.counterparty.account_number
        ),
        "counterparty_name_sealed": sealed("counterparty_name", p.counterparty.holder_name),
        "counterparty_country": p.counterparty.country,
        "description": p.description,
        "original_payment_id": p.original_payment_id,
        "fingerprint": p.fingerprint,
        "ledger_account_id": p.ledger_account_id,
        "created_at": p.created_at,
        "version": p.version,
        "trace_context": p.trace_context,
        "counterparty_tag": tag or None,
        **_requester_columns("created", p.created_by),
        **_mutable_columns(p),
    }


class PaymentsRepository(TracksAggregates):
    """``service_layer.ports.PaymentsRepository`` in SQL, on one transaction's connection."""

    def __init__(self, connection: Connection, data_keys: DataKeys) -> None:
        super().__init__()
        self._c = connection
        self._postgres = connection.dialect.name == "postgresql"
        self._keys = data_keys
        self._envelope = data_keys.envelope
        # Customers' wrapped data keys this transaction has read or made (the tags of a
        # group's counterparties and its inserts need the same ones).
        self._wrapped: dict[str, bytes] = {}

    # --- payments -------------------------------------------------------------------------

    def get(self, payment_id: str, *, lock: bool = False, history: bool = False) -> Payment | None:
        statement = _GET_LOCKED if lock and self._postgres else _GET
        row = self._c.execute(statement, {"b_id": payment_id}).first()
        if row is None:
            return None
        payment = self.track(_payment(row, self._envelope))
        if history:
            payment.history = self.history(payment_id)
            payment.risk_decision = self.risk_decisions([payment_id]).get(payment_id)
        if payment.kind is PaymentKind.COLLECTION:
            payment.refunded_amount = self.refunded_amount(payment_id)
        return payment

    def get_many(self, payment_ids: Iterable[str], *, lock: bool = False) -> dict[str, Payment]:
        ids = sorted(set(payment_ids))
        if not ids:
            return {}
        statement = _SELECT.where(P.c.id.in_(ids)).order_by(P.c.id)
        if lock and self._postgres:
            statement = statement.with_for_update(of=P)
        found = {
            row.id: self.track(_payment(row, self._envelope)) for row in self._c.execute(statement)
        }
        if found and not lock:
            for payment_id, decision in self.risk_decisions(found).items():
                found[payment_id].risk_decision = decision
        return found

    def risk_decisions(self, payment_ids: Iterable[str]) -> dict[str, Any]:
        ids = sorted(set(payment_ids))
        if not ids:
            return {}
        rows = self._c.execute(select(RD).where(RD.c.payment_id.in_(ids)))
        return {row.payment_id: decision_from_row(row) for row in rows}

    def history(self, payment_id: str) -> list[Transition]:
        rows = self._c.execute(_HISTORY, {"b_id": payment_id})
        return [
            Transition(
                PaymentState(r.from_state) if r.from_state is not None else None,
                PaymentState(r.to_state),
                r.reason,
                utc(r.occurred_at),
            )
            for r in rows
        ]

    def add(self, payment: Payment) -> None:
        self.add_all([payment])

    def add_all(self, batch: Sequence[Payment]) -> None:
        if not batch:
            return
        for payment in batch:
            self.track(payment)
        keys = self._ensured({p.customer_id for p in batch})
        rows = [_columns(p, self._envelope, keys[p.customer_id]) for p in batch]
        self._c.execute(_INSERT, rows if len(rows) > 1 else rows[0])
        self._write_transitions(batch)
        decided = [
            decision_row(p.id, p.risk_decision, p.created_at)
            for p in batch
            if p.risk_decision is not None
        ]
        if decided:
            self._c.execute(_INSERT_DECISIONS, decided if len(decided) > 1 else decided[0])

    def save(self, payment: Payment) -> None:
        """Write the payment's changes; refuse if someone else wrote it since it was loaded."""
        self.save_all([payment])

    def save_all(self, batch: Sequence[Payment]) -> None:
        """``save`` for many payments: one UPDATE and one INSERT, each an executemany."""
        if not batch:
            return
        rows = [
            {
                "b_id": p.id,
                "b_version": p.version,
                "b_new_version": p.version + 1,
                **{f"b_{k}": v for k, v in _mutable_columns(p).items()},
            }
            for p in batch
        ]
        result = self._c.execute(_UPDATE, rows if len(rows) > 1 else rows[0])
        if result.rowcount != len(batch):
            raise StaleWrite(",".join(p.id for p in batch))
        for payment in batch:
            payment.version += 1
        self._write_transitions(batch)

    def _write_transitions(self, batch: Sequence[Payment]) -> None:
        rows = []
        for payment in batch:
            first = payment.transition_count - len(payment.new_transitions) + 1
            for offset, t in enumerate(payment.new_transitions):
                rows.append(
                    {
                        "payment_id": payment.id,
                        "sequence": first + offset,
                        "from_state": int(t.from_state) if t.from_state is not None else None,
                        "to_state": int(t.to_state),
                        "reason": t.reason[:64],
                        "occurred_at": t.occurred_at,
                    }
                )
            payment.new_transitions = []
        if rows:
            self._c.execute(_INSERT_TRANSITIONS, rows if len(rows) > 1 else rows[0])

    def claim_due(self, now: datetime, limit: int) -> list[Payment]:
        """Payments whose next action is due and that nobody is working on, locked."""
        statement = (
            _SELECT.where(
                P.c.next_action_at.is_not(None),
                P.c.next_action_at <= now,
                or_(P.c.leased_until.is_(None), P.c.leased_until <= now),
            )
            .order_by(P.c.next_action_at)
            .limit(limit)
        )
        if self._postgres:
            statement = statement.with_for_update(skip_locked=True, of=P)
        return [self.track(_payment(row, self._envelope)) for row in self._c.execute(statement)]

    def velocities(
        self, keys: Iterable[tuple[str, str]], since: datetime
    ) -> dict[tuple[str, str], tuple[int, int]]:
        """``velocity`` for many (customer, currency) pairs in one statement."""
        pairs = set(keys)
        if not pairs:
            return {}
        customers = sorted({customer for customer, _ in pairs})
        rows = self._c.execute(
            select(P.c.customer_id, P.c.currency, func.count(), func.sum(P.c.amount))
            .where(
                P.c.customer_id.in_(customers),
                P.c.created_at >= since,
                P.c.kind.in_((int(PaymentKind.PAYOUT), int(PaymentKind.COLLECTION))),
                P.c.state != int(PaymentState.DECLINED),
            )
            .group_by(P.c.customer_id, P.c.currency)
        ).all()
        counts: dict[str, int] = {}
        amounts: dict[tuple[str, str], int] = {}
        for customer, currency, count, amount in rows:
            counts[customer] = counts.get(customer, 0) + int(count)
            amounts[(customer, currency)] = int(amount or 0)
        return {(c, ccy): (counts.get(c, 0), amounts.get((c, ccy), 0)) for c, ccy in pairs}

    def refunded_amount(self, original_payment_id: str) -> int:
        dead = [int(s) for s in UNSUCCESSFUL]
        value = self._c.execute(
            select(func.coalesce(func.sum(P.c.amount), 0)).where(
                P.c.original_payment_id == original_payment_id,
                P.c.kind == int(PaymentKind.REFUND),
                P.c.state.not_in(dead),
            )
        ).scalar_one()
        return int(value)

    def page(
        self, after: str | None, limit: int, customer_id: str, state: PaymentState | None
    ) -> list[Payment]:
        statement = _SELECT.order_by(P.c.id).limit(limit)
        if after:
            statement = statement.where(P.c.id > after)
        if customer_id:
            statement = statement.where(P.c.customer_id == customer_id)
        if state is not None:
            statement = statement.where(P.c.state == int(state))
        return [_payment(row, self._envelope) for row in self._c.execute(statement)]

    def open_for_screening(self, after: str, limit: int) -> list[str]:
        """Ids of payouts and collections not yet given to the bank, after ``after``, in order."""
        rows = self._c.execute(
            select(P.c.id)
            .where(
                P.c.state.in_([int(s) for s in OPEN_STATES]),
                P.c.kind.in_([int(k) for k in SCREENED_KINDS]),
                P.c.id > after,
            )
            .order_by(P.c.id)
            .limit(limit)
        )
        return [row.id for row in rows]

    def open_of_customer(self, customer_id: str) -> list[str]:
        rows = self._c.execute(
            select(P.c.id)
            .where(
                P.c.customer_id == customer_id,
                P.c.state.in_([int(s) for s in OPEN_STATES]),
            )
            .order_by(P.c.id)
        )
        return [row.id for row in rows]

    def booked_with_bank_on(self, day: date, start: datetime, end: datetime) -> list[Payment]:
        """Payments the bank settled or returned between ``start`` and ``end``."""
        statement = _SELECT.where(
            or_(
                and_(P.c.bank_settled_at >= start, P.c.bank_settled_at < end),
                and_(P.c.bank_returned_at >= start, P.c.bank_returned_at < end),
            )
        )
        return [_payment(row, self._envelope) for row in self._c.execute(statement)]

    def erase_customer(self, erasure: CustomerErasure) -> tuple[int, bool]:
        self.track(erasure)
        key_destroyed = self._keys.destroy(self._c, erasure.customer_id)
        result = self._c.execute(
            update(P)
            .where(
                P.c.customer_id == erasure.customer_id,
                or_(
                    P.c.counterparty_account_sealed.is_not(None),
                    P.c.counterparty_name_sealed.is_not(None),
                    P.c.counterparty_country != "",
                ),
            )
            .values(
                counterparty_account_sealed=None,
                counterparty_name_sealed=None,
                counterparty_country="",
                counterparty_tag=None,
            )
        )
        return int(result.rowcount), key_destroyed

    def count_by_state(self) -> dict[PaymentState, int]:
        rows = self._c.execute(select(P.c.state, func.count()).group_by(P.c.state))
        return {PaymentState(state): int(count) for state, count in rows}

    def count_stuck(self, min_retries: int) -> int:
        """Payments whose next action failed ``min_retries`` times or more in a row.

        Only payments with work left are looked at (``ix_payments_due``): a payment
        that is retrying always has its next attempt scheduled.
        """
        value = self._c.execute(
            select(func.count()).where(P.c.next_action_at.is_not(None), P.c.retries >= min_retries)
        ).scalar_one()
        return int(value)

    def _ensured(self, customer_ids: set[str]) -> dict[str, bytes]:
        missing = customer_ids - self._wrapped.keys()
        if missing:
            self._wrapped.update(self._keys.ensure(self._c, missing))
        return {c: self._wrapped[c] for c in customer_ids}

    # --- monitoring ----------------------------------------------------------------------------

    def counterparty_tags(self, accounts: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        pairs = set(accounts)
        if not pairs:
            return {}
        keys = self._ensured({customer for customer, _ in pairs})
        unwrap = self._envelope.unwrap
        return {
            (customer, account): counterparty_tag(unwrap(keys[customer]), account)
            for customer, account in pairs
        }

    def activities(
        self, tags: Mapping[str, Collection[str]], since: datetime, window_start: datetime
    ) -> dict[str, Activity]:
        customers = sorted(tags)
        if not customers:
            return {}
        recent: dict[str, list[RecentPayment]] = {c: [] for c in customers}
        open_rules: dict[str, set[AlertRule]] = {c: set() for c in customers}
        known: dict[str, set[str]] = {c: set() for c in customers}
        asked = sorted({tag for customer in customers for tag in tags[customer] if tag})
        rows = self._c.execute(
            _ACTIVITY,
            {
                "b_customers": customers,
                "b_since": since,
                "b_window_start": window_start,
                "b_asked": asked,
            },
        ).all()
        for row in sorted(rows, key=lambda r: (utc(r.created_at), r.id)):
            if row.rule > 0:
                open_rules[row.customer_id].add(AlertRule(row.rule))
                continue
            tag = row.counterparty_tag or ""
            if row.known and tag:
                known[row.customer_id].add(tag)
            if row.rule < 0:
                continue
            recent[row.customer_id].append(
                RecentPayment(
                    row.id,
                    PaymentKind(row.kind),
                    row.amount,
                    row.currency,
                    utc(row.created_at),
                    tag,
                )
            )
        return {
            c: Activity(tuple(recent[c]), frozenset(known[c]), frozenset(open_rules[c]))
            for c in customers
        }

    def add_alerts(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        rows = [alert_row(a) for a in alerts]
        self._c.execute(_INSERT_ALERTS, rows if len(rows) > 1 else rows[0])

    def get_alert(self, alert_id: str, *, lock: bool = False) -> Alert | None:
        statement = select(A).where(A.c.id == alert_id)
        if lock and self._postgres:
            statement = statement.with_for_update()
        row = self._c.execute(statement).first()
        return alert_from_row(row) if row is not None else None

    def save_alert(self, alert: Alert) -> None:
        result = self._c.execute(
            update(A)
            .where(A.c.id == alert.id, A.c.version == alert.version)
            .values(version=alert.version + 1, **alert_changes(alert))
        )
        if result.rowcount != 1:
            raise StaleWrite(alert.id)
        alert.version += 1

    def alert_page(
        self,
        after: str | None,
        limit: int,
        customer_id: str,
        state: AlertState | None,
        rule: AlertRule | None,
    ) -> list[Alert]:
        statement = select(A).order_by(A.c.id).limit(limit)
        if after:
            statement = statement.where(A.c.id > after)
        if customer_id:
            statement = statement.where(A.c.customer_id == customer_id)
        if state is not None:
            statement = statement.where(A.c.state == int(state))
        if rule is not None:
            statement = statement.where(A.c.rule == int(rule))
        return [alert_from_row(row) for row in self._c.execute(statement)]

    # --- the KYC projection -------------------------------------------------------------------

    def customer(self, customer_id: str, *, lock: bool = False) -> CustomerKyc | None:
        statement = _CUSTOMER_LOCKED if lock and self._postgres else _CUSTOMER
        row = self._c.execute(statement, {"b_id": customer_id}).first()
        if row is None:
            return None
        return CustomerKyc(
            row.customer_id, row.kyc_status, row.kyc_version, _dt(row.customer_since)
        )

    def customers(
        self, customer_ids: Iterable[str], *, lock: bool = False
    ) -> dict[str, CustomerKyc]:
        """Several customers, locked in id order (so batches never deadlock each other)."""
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        statement = select(K).where(K.c.customer_id.in_(ids)).order_by(K.c.customer_id)
        if lock and self._postgres:
            statement = statement.with_for_update()
        return {
            row.customer_id: CustomerKyc(
                row.customer_id, row.kyc_status, row.kyc_version, _dt(row.customer_since)
            )
            for row in self._c.execute(statement)
        }

    def upsert_customer(self, kyc: CustomerKyc, now: datetime) -> bool:
        """Store ``kyc`` unless a newer (or the same) KYC version is already known."""
        values = {
            "customer_id": kyc.customer_id,
            "kyc_status": kyc.kyc_status,
            "kyc_version": kyc.kyc_version,
            "customer_since": kyc.customer_since,
            "updated_at": now,
        }
        dialect: Any = postgresql if self._postgres else sqlite
        statement = dialect.insert(K).values(**values)
        changes = {
            "kyc_status": statement.excluded.kyc_status,
            "kyc_version": statement.excluded.kyc_version,
            "customer_since": func.coalesce(statement.excluded.customer_since, K.c.customer_since),
            "updated_at": statement.excluded.updated_at,
        }
        statement = statement.on_conflict_do_update(
            index_elements=[K.c.customer_id],
            set_=changes,
            where=K.c.kyc_version < statement.excluded.kyc_version,
        ).returning(K.c.customer_id)
        # A row comes back only when one was written (rowcount does not tell, on psycopg).
        return self._c.execute(statement).first() is not None

    # --- the bank feed cursor ---------------------------------------------------------------

    def cursor(self, name: str) -> int:
        value = self._c.execute(select(C.c.position).where(C.c.name == name)).scalar()
        return int(value or 0)

    def set_cursor(self, name: str, position: int) -> None:
        dialect: Any = postgresql if self._postgres else sqlite
        statement = dialect.insert(C).values(name=name, position=position)
        statement = statement.on_conflict_do_update(
            index_elements=[C.c.name], set_={"position": statement.excluded.position}
        )
        self._c.execute(statement)

    # --- reconciliation runs ---------------------------------------------------------------------

    def get_run(self, run_id: str) -> ReconciliationReport | None:
        row = self._c.execute(select(R).where(R.c.id == run_id)).first()
        if row is None:
            return None
        breaks = tuple(
            Break(
                BreakKind(b["kind"]),
                b["payment_id"],
                b["bank_payment_id"],
                b["expected_amount"],
                b["actual_amount"],
                b["currency"],
                b["detail"],
            )
            for b in json.loads(row.breaks)
        )
        return ReconciliationReport(
            row.id, row.statement_date, row.line_count, row.matched, breaks, utc(row.created_at)
        )

    def add_run(self, report: ReconciliationReport) -> None:
        self.track(report)
        breaks = [
            {
                "kind": int(b.kind),
                "payment_id": b.payment_id,
                "bank_payment_id": b.bank_payment_id,
                "expected_amount": b.expected_amount,
                "actual_amount": b.actual_amount,
                "currency": b.currency,
                "detail": b.detail,
            }
            for b in report.breaks
        ]
        self._c.execute(
            insert(tables.reconciliation_runs).values(
                id=report.run_id,
                statement_date=report.statement_date,
                line_count=report.line_count,
                matched=report.matched,
                breaks=json.dumps(breaks),
                created_at=report.created_at,
            )
        )
