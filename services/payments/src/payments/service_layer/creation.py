"""Group commit for creating payouts and collections; a single creation is a group of one.

One creation on its own is two transactions and one ledger call; at hundreds
per second those round trips, not the work, are the cost. ``CreationBatcher``
queues concurrent CreatePayout/CreateCollection calls and a worker takes
whatever has gathered: one transaction decides them all (customers locked in
id order, velocity counted across the group), one ledger request holds all the
payouts' funds, one transaction records the holds. Each caller still gets its
own payment or its own refusal. Nothing waits on a timer: a lone call goes
straight through, as a group of one (``create_payment``).

A request whose customer the projection does not know as VERIFIED waits while
identity is asked (once per customer, outside any transaction); it is then
decided in a second transaction, and held with the others.

No shared fate: what can refuse one request alone is checked before it is
submitted (``use_cases.check_creation``); inside a group each request's failure
is its own outcome, and after the first decisions are committed no caller
gets an error (see ``create_payments``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from chassis.batching import GroupCommitter
from chassis.db.retry import DATABASE_UNAVAILABLE
from chassis.kernel.errors import DomainError
from chassis.kernel.uow import run_in_transaction
from chassis.tracing import current_traceparent

from payments.domain.creation import Scorer, decide_payment, replay
from payments.domain.customers import CustomerKyc, CustomerStatus
from payments.domain.fraud import Velocities
from payments.domain.model import Payment, PaymentRequest
from payments.domain.monitoring import Activities, RecentPayment
from payments.domain.progress import lease_for_hold
from payments.domain.sanctions import SanctionsScreening, screen_request
from payments.domain.states import PaymentState
from payments.service_layer.ports import PaymentsRepository
from payments.service_layer.unit_of_work import PaymentsUnitOfWork
from payments.service_layer.use_cases import (
    SERVICE,
    Caller,
    Deps,
    answer_created,
    ask_identity,
    check_creation,
)

_log = structlog.get_logger("payments.creation")

Outcome = Payment | BaseException


@dataclass(frozen=True, slots=True)
class Creation:
    request: PaymentRequest
    account_field: str
    # The counterparty's sanctions screening, done before the request joins a group.
    screening: SanctionsScreening | None = None
    # The calling RPC's context (request id, deadline, trace), for work done on its behalf.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


def create_payment(
    deps: Deps, request: PaymentRequest, account_field: str, caller: Caller = SERVICE
) -> Payment:
    """A payout or a collection (``request.kind``) on its own: a group of one."""
    check_creation(deps, request, account_field, caller)
    screening = screen_request(request, deps.policy.sanctions, deps.clock.now())
    (outcome,) = create_payments(deps, [Creation(request, account_field, screening)])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def create_payments(deps: Deps, creations: Sequence[Creation]) -> list[Outcome]:
    """Create validated requests together; one outcome (payment or error) per request.

    Each request's failure is its own: a decision that raises is that request's
    outcome, and once the first decisions are committed nothing raises any more
    (a step that fails after it leaves the payments as committed, for a worker
    to finish). Only that first transaction can fail for the whole group, and
    then nothing was written. Running it again with the same requests replays
    them: each gets its payment back, and an outgoing payment whose hold is not
    recorded yet is held again under its own transfer id, which the ledger
    replays, never books twice.
    """
    outcomes: list[Outcome | None] = [None] * len(creations)
    first = _decide(deps, creations, range(len(creations)), {})
    created = first.record(outcomes)
    if first.unknown:
        asked = _ask_identity(deps, creations, first.unknown, outcomes)
        later = [index for index in first.unknown if outcomes[index] is None]
        created += _decide_apart(deps, creations, later, asked, outcomes)
    # Committed: from here on, every caller gets its payment whatever fails.
    created_ids = {p.id for p in created}
    # New payments, and replays of outgoing ones whose hold is not recorded yet.
    answering = {
        o.id: o
        for o in outcomes
        if isinstance(o, Payment)
        and (o.id in created_ids or (o.outgoing and o.state is PaymentState.CREATED))
    }
    answers = answer_created(deps, list(answering.values()))
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, Payment) and outcome.id in answers:
            outcomes[index] = answers[outcome.id]
    return [o if o is not None else RuntimeError("no outcome") for o in outcomes]


@dataclass(slots=True)
class _Decided:
    """One decision transaction's outcomes, by request index."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    created: list[Payment] = field(default_factory=list)
    # Requests whose customer the projection does not know as VERIFIED (and what it knows).
    unknown: dict[int, CustomerKyc | None] = field(default_factory=dict)

    def record(self, outcomes: list[Outcome | None]) -> list[Payment]:
        for index, outcome in self.outcomes.items():
            outcomes[index] = outcome
        return self.created


