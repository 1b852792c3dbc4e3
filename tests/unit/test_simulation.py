"""The deterministic simulation (SIMULATION.md): one seed, one run; the checkers can fail.

CI runs a fixed set of seeds (each a whole run: identity, ledger, payments and
the bank in one process with the seed's faults) and a few with every fault
turned up; longer runs are ``make simulate SEEDS=N``. Each checker is shown to
fire on a violation planted in a finished run, and one re-introduced defect of
the hardening issue is shown to be caught (``simulation.mutate``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from payments.domain.model import BankStatus
from payments.domain.states import PaymentState
from structlog.testing import capture_logs

from simulation import checkers
from simulation.core import Faults
from simulation.world import World, run_seed

ROOT = Path(__file__).resolve().parents[2]
CI_SEEDS = range(1, 121)
HEAVY_SEEDS = range(1, 11)


def run(seed: int, faults: Faults | None = None) -> World:
    with capture_logs():  # the code under test logs what operators must see
        return run_seed(seed, faults)


def heavy() -> Faults:
    return Faults(*(0.3,) * 11)


# --- determinism ----------------------------------------------------------------------


def test_the_same_seed_gives_the_same_event_log_byte_for_byte() -> None:
    first, second = run(7), run(7)
    assert first.sim.log == second.sim.log
    assert first.sim.digest() == second.sim.digest()
    assert len(first.sim.log) > 100


def test_the_same_seed_gives_the_same_hash_whatever_the_string_hash_seed() -> None:
    hashes = set()
    for hash_seed in ("0", "4242"):
        result = subprocess.run(
            [sys.executable, "-m", "simulation", "--seed", "11"],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        )
        (line,) = [x for x in result.stdout.splitlines() if "event log hash" in x]
        hashes.add(line)
    assert len(hashes) == 1


def test_different_seeds_give_different_runs() -> None:
    digests = {run(seed).sim.digest() for seed in (1, 2, 3)}
    assert len(digests) == 3


# --- the seeds CI runs -------------------------------------------------------------------


def test_a_fixed_set_of_seeds_has_no_violation() -> None:
    failed = {}
    work = {"payments": 0, "transfers": 0, "crashes": 0, "settled": 0}
    for seed in CI_SEEDS:
        world = run(seed)
        if world.sim.violations:
            failed[seed] = world.sim.violations[:3]
        work["payments"] += len(world.payments.db.payments)
        work["transfers"] += len(world.ledger.db.transfers)
        work["crashes"] += sum(p.crashes for p in world.sim.processes.values())
        work["settled"] += sum(p.status is BankStatus.SETTLED for p in world.bank.payments.values())
    assert failed == {}, f"replay with: make simulate SEED={min(failed)}"
    # The runs did the work they are meant to: payments, transfers, crashes, settlements.
    assert all(count > 100 for count in work.values()), work


@pytest.mark.parametrize("seed", HEAVY_SEEDS)
def test_every_fault_turned_up_still_has_no_violation(seed: int) -> None:
    world = run(seed, heavy())
    assert world.sim.violations == []
    assert sum(p.crashes for p in world.sim.processes.values()) > 0


# --- the checkers can fail -------------------------------------------------------------------


@pytest.fixture
def world() -> World:
    """A finished run without violations, to plant one in (a fresh run for each test)."""
    finished = run(5)
    assert finished.sim.violations == []
    return finished


def test_zero_sum_fires(world: World) -> None:
    account = world.ledger.db.accounts._rows["acct_ops_target"]
    account.credits_posted += 1
    assert checkers.zero_sum(world)


def test_no_overdraft_at_any_entry_fires(world: World) -> None:
    entry = world.ledger.db.entries["acct_ops_source"][-1]
    entry.debits_posted += 10**9
    assert checkers.no_overdraft_at_any_entry(world)


def test_durability_fires_when_an_acknowledged_transfer_is_gone(world: World) -> None:
    transfer_id = sorted(world.seen.transfers)[0]
    del world.ledger.db.transfers._rows[transfer_id]
    assert checkers.durable(world)


def test_a_refusal_for_committed_work_fires(world: World) -> None:
    payment_id = next(
        i for i, p in sorted(world.payments.db.payments.items()) if p.state is PaymentState.SETTLED
    )
    world.seen.refused[payment_id] = "INTERNAL"
    assert checkers.refusals_final(world)


def test_an_unfounded_ledger_refusal_fires(world: World) -> None:
    hold = next(t for t in sorted(world.seen.transfers) if t.startswith("tr_hold"))
    world.seen.transfer_refusals["tr_planted"] = "PENDING_TRANSFER_NOT_FOUND"
    world.seen.targets["tr_planted"] = hold
    assert checkers.refusals_founded(world)


def test_paid_twice_fires(world: World) -> None:
    key, payment = sorted(world.bank.payments.items())[0]
    world.bank.payments[f"{key}_again"] = copy.copy(payment)
    assert checkers.paid_once(world)


def test_a_bank_payment_of_another_amount_fires(world: World) -> None:
    paid = world.bank.payments[sorted(world.bank.payments)[0]]
    paid.instruction = dataclasses.replace(paid.instruction, amount=paid.instruction.amount + 1)
    assert checkers.paid_once(world)


def test_a_payment_left_unfinished_fires(world: World) -> None:
    payment = sorted(world.payments.db.payments.values(), key=lambda p: p.id)[0]
    payment.state = PaymentState.SUBMITTED
    assert checkers.payments_done(world)


def test_an_as_of_answer_that_changed_fires(world: World) -> None:
    key = sorted(world.seen.as_of)[-1]
    world.seen.as_of[key].posted += 1
    assert checkers.as_of_stable(world)


def test_a_lost_event_fires(world: World) -> None:
    consumed = world.consumed["audit-ledger"]
    key = sorted(consumed)[0]
    consumed[key].pop()
    assert checkers.events(world)


def test_events_out_of_order_fire(world: World) -> None:
    consumed = world.consumed["audit-ledger"]
    key = next(k for k in sorted(consumed) if len(consumed[k]) > 1)
    consumed[key].reverse()
    assert checkers.events(world)


def test_an_event_applied_twice_fires(world: World) -> None:
    world.payments.db.inbox["identity-1"] += 1
    assert checkers.events(world)


def test_a_stale_kyc_projection_fires(world: World) -> None:
    customer_id, kyc = sorted(world.payments.db.customers.items())[0]
    world.payments.db.customers[customer_id] = dataclasses.replace(
        kyc, kyc_version=kyc.kyc_version - 1
    )
    assert checkers.kyc_projection(world)


def test_an_acknowledged_payment_that_is_gone_fires(world: World) -> None:
    del world.payments.db.payments[sorted(world.seen.payments)[0]]
    assert checkers.durable(world)


def test_the_continuous_check_fires_during_a_run(world: World) -> None:
    world.ledger.db.accounts._rows["acct_ops_source"].debits_posted += 10**9
    checkers.continuous(world)
    assert any("does not sum to zero" in v for v in world.sim.violations)
    assert any("overdrawn" in v for v in world.sim.violations)


def test_a_broken_journal_fires(world: World) -> None:
    row = world.ledger.db.journal[3]
    world.ledger.db.journal[3] = dataclasses.replace(row, body=row.body + b" ")
    assert checkers.journal(world)


def test_a_reconciliation_break_fires(world: World) -> None:
    planted = dataclasses.replace(world.reports[0], breaks=("planted",))  # type: ignore[arg-type]
    world.reports = [planted]
    assert checkers.reconciled(world)


def test_a_settled_payout_whose_hold_is_not_posted_fires(world: World) -> None:
    payment = next(
        p
        for _, p in sorted(world.payments.db.payments.items())
        if p.state is PaymentState.SETTLED and p.outgoing
    )
    hold = world.ledger.db.transfers.get(f"tr_{payment.id}_hold")
    assert hold is not None
    resolution = world.ledger.db.transfers.by("resolution", hold.id)
    assert resolution is not None
    del world.ledger.db.transfers._rows[resolution.id]
    world.ledger.db.transfers._indexes["resolution"].pop(hold.id)
    assert checkers.ledger_matches_payments(world)


# --- a defect of the hardening issue, re-introduced, is caught ---------------------------------


def test_shared_fate_in_group_creation_is_caught() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulation.mutate",
            "shared_fate_in_group_creation",
            "--seeds",
            "5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "refused to its caller" in result.stdout
    assert "mutation shared_fate_in_group_creation: caught" in result.stdout


# --- what the code under test reads of time and chance comes from the run ----------------------


def test_the_ledger_fake_stamps_its_journal_with_the_clock_it_is_given() -> None:
    from ledger.adapters.memory import MemoryLedgerDatabase
    from ledger.domain.model import AccountSpec, NormalSide
    from ledger.service_layer import use_cases as ledger_use_cases

    from simulation.core import START, SimClock

    clock = SimClock()
    database = MemoryLedgerDatabase(clock)
    spec = AccountSpec("acct_clocked", "EUR", NormalSide.DEBIT)
    ledger_use_cases.open_account(database.uow, clock, spec)
    assert [row.recorded_at for row in database.journal] == [START]


def test_payments_backoff_jitter_is_drawn_from_the_policy() -> None:
    import random

    from payments.domain.progress import backoff

    draws = [backoff(3, 60.0, random.Random(9)) for _ in range(2)]
    assert draws[0] == draws[1]
    assert backoff(3, 60.0, random.Random(9)) != backoff(3, 60.0, random.Random(10))
