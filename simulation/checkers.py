"""The invariants, checked during a run (``continuous``) and after it (``final``).

Each check reads the committed state of the fakes (what a crash cannot take
away) and what the clients were told (``world.Observed``); a check that fails
records a violation with what it saw. ``tests/unit/test_simulation.py`` plants
a violation for each checker to show it can fail.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ledger.domain.journal import first_break
from ledger.domain.model import Account
from ledger.service_layer import use_cases as ledger_use_cases
from payments.domain.states import TERMINAL, PaymentKind, PaymentState

from simulation.pubsub import event_sequence

if TYPE_CHECKING:
    from simulation.world import World


def _accounts(world: World) -> list[Account]:
    return world.ledger.db.accounts.select(order_by=lambda a: a.id)


def zero_sum(world: World) -> list[str]:
    """Per currency, debits equal credits, posted and pending."""
    sums: dict[str, list[int]] = {}
    for account in _accounts(world):
        total = sums.setdefault(account.currency, [0, 0])
        total[0] += account.debits_posted - account.credits_posted
        total[1] += account.debits_pending - account.credits_pending
    return [
        f"{ccy} does not sum to zero: {total}"
        for ccy, total in sorted(sums.items())
        if total != [0, 0]
    ]


def no_overdraft_now(world: World) -> list[str]:
    found = []
    for account in _accounts(world):
        if account.debits_must_not_exceed_credits and (
            account.credits_posted - account.debits_posted - account.debits_pending < 0
        ):
            found.append(f"{account.id} is overdrawn")
    return found


def no_overdraft_at_any_entry(world: World) -> list[str]:
    """Every entry of a limited account leaves it within its limit, and the entries chain
    (each stores the sums after its own effect)."""
    found = []
    for account in _accounts(world):
        sums = (0, 0, 0, 0)
        for entry in world.ledger.db.entries.get(account.id, []):
            effect = entry.effect()
            sums = tuple(a + b for a, b in zip(sums, effect, strict=True))  # type: ignore[assignment]
            stored = (
                entry.debits_posted,
                entry.credits_posted,
                entry.debits_pending,
                entry.credits_pending,
            )
            if stored != sums:
                found.append(f"{account.id} entry {entry.sequence} stores {stored}, sums {sums}")
                break
            if account.debits_must_not_exceed_credits and (
                entry.credits_posted - entry.debits_posted - entry.debits_pending < 0
            ):
                found.append(f"{account.id} overdrawn at entry {entry.sequence}")
                break
    return found


def continuous(world: World) -> None:
    for problem in zero_sum(world) + no_overdraft_now(world):
        world.sim.violation(problem)


def durable(world: World) -> list[str]:
    """Every write a client was told succeeded is still there, as it was told."""
    found = []
    db = world.ledger.db
    for transfer_id, told in sorted(world.seen.transfers.items()):
        record = db.transfers.get(transfer_id)
        if record is None or not record.ok:
            found.append(f"acknowledged transfer {transfer_id} is gone")
            continue
        amounts = sorted(leg.amount for leg in record.legs)
        if amounts != sorted(leg.amount for leg in told.legs):
            found.append(f"transfer {transfer_id} is not what was acknowledged")
    payments = world.payments.db.payments
    for payment_id, payment in sorted(world.seen.payments.items()):
        stored = payments.get(payment_id)
        if stored is None or (stored.amount, stored.kind) != (payment.amount, payment.kind):
            found.append(f"acknowledged payment {payment_id} is gone or changed")
    return found


# A refusal of a post, void or reversal of an acknowledged transfer, and what must then be
# true of that transfer in the end (its resolution's kind, or that it was reversed).
_FOUNDED = {
    "ALREADY_POSTED": "POST_PENDING",
    "ALREADY_VOIDED": "VOID_PENDING",
    "PENDING_TRANSFER_EXPIRED": "EXPIRE_PENDING",
    "ALREADY_REVERSED": "reversed",
}
# Refusals that are right whatever the state (limits, kinds): not judged here.
_ALWAYS_POSSIBLE = frozenset({"INSUFFICIENT_FUNDS", "TRANSFER_NOT_REVERSIBLE"})


def refusals_founded(world: World) -> list[str]:
    """Every refusal a ledger client was given is true of the transfer it names: a reference
    to an acknowledged transfer is never NOT_FOUND, and 'already posted' means posted."""
    found = []
    db = world.ledger.db
    for transfer_id, reason in sorted(world.seen.transfer_refusals.items()):
        target_id = world.seen.targets.get(transfer_id)
        if not target_id or reason in _ALWAYS_POSSIBLE:
            continue
        target = db.transfers.get(target_id)
        if target is None:
            found.append(f"{transfer_id} refused {reason}: its target {target_id} is not stored")
            continue
        truth = _FOUNDED.get(reason)
        if truth == "reversed":
            ok = db.transfers.by("reversal", target_id) is not None
        elif truth is not None:
            resolution = db.transfers.by("resolution", target_id)
            ok = resolution is not None and resolution.kind.name == truth
            if reason == "PENDING_TRANSFER_EXPIRED" and not ok:
                # Past its expiry the worker may not have voided it yet when it was refused.
                ok = target.expires_at is not None and (
                    resolution is None or resolution.kind.name == "EXPIRE_PENDING"
                )
        else:
            ok = False  # NOT_FOUND, ACCOUNT_NOT_FOUND...: the target was acknowledged
        if not ok:
            found.append(f"{transfer_id} refused {reason}, unfounded for {target_id}")
    return found


def refusals_final(world: World) -> list[str]:
    """A caller told its creation was refused never has it committed (no shared fate: nobody
    gets an error for work that was done); a declined payment is its own refusal."""
    found = []
    payments = world.payments.db.payments
    for payment_id, reason in sorted(world.seen.refused.items()):
        stored = payments.get(payment_id)
        if stored is not None and stored.state is not PaymentState.DECLINED:
            found.append(
                f"{payment_id} was refused to its caller ({reason}) but committed as "
                f"{stored.state.name}"
            )
    return found


def paid_once(world: World) -> list[str]:
    """No payment reference is paid twice at the bank, nor a payout the client meant once."""
    found = [
        f"{reference} became {count} bank payments"
        for reference, count in sorted(world.bank.paid_per_reference().items())
        if count > 1
    ]
    bank = world.bank.payments
    ours = world.payments.db.payments
    for key, paid in sorted(bank.items()):
        payment = ours.get(paid.instruction.reference)
        if payment is None or (payment.amount, payment.outgoing) != (
            paid.instruction.amount,
            paid.instruction.outgoing,
        ):
            found.append(f"bank payment {key} is no payment of ours as it was asked")
    for intent, tried in sorted(world.seen.intents.items()):
        settled = [i for i in tried if i in bank and bank[i].status.name in ("SETTLED", "RETURNED")]
        if len(settled) > 1:
            found.append(f"payout {intent} was paid {len(settled)} times: {settled}")
    return found


def payments_done(world: World) -> list[str]:
    """Every payment is terminal or settled, with nothing left to do, and agrees with the bank."""
    found = []
    bank = world.bank.payments
    for payment_id, payment in sorted(world.payments.db.payments.items()):
        if payment.state not in TERMINAL and payment.state is not PaymentState.SETTLED:
            found.append(f"{payment_id} is stuck in {payment.state.name}")
            continue
        if payment.next_action_at is not None:
            found.append(f"{payment_id} still has work ({payment.state.name})")
        at_bank = bank.get(payment_id)
        status = at_bank.status.name if at_bank is not None else None
        if payment.state is PaymentState.SETTLED and status != "SETTLED":
            found.append(f"{payment_id} SETTLED here, {status} at the bank")
        if payment.state is PaymentState.RETURNED and status != "RETURNED":
            found.append(f"{payment_id} RETURNED here, {status} at the bank")
        if status == "SETTLED" and payment.state is not PaymentState.SETTLED:
            found.append(f"{payment_id} settled at the bank, {payment.state.name} here")
    return found


def reconciled(world: World) -> list[str]:
    """The ledger matches the bank: the final reconciliation runs found no break."""
    return [
        f"reconciliation {report.run_id}: {len(report.breaks)} breaks: {report.breaks[:3]}"
        for report in world.reports
        if report.breaks
    ]


def ledger_matches_payments(world: World) -> list[str]:
    """A payout that left (settled) has its hold posted; one that did not, its hold released."""
    found = []
    db = world.ledger.db
    for payment_id, payment in sorted(world.payments.db.payments.items()):
        if payment.kind is not PaymentKind.PAYOUT:
            continue
        hold = db.transfers.get(f"tr_{payment_id}_hold")
        if hold is None or not hold.ok:
            continue
        resolution = db.transfers.by("resolution", hold.id)
        if payment.state is PaymentState.SETTLED and (
            resolution is None or resolution.kind.name != "POST_PENDING"
        ):
            found.append(f"{payment_id} settled but its hold is not posted")
        if (
            payment.state in TERMINAL
            and payment.state is not PaymentState.RETURNED
            and (resolution is None or resolution.kind.name == "POST_PENDING")
        ):
            found.append(f"{payment_id} {payment.state.name} but its hold is not released")
    return found


def as_of_stable(world: World) -> list[str]:
    """Every as-of balance answered during the run is answered the same now."""
    from datetime import datetime

    found = []
    for (account_id, instant), first in sorted(world.seen.as_of.items()):
        now = ledger_use_cases.get_balance(
            world.ledger.db.uow, account_id, datetime.fromisoformat(instant), world.sim.clock
        )
        if (now.posted, now.pending) != (first.posted, first.pending):
            found.append(
                f"as-of {account_id} at {instant}: answered {first.posted}/{first.pending}, "
                f"now {now.posted}/{now.pending}"
            )
    return found


def events(world: World) -> list[str]:
    """Every committed event reached every consumer, took effect once, in order per key."""
    found = []
    published = world.pubsub.published
    counts = {
        "ledger": len(world.ledger.db.events),
        "identity": len(world.identity.db.events),
        "payments": len(world.payments.db.outbox),
    }
    for topic, count in sorted(counts.items()):
        expected = [f"{topic}-{n}" for n in range(1, count + 1)]
        if sorted(published.get(topic, []), key=event_sequence) != expected:
            found.append(f"{topic}: {len(published.get(topic, []))} of {count} events published")
        consumed = sorted(
            (e for ids in world.consumed.get(f"audit-{topic}", {}).values() for e in ids),
            key=event_sequence,
        )
        if consumed != expected:
            found.append(f"{topic}: audit consumer had {len(consumed)} of {count} events")
    inbox = world.payments.db.inbox
    for n in range(1, counts["identity"] + 1):
        times = inbox.get(f"identity-{n}", 0)
        if times != 1:
            found.append(f"identity-{n} took effect {times} times in payments' KYC projection")
    for consumer, keys in sorted(world.consumed.items()):
        for key, ids in sorted(keys.items()):
            sequence = [event_sequence(e) for e in ids]
            if sequence != sorted(sequence) or len(set(sequence)) != len(sequence):
                found.append(f"{consumer} saw {key} out of order or twice: {ids}")
    return found


def kyc_projection(world: World) -> list[str]:
    """Payments' KYC projection ends where identity is (the newest version won)."""
    found = []
    projection = world.payments.db.customers
    for customer in world.identity.db.customers.select(order_by=lambda c: c.id):
        known = projection.get(customer.id)
        if known is None or known.kyc_version != customer.kyc_version:
            found.append(
                f"{customer.id}: identity at KYC version {customer.kyc_version}, payments "
                f"at {known.kyc_version if known else None}"
            )
    return found


def journal(world: World) -> list[str]:
    broken = first_break(row.checked() for row in world.ledger.db.journal)
    return [f"journal breaks at {broken.sequence}: {broken.reason}"] if broken else []


FINAL = (
    zero_sum,
    no_overdraft_at_any_entry,
    durable,
    refusals_final,
    refusals_founded,
    paid_once,
    payments_done,
    reconciled,
    ledger_matches_payments,
    as_of_stable,
    events,
    kyc_projection,
    journal,
)


def final(world: World) -> None:
    for check in FINAL:
        for problem in check(world):
            world.sim.violation(f"{check.__name__}: {problem}")
    for account in _accounts(world):
        world.sim.record(
            f"final {account.id} {account.debits_posted} {account.credits_posted} "
            f"{account.debits_pending} {account.credits_pending}"
        )
    for payment_id, payment in sorted(world.payments.db.payments.items()):
        world.sim.record(f"final {payment_id} {payment.state.name} {payment.amount}")
    crashes = Counter({name: p.crashes for name, p in world.sim.processes.items() if p.crashes})
    world.sim.record(f"end crashes {sorted(crashes.items())} steps {world.sim.steps}")