def _decide(
    deps: Deps,
    creations: Sequence[Creation],
    indices: Iterable[int],
    asked: Mapping[str, CustomerStatus],
) -> _Decided:
    """Decide the requests at ``indices`` in one transaction; ``asked``: customers' statuses
    identity gave (the others come from the projection, or the request waits for identity)."""
    policy = deps.policy
    chosen = list(indices)

    def work(uow: PaymentsUnitOfWork) -> _Decided:
        decided = _Decided()
        repo = uow.payments
        requests = [creations[index].request for index in chosen]
        existing = repo.get_many(r.payment_id for r in requests)
        customers = repo.customers({r.customer_id for r in requests}, lock=True)
        now = deps.clock.now()
        recent: dict[tuple[str, str], tuple[int, int]] = {}
        if policy.fraud.uses_velocity:
            recent = repo.velocities(
                {(r.customer_id, r.currency) for r in requests},
                now - policy.fraud.velocity_window,
            )
        velocities = Velocities(recent)
        watch = Watch.read(deps, repo, requests, now)
        created: dict[str, Payment] = {}
        for index in chosen:
            creation = creations[index]
            request = creation.request
            seen = existing.get(request.payment_id) or created.get(request.payment_id)
            if seen is not None:
                try:
                    if not seen.history:
                        seen.history = repo.history(seen.id)
                    decided.outcomes[index] = replay(seen, request)
                except DomainError as error:
                    decided.outcomes[index] = error
                continue
            try:
                deps.capacity.check(request.currency)
            except DomainError as error:
                decided.outcomes[index] = error
                continue
            status = asked.get(request.customer_id)
            if status is None:
                known = customers.get(request.customer_id)
                if known is None or not known.verified:
                    decided.unknown[index] = known
                    continue
                status = CustomerStatus.of(known)
            try:
                payment = decide_payment(
                    request,
                    status,
                    velocities.of(request.customer_id, request.currency),
                    policy,
                    now,
                    creation.context.run(current_traceparent),
                    creation.screening,
                    **watch.inputs(request),
                )
            except Exception as error:
                if not isinstance(error, DomainError):
                    _log.exception("a creation failed alone", payment_id=request.payment_id)
                decided.outcomes[index] = error
                continue
            if payment.state is not PaymentState.DECLINED:
                velocities.count(request.customer_id, request.currency, request.amount)
                watch.count(payment)
            lease_for_hold(payment, now, policy)
            created[payment.id] = payment
            decided.outcomes[index] = payment
        decided.created = list(created.values())
        repo.add_all(decided.created)
        alerts = [alert for payment in decided.created for alert in payment.alerts]
        if alerts:
            repo.add_alerts(alerts)
        return decided

    return run_in_transaction(deps.uow, work)


@dataclass(slots=True)
class Watch:
    """What monitoring and the fraud model see of a group's customers: their activity as read
    under the customers' locks, added to as the group's payments are accepted."""

    activities: Activities | None = None
    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    scorer: Scorer | None = None

    @classmethod
    def read(
        cls, deps: Deps, repo: PaymentsRepository, requests: Sequence[PaymentRequest], now: datetime
    ) -> Watch:
        rules = deps.policy.monitoring
        scorer = deps.fraud_model.score if deps.fraud_model is not None else None
        if not (rules.enabled or scorer is not None):
            return cls()
        tags = repo.counterparty_tags(
            {(r.customer_id, r.counterparty.account_number) for r in requests}
        )
        asked: dict[str, set[str]] = {r.customer_id: set() for r in requests}
        for (customer_id, _), tag in tags.items():
            asked[customer_id].add(tag)
        read = repo.activities(asked, now - rules.lookback, now - rules.window)
        return cls(Activities(read), tags, scorer)

    def inputs(self, request: PaymentRequest) -> dict[str, Any]:
        """``decide_payment``'s monitoring and scoring arguments for ``request``."""
        if self.activities is None:
            return {}
        return {
            "activity": self.activities.of(request.customer_id),
            "counterparty_tag": self.tags.get(
                (request.customer_id, request.counterparty.account_number), ""
            ),
            "scorer": self.scorer,
        }

    def count(self, payment: Payment) -> None:
        if self.activities is None:
            return
        tag = self.tags.get((payment.customer_id, payment.counterparty.account_number), "")
        self.activities.count(
            payment.customer_id,
            RecentPayment(
                payment.id, payment.kind, payment.amount, payment.currency, payment.created_at, tag
            ),
            [alert.rule for alert in payment.alerts],
        )


def _ask_identity(
    deps: Deps,
    creations: Sequence[Creation],
    unknown: Mapping[int, CustomerKyc | None],
    outcomes: list[Outcome | None],
) -> dict[str, CustomerStatus]:
    """Ask identity about each customer the projection could not decide for, once, in the
    context of its first request; a failure is the outcome of that customer's requests."""
    waiting: dict[str, list[int]] = {}
    for index in unknown:
        waiting.setdefault(creations[index].request.customer_id, []).append(index)
    asked: dict[str, CustomerStatus] = {}
    for customer_id, indices in waiting.items():
        first = indices[0]
        try:
            asked[customer_id] = creations[first].context.run(
                ask_identity, deps, customer_id, unknown[first]
            )
        except Exception as error:
            for index in indices:
                outcomes[index] = error
    return asked


def _decide_apart(
    deps: Deps,
    creations: Sequence[Creation],
    indices: Sequence[int],
    asked: Mapping[str, CustomerStatus],
    outcomes: list[Outcome | None],
) -> list[Payment]:
    """``_decide`` after others' decisions were committed: it never raises. A transaction that
    fails for them together is tried for each request alone, so a failure stays its own."""
    if not indices:
        return []
    try:
        return _decide(deps, creations, indices, asked).record(outcomes)
    except DATABASE_UNAVAILABLE as error:
        for index in indices:
            outcomes[index] = error
        return []
    except Exception as error:
        if len(indices) == 1:
            outcomes[indices[0]] = error
            return []
        _log.exception("creations not decided together; one by one", count=len(indices))
    created: list[Payment] = []
    for index in indices:
        try:
            created += _decide(deps, creations, [index], asked).record(outcomes)
        except Exception as error:
            outcomes[index] = error
    return created


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
    screening = screen_request(request, deps.policy.sanctions, deps.clock.now())
    return creator.submit(Creation(request, account_field, screening), timeout)
