"""The suite's three services as simulated processes: real servicers, real use cases, real
client adapters, on the in-memory storage fakes (their committed rows play the disk).

The fakes are the ones the use-case tests run on, kept to the SQL repositories'
contract by tests/integration/test_ledger_repository_contract.py,
test_identity_repository_contract.py and test_payments_fakes_contract.py. Each
fake's database is given two hooks here: before a transaction begins other
due tasks may run (``Simulation.interleave``: what another thread would do
meanwhile), and a commit may crash its process just before or just after it
takes effect. A crash loses what the process held in memory (caches of the
client adapters, in-flight calls, worker state): the process is rebuilt from its
database when it restarts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, cast

from astra.identity.v1 import identity_pb2_grpc
from astra.ledger.v1 import ledger_pb2_grpc
from chassis.kernel.memory import MemoryDatabase
from identity.adapters.memory import MemoryIdentityDatabase
from identity.entrypoints.grpc_api import IdentityServicer
from identity.service_layer import use_cases as identity_use_cases
from ledger.adapters.memory import MemoryLedgerDatabase
from ledger.bootstrap import Ledger
from ledger.domain.model import TransferRequest
from ledger.entrypoints.grpc_api import LedgerServicer
from ledger.service_layer import use_cases as ledger_use_cases
from ledger.service_layer.ports import ItemOutcome
from ledger.service_layer.use_cases import Caller as LedgerCaller
from payments.adapters import memory as payments_memory
from payments.adapters.identity_client import GrpcIdentity
from payments.adapters.ledger_client import GrpcLedger
from payments.domain.fraud import FraudRules
from payments.domain.policy import Policy
from payments.service_layer.use_cases import Deps

from simulation.bank import SimBank
from simulation.core import Simulation
from simulation.network import SimChannel, SimServer


def _hooked(sim: Simulation, process: str, database: MemoryDatabase) -> None:
    """Interleaving before a chassis fake's transactions, crashes around its commits."""
    begin, commit, end = database.begin, database.commit, database.end

    def hooked_begin() -> None:
        sim.interleave()
        begin()
        sim.open_transactions += 1

    def hooked_commit(events: Sequence[Any]) -> None:
        sim.maybe_crash(process)
        commit(events)
        sim.maybe_crash(process)

    def hooked_end() -> None:
        was_open = database._undo is not None
        end()
        if was_open:
            sim.open_transactions -= 1

    database.begin = hooked_begin  # type: ignore[method-assign]
    database.commit = hooked_commit  # type: ignore[method-assign]
    database.end = hooked_end  # type: ignore[method-assign]


# --- the ledger ---


class SimBatcher:
    """The ledger's group commit for single-transfer calls: a group of one, decided by the
    same ``execute_batch`` the real ``TransferBatcher`` runs."""

    def __init__(self, execute: Callable[[Sequence[TransferRequest]], list[ItemOutcome]]) -> None:
        self._execute = execute

    def submit(self, transfer: TransferRequest, timeout: float | None = None) -> ItemOutcome:
        (outcome,) = self._execute([transfer])
        return outcome

    def close(self) -> None:
        pass


class LedgerProcess:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.db = MemoryLedgerDatabase(sim.clock)
        _hooked(sim, "ledger", self.db)
        self.server = SimServer(sim, "ledger", "ledger.astra")
        self.relay_mark = 0  # the outbox rows marked published (durable)

        def execute(requests: Sequence[TransferRequest]) -> list[ItemOutcome]:
            return ledger_use_cases.execute_batch(self.db.uow, sim.clock, requests)

        ledger = Ledger(
            engine=cast(Any, None),
            clock=sim.clock,
            batcher=cast(Any, SimBatcher(execute)),
            settings=cast(Any, SimpleNamespace(grpc_max_workers=8)),
            uow=self.db.uow,
        )
        servicer = LedgerServicer(ledger, caller_of=lambda _context: LedgerCaller())
        ledger_pb2_grpc.add_LedgerServiceServicer_to_server(servicer, cast(Any, self.server))
        sim.every(1.0, "ledger expiry", "ledger", self.expire)

    def expire(self) -> None:
        expired = ledger_use_cases.expire_due_holds(self.db.uow, self.sim.clock)
        if expired:
            self.sim.record(f"ledger expired {expired} holds")


