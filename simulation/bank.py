"""The bank, simulated: payments' ``MemoryBank`` (a submission's idempotency key makes it one
payment) with the sandbox bank's faults drawn from the seed: errors (nothing done),
lost answers (done, no reply), feeds and statements unavailable, payments that
settle late, fail, or come back as returns after settling. It counts what it paid."""

from __future__ import annotations

from collections import Counter

from payments.adapters.memory import MemoryBank
from payments.domain.bank import (
    BankEvent,
    BankInstruction,
    LookupOutcome,
    LookupResult,
    SubmitOutcome,
    SubmitResult,
)
from payments.domain.model import BankStatus
from payments.domain.reconciliation import StatementLine
from payments.service_layer.ports import BankUnavailable

from simulation.core import Simulation


class SimBank(MemoryBank):
    def __init__(self, sim: Simulation) -> None:
        super().__init__(sim.clock)
        self.sim = sim

    def submit(self, instruction: BankInstruction) -> SubmitOutcome:
        sim = self.sim
        if sim.chance(sim.faults.bank_error):
            sim.record(f"bank error submit {instruction.reference}")
            return SubmitOutcome(SubmitResult.NOT_SENT, code="503")
        new = instruction.idempotency_key not in self.payments
        outcome = MemoryBank.submit(self, instruction)
        if new and instruction.idempotency_key in self.payments:
            sim.record(f"bank accepted {instruction.reference} {instruction.amount}")
            sim.after(
                sim.rng.uniform(0.1, 20.0),
                "bank settles",
                "bank",
                lambda: self._decide(instruction.idempotency_key),
            )
        if sim.chance(sim.faults.bank_lost_answer):
            sim.record(f"bank lost answer {instruction.reference}")
            return SubmitOutcome(SubmitResult.UNKNOWN, code="ReadTimeout")
        return outcome

    def lookup(self, idempotency_key: str) -> LookupOutcome:
        if self.sim.chance(self.sim.faults.bank_error):
            return LookupOutcome(LookupResult.UNKNOWN)
        return MemoryBank.lookup(self, idempotency_key)

    def events(self, after: int, wait: float) -> tuple[list[BankEvent], int]:
        if self.sim.chance(self.sim.faults.bank_error):
            raise BankUnavailable("503")
        return MemoryBank.events(self, after, wait)

    def statement(self, day: object) -> list[StatementLine]:
        if self.sim.chance(self.sim.faults.bank_error):
            raise BankUnavailable("503")
        return MemoryBank.statement(self, day)  # type: ignore[arg-type]

    # --- the bank's side ---

    def _decide(self, key: str) -> None:
        """A submitted payment settles (most), fails, and a settled one may come back later."""
        sim = self.sim
        payment = self.payments[key]
        if payment.status is not BankStatus.PENDING:
            return
        if sim.rng.random() < 0.1:
            self.fail(key, "account_closed")
            sim.record(f"bank failed {key}")
            return
        self.settle(key)
        sim.record(f"bank settled {key}")
        if sim.chance(sim.faults.bank_return):
            sim.after(sim.rng.uniform(1.0, 30.0), "bank returns", "bank", lambda: self._return(key))

    def _return(self, key: str) -> None:
        if self.payments[key].status is BankStatus.SETTLED:
            self.return_payment(key)
            self.sim.record(f"bank returned {key}")

    def settle_pending(self) -> None:
        """The end of the day: whatever is still pending is decided."""
        for key in sorted(self.payments):
            self._decide(key)

    # --- what the checkers ask ---

    def feed_length(self) -> int:
        return len(self._feed)

    def paid_per_reference(self) -> Counter[str]:
        """How many bank payments each payment reference became (2 or more: paid twice)."""
        return Counter(p.instruction.reference for p in self.payments.values())
