"""Group commit for creating payouts and collections.

One creation on its own is two transactions and one ledger call; at hundreds
per second those round trips, not the work, are the cost. ``CreationBatcher``
queues concurrent CreatePayout/CreateCollection calls and a worker takes
whatever has gathered: one transaction decides them all (customers locked in
id order, velocity counted across the batch), one ledger request holds all the
payouts' funds, one transaction records the holds. Each caller still gets its
own payment or its own refusal. Nothing waits on a timer: a lone call goes
straight through.

A request whose customer the projection does not know as VERIFIED leaves the
batch and takes the single path, which asks identity first.

No shared fate: what can refuse one request alone is checked before it is
submitted (``use_cases.check_creation``); inside a group each request's failure
is its own outcome, and after the group's decisions are committed no caller
gets an error (see ``create_payments``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from chassis.batching import GroupCommitter
from chassis.db.retry import DATABASE_UNAVAILABLE
from chassis.db.uow import run_in_transaction
from chassis.kernel.errors import DomainError
from chassis.tracing import batch_span

from payments.domain.fraud import Velocity
from payments.domain.ledger_plan import accounts_for, operation_for
from payments.domain.model import LedgerStep, Payment, PaymentRequest
from payments.domain.states import PaymentState
from payments.service_layer.ports import LedgerResult
from payments.service_layer.unit_of_work import PaymentsUnitOfWork
from payments.service_layer.use_cases import (
    SERVICE,
    Caller,
    CustomerStatus,
    Deps,
    _lease_for_hold,
    _replay,
    apply_hold_result,
    book,
    check_creation,
    create_payment,
    decide_payment,
    declined,
    schedule,
)

_log = structlog.get_logger("payments.creation")

Outcome = Payment | BaseException


@dataclass(frozen=True, slots=True)
class Creation:
    request: PaymentRequest
    account_field: str
    # The calling RPC's context (request id, deadline, trace), for work done on its behalf.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


def create_payments(deps: Deps, creations: Sequence[Creation]) -> list[Outcome]:
    """Create validated requests together; one outcome (payment or error) per request.

    Each request's failure is its own: a decision that raises is that request's
    outcome, and once the decisions are committed nothing raises any more (a
    step that fails after it leaves the payments as committed, for a worker to
    finish). Only the decisions' transaction can fail for the whole group, and
    then nothing was written. Running it again with the same requests replays
    them: each gets its payment back, and an outgoing payment whose hold is not
    recorded yet is held again under its own transfer id, which the ledger
    replays, never books twice.
    """
    outcomes: list[Outcome | None] = [None] * len(creations)
    single: list[int] = []
    policy = deps.policy

    def work(uow: PaymentsUnitOfWork) -> list[Payment]:
        outcomes[:] = [None] * len(creations)
        single.clear()
        repo = uow.payments
        ids = [c.request.payment_id for c in creations]
        existing = repo.get_many(ids)
        customers = repo.customers({c.request.customer_id for c in creations}, lock=True)
        now = deps.clock.now()
        velocity: dict[tuple[str, str], list[int]] = {}
        if policy.fraud.uses_velocity:
            recent = repo.velocities(
                {(c.request.customer_id, c.request.currency) for c in creations},
                now - policy.fraud.velocity_window,
            )
            velocity = {key: list(value) for key, value in recent.items()}
        created: dict[str, Payment] = {}
        for index, creation in enumerate(creations):
            request = creation.request
            seen = existing.get(request.payment_id) or created.get(request.payment_id)
            if seen is not None:
                try:
                    if not seen.history:
                        seen.history = repo.history(seen.id)
                    outcomes[index] = _replay(seen, request)
                except DomainError as error:
                    outcomes[index] = error
                continue
            try:
                deps.capacity.check(request.currency)
            except DomainError as error:
                outcomes[index] = error
                continue
            known = customers.get(request.customer_id)
            if known is None or not known.verified:
                single.append(index)
                continue
            counted = velocity.setdefault((request.customer_id, request.currency), [0, 0])
            try:
                payment = creation.context.run(
                    decide_payment,
                    request,
                    CustomerStatus(known.kyc_status, known.customer_since),
                    Velocity(counted[0], counted[1]),
                    policy,
                    now,
                )
            except Exception as error:
                if not isinstance(error, DomainError):
                    _log.exception("a creation failed alone", payment_id=request.payment_id)
                outcomes[index] = error
                continue
            if payment.state is not PaymentState.DECLINED:
                counted[0] += 1
                counted[1] += request.amount
            _lease_for_hold(payment, now, policy)
            created[payment.id] = payment
            outcomes[index] = payment
        repo.add_all(list(created.values()))
        return list(created.values())

    created = run_in_transaction(deps.uow, work)
    # Committed: from here on, every caller gets its payment whatever fails.
    created_ids = {p.id for p in created}
    # New outgoing payments, and replays of ones whose hold is not recorded yet.
    to_hold = {
        o.id: o
        for o in outcomes
        if isinstance(o, Payment) and o.outgoing and o.state is PaymentState.CREATED
    }
    held = hold_many(deps, list(to_hold.values())) if to_hold else {}
    now = deps.clock.now()
    wake = False
    for index, outcome in enumerate(outcomes):
        if not isinstance(outcome, Payment):
            continue
        if outcome.id not in created_ids and outcome.id not in held:
            continue  # a replay as it was recorded is the answer
        payment = held.get(outcome.id, outcome)
        if payment.state is PaymentState.DECLINED:
            outcomes[index] = declined(payment)
            continue
        outcomes[index] = payment
        wake = wake or (payment.next_action_at is not None and payment.next_action_at <= now)
    for index in single:
        creation = creations[index]
        try:
            outcomes[index] = creation.context.run(
                create_payment, deps, creation.request, creation.account_field
            )
        except Exception as error:
            outcomes[index] = error
    if wake:
        deps.wake()
    return [o if o is not None else RuntimeError("no outcome") for o in outcomes]


def hold_many(deps: Deps, payments: Sequence[Payment]) -> dict[str, Payment]:
    """Hold the funds of many outgoing payments with one ledger request; record the outcomes.

    Returns the payments whose outcome was recorded. It never raises: the
    payments are committed, and one left out (no answer, or its outcome not
    written) stays CREATED for a worker to hold again after its lease.
    """
    results: dict[str, LedgerResult | None] = dict.fromkeys((p.id for p in payments), None)
    traces = [p.trace_context for p in payments]
    with batch_span("payments.hold", traces, payments=len(payments)):
        try:
            specs = {s.id: s for p in payments for s in accounts_for(p)}
            deps.ledger.ensure_accounts(list(specs.values()))
        except Exception as error:
            # Holding on an account that may not be open would refuse it for good.
            _log.warning(
                "ledger accounts not ensured; a worker holds later",
                count=len(payments),
                error=repr(error),
            )
        else:
            answers = book(deps.ledger, [operation_for(p, LedgerStep.HOLD) for p in payments])
            results = {p.id: a for p, a in zip(payments, answers, strict=True)}
    histories = {p.id: p.history for p in payments}

    def record(batch: Sequence[Payment]) -> dict[str, Payment]:
        def work(uow: PaymentsUnitOfWork) -> dict[str, Payment]:
            now = deps.clock.now()
            current = uow.payments.get_many((p.id for p in batch), lock=True)
            for payment in current.values():
                payment.history = list(histories[payment.id])
                apply_hold_result(payment, results[payment.id], now)
                payment.leased_until = None
                schedule(payment, now, deps.policy)
            uow.payments.save_all(list(current.values()))
            return current

        return run_in_transaction(deps.uow, work)

    try:
        return record(payments)
    except DATABASE_UNAVAILABLE:
        _log.warning("holds not recorded: database unavailable", count=len(payments))
        return {}
    except Exception:
        if len(payments) == 1:
            _log.exception("a hold's outcome was not recorded", payment_id=payments[0].id)
            return {}
        _log.exception("holds not recorded together; one by one", count=len(payments))
    recorded: dict[str, Payment] = {}
    for payment in payments:
        try:
            recorded.update(record([payment]))
        except Exception:
            _log.exception("a hold's outcome was not recorded", payment_id=payment.id)
    return recorded


class CreationBatcher:
    """Concurrent creations decided together (``chassis.batching``): one transaction, one
    ledger request for all holds, one transaction for the outcomes."""

    def __init__(
        self,
        execute: Callable[[Sequence[Creation]], list[Outcome]],
        *,
        max_batch: int = 200,
        workers: int = 2,
    ) -> None:
        self._committer: GroupCommitter[Creation, Outcome] = GroupCommitter(
            execute, max_batch=max_batch, workers=workers, name="creation-batcher"
        )

    def submit(self, creation: Creation, timeout: float | None = None) -> Payment:
        """The creation's payment, or its own refusal; ``timeout``: the caller's time left."""
        outcome = self._committer.submit(creation, timeout)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def close(self) -> None:
        self._committer.close()


def submit_creation(
    deps: Deps,
    creator: CreationBatcher,
    request: PaymentRequest,
    account_field: str,
    caller: Caller = SERVICE,
    timeout: float | None = None,
) -> Payment:
    """Create a payout or collection, decided together with concurrent ones.

    Whatever can refuse it alone is checked first: it joins a group only when
    nothing about it can fail that group.
    """
    check_creation(deps, request, account_field, caller)
    return creator.submit(Creation(request, account_field), timeout)