# --- identity ---


class IdentityProcess:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.db = MemoryIdentityDatabase()
        _hooked(sim, "identity", self.db)
        self.server = SimServer(sim, "identity", "identity.astra")
        self.relay_mark = 0
        # Only customers and KYC are simulated: no keys, tokens or secrets are used.
        self.deps = identity_use_cases.Deps(
            uow=self.db.uow,
            clock=sim.clock,
            hasher=cast(Any, None),
            keys=cast(Any, None),
            tokens=cast(Any, None),
        )
        servicer = IdentityServicer(cast(Any, SimpleNamespace(deps=self.deps)))
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, cast(Any, self.server))


# --- payments ---


class PaymentsDatabase(payments_memory.MemoryDatabase):
    """Payments' committed rows, with the KYC subscriber's inbox (event ids applied)."""

    def __init__(self) -> None:
        super().__init__()
        self.inbox: dict[str, int] = {}  # event id -> times its effect committed (must be 1)
        self.relay_mark = 0


class PaymentsUnitOfWork(payments_memory.MemoryUnitOfWork):
    """Payments' fake unit of work with the simulation's hooks; ``inbox_event``: the event
    whose inbox row commits with this transaction (a subscriber's handling)."""

    def __init__(self, sim: Simulation, database: PaymentsDatabase, inbox_event: str = "") -> None:
        super().__init__(database)
        self._sim = sim
        self._database = database
        self._inbox_event = inbox_event
        self._open = False

    def _begin(self) -> None:
        self._sim.interleave()
        super()._begin()
        self._open = True
        self._sim.open_transactions += 1

    def _commit(self, events: Sequence[Any]) -> None:
        self._sim.maybe_crash("payments")
        super()._commit(events)
        if self._inbox_event:
            inbox = self._database.inbox
            inbox[self._inbox_event] = inbox.get(self._inbox_event, 0) + 1
        self._sim.maybe_crash("payments")

    def rollback(self) -> None:
        super().rollback()
        if self._open:
            self._open = False
            self._sim.open_transactions -= 1


class PaymentsProcess:
    """Payments: its database survives crashes; its adapters and deps are rebuilt on restart."""

    def __init__(
        self, sim: Simulation, ledger: LedgerProcess, identity: IdentityProcess, bank: SimBank
    ) -> None:
        self.sim = sim
        self.db = PaymentsDatabase()
        self._ledger_server = ledger.server
        self._identity_server = identity.server
        self.bank = bank
        self.jitter = random.Random(sim.rng.randrange(1 << 30))
        self.deps = self._wire()
        sim.process("payments").on_restart.append(self._restart)

    def uow(self, inbox_event: str = "") -> PaymentsUnitOfWork:
        return PaymentsUnitOfWork(self.sim, self.db, inbox_event)

    def _wire(self) -> Deps:
        policy = Policy(
            # Larger payouts wait for a reviewer: approvals and rejections are exercised.
            fraud=FraudRules(review_amount={"EUR": 40_000}),
            jitter=self.jitter,
        )
        return Deps(
            uow=self.uow,
            clock=self.sim.clock,
            ledger=GrpcLedger(cast(Any, SimChannel(self.sim, "payments", self._ledger_server))),
            identity=GrpcIdentity(
                cast(Any, SimChannel(self.sim, "payments", self._identity_server))
            ),
            bank=self.bank,
            policy=policy,
        )

    def _restart(self) -> None:
        # Nothing held in memory survives: the adapters' caches (opened accounts) start empty.
        self.deps = self._wire()
