"""The bank gateway (httpx + chassis retry + pybreaker) against the real sandbox bank process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from chassis.retry import RetryPolicy
from payments.adapters.bank_gateway import HttpBankGateway, new_breaker
from payments.bootstrap import bank_gateway
from payments.domain.bank import BankInstruction, LookupResult, SubmitResult
from payments.domain.model import BankAccount, BankStatus
from payments.service_layer.ports import BankUnavailable
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.payments_fixtures import ForgingProxy, SandboxBank, payments_settings


def instruction(key: str, amount: int = 1_000) -> BankInstruction:
    return BankInstruction(
        idempotency_key=key,
        outgoing=True,
        amount=amount,
        currency="EUR",
        counterparty=BankAccount("DE0001", "Dora"),
        reference=key,
    )


def make_gateway(bank: SandboxBank, fail_max: int, url: str = "") -> HttpBankGateway:
    return HttpBankGateway(
        url or bank.url,
        policy=RetryPolicy(max_attempts=4, initial_backoff=0.02, max_backoff=0.1, budget=4.0),
        breaker=new_breaker(f"bank-test-{fail_max}", fail_max=fail_max, reset_timeout=1.0),
        auth=bank.auth(),
        timeout=0.5,
    )


@pytest.fixture
def gateway(sandbox_bank: SandboxBank) -> Iterator[HttpBankGateway]:
    made = make_gateway(sandbox_bank, fail_max=50)
    yield made
    made.close()


@pytest.fixture
def touchy(sandbox_bank: SandboxBank) -> Iterator[HttpBankGateway]:
    """A gateway whose breaker opens after three failed requests."""
    made = make_gateway(sandbox_bank, fail_max=3)
    yield made
    made.close()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_transient_errors_are_retried_with_the_same_key(
    sandbox_bank: SandboxBank, gateway: HttpBankGateway
) -> None:
    sandbox_bank.set_faults(error_rate=1)
    retries_before = counter("dependency_call_retries_total", dependency="bank", operation="submit")
    with capture_logs() as logs:
        outcome = gateway.submit(instruction("pay_g1"))
    assert (outcome.result, outcome.code) == (SubmitResult.UNKNOWN, "HTTPStatusError")
    retries = [e for e in logs if e["event"] == "retrying call"]
    assert [e["attempt"] for e in retries] == [1, 2, 3]
    assert {e["idempotency_key"] for e in retries} == {"pay_g1"}
    assert (
        counter("dependency_call_retries_total", dependency="bank", operation="submit")
        - retries_before
        == 3
    )
    sandbox_bank.clear_faults()
    accepted = gateway.submit(instruction("pay_g1"))
    assert accepted.result is SubmitResult.ACCEPTED
    assert accepted.payment is not None
    assert accepted.payment.status is BankStatus.PENDING


def test_a_lost_response_is_an_unknown_outcome_resolved_by_lookup(
    sandbox_bank: SandboxBank, gateway: HttpBankGateway
) -> None:
    assert gateway.lookup("pay_lost").result is LookupResult.NOT_FOUND
    sandbox_bank.set_faults(lost_response_rate=1, hang_seconds=2)
    outcome = gateway.submit(instruction("pay_lost"))
    assert outcome.result is SubmitResult.UNKNOWN
    sandbox_bank.clear_faults()
    found = gateway.lookup("pay_lost")
    assert found.result is LookupResult.FOUND
    assert found.payment is not None
    assert found.payment.reference == "pay_lost"
    # Every attempt carried the same key: one payment at the bank, the rest replays.
    counters = sandbox_bank.stats()["counters"]
    assert counters["submissions_created"] == 1
    assert counters["submissions_replayed"] >= 1


def test_retry_after_is_honoured(sandbox_bank: SandboxBank, gateway: HttpBankGateway) -> None:
    sandbox_bank.set_faults(rate_limit_rate=1, retry_after_seconds=1)
    with capture_logs() as logs:
        outcome = gateway.submit(instruction("pay_429"))
    assert outcome.result is SubmitResult.UNKNOWN
    waits = [e["wait_seconds"] for e in logs if e["event"] == "retrying call"]
    assert waits
    assert all(w >= 1 for w in waits)
    assert all(e["retry_after"] == 1 for e in logs if e["event"] == "retrying call")
    # Rate limiting is the bank being up: the breaker stays closed.
    assert gateway.breaker.current_state == "closed"
    assert sandbox_bank.payments() == []


def test_the_breaker_opens_fails_fast_and_recovers(
    sandbox_bank: SandboxBank, touchy: HttpBankGateway
) -> None:
    gateway = touchy
    sandbox_bank.kill()
    first = gateway.submit(instruction("pay_b1"))
    # Three connect errors opened it; the fourth attempt was never sent.
    assert (first.result, first.code) == (SubmitResult.NOT_SENT, "breaker_open")
    assert gateway.breaker.current_state == "open"
    assert REGISTRY.get_sample_value("circuit_breaker_state", {"breaker": "bank-test-3"}) == 2
    open_before = counter(
        "dependency_call_attempts_total",
        dependency="bank",
        operation="submit",
        result="breaker_open",
    )
    fast = gateway.submit(instruction("pay_b2"))
    assert (fast.result, fast.code) == (SubmitResult.NOT_SENT, "breaker_open")
    assert (
        counter(
            "dependency_call_attempts_total",
            dependency="bank",
            operation="submit",
            result="breaker_open",
        )
        == open_before + 1
    )
    sandbox_bank.start()
    time.sleep(1.1)  # the breaker's reset timeout: the next call is its trial
    recovered = gateway.submit(instruction("pay_b2"))
    assert recovered.result is SubmitResult.ACCEPTED
    assert gateway.breaker.current_state == "closed"
    assert REGISTRY.get_sample_value("circuit_breaker_state", {"breaker": "bank-test-3"}) == 0
    assert [p["reference"] for p in sandbox_bank.payments()] == ["pay_b2"]


def test_statement_pages_are_read_to_the_end(
    sandbox_bank: SandboxBank, gateway: HttpBankGateway
) -> None:
    for i in range(3):
        gateway.submit(instruction(f"pay_s{i}", amount=100 + i))
    deadline = time.monotonic() + 10
    while len(sandbox_bank.admin("GET", "/v1/statements/" + _today())["lines"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lines = gateway.statement(_date())
    assert sorted((x.reference, x.amount, x.outgoing) for x in lines) == [
        ("pay_s0", 100, True),
        ("pay_s1", 101, True),
        ("pay_s2", 102, True),
    ]


def _date() -> date:
    return datetime.now(UTC).date()


def _today() -> str:
    return _date().isoformat()


def test_an_answer_changed_on_the_wire_is_a_bank_fault_never_an_answer(
    sandbox_bank: SandboxBank,
) -> None:
    # Someone between payments and the bank shrinks every amount the bank reports.
    def shrink(body: bytes) -> bytes:
        return body.replace(b'"amount":1000', b'"amount":1')

    with ForgingProxy(sandbox_bank.url, shrink) as proxy:
        gateway = make_gateway(sandbox_bank, fail_max=50, url=proxy.url)
        bad_before = counter(
            "dependency_call_attempts_total",
            dependency="bank",
            operation="submit",
            result="bad_signature",
        )
        with capture_logs() as logs:
            outcome = gateway.submit(instruction("pay_mitm"))
            # The bank acted, but what came back is not the bank's word: the outcome is unknown.
            assert (outcome.result, outcome.payment) == (SubmitResult.UNKNOWN, None)
            assert gateway.lookup("pay_mitm").result is LookupResult.UNKNOWN
            with pytest.raises(BankUnavailable):
                gateway.events(0, 0)
            while not sandbox_bank.admin("GET", "/v1/statements/" + _today())["lines"]:
                time.sleep(0.05)
            with pytest.raises(BankUnavailable):
                gateway.statement(_date())
        refused = [e for e in logs if "failed its signature check" in e["event"]]
        assert {e["reason"] for e in refused} == {"digest_mismatch"}
        assert proxy.forged["/v1/payments"] >= 2  # the submission's and the lookup's answers
        bad = counter(
            "dependency_call_attempts_total",
            dependency="bank",
            operation="submit",
            result="bad_signature",
        )
        assert bad - bad_before == 4  # every attempt, retried as a bank fault
        proxy.forging = False
        found = gateway.lookup("pay_mitm")
        gateway.close()
    assert found.result is LookupResult.FOUND
    assert found.payment is not None
    assert found.payment.amount == 1_000
    assert [p["reference"] for p in sandbox_bank.payments()] == ["pay_mitm"]


def test_an_https_bank_is_believed_only_with_the_certificate_of_the_ca_given(
    tmp_path: Path,
) -> None:
    bank = SandboxBank(tmp_path, {}, https=True).start()
    try:
        assert bank.url.startswith("https://")
        settings = payments_settings(
            "sqlite://", bank.url, environment="production", bank_ca_file=str(bank.ca_file)
        )
        trusting = bank_gateway(settings)
        accepted = trusting.submit(instruction("pay_tls"))
        trusting.close()
        # Without the bank's CA (the system's CAs only) the bank is not the bank: nothing sent.
        doubting = bank_gateway(settings.model_copy(update={"bank_ca_file": ""}))
        refused = doubting.submit(instruction("pay_tls_2"))
        doubting.close()
        payments = bank.payments()
    finally:
        bank.stop()
    assert accepted.result is SubmitResult.ACCEPTED
    assert (refused.result, refused.code) == (SubmitResult.NOT_SENT, "ConnectError")
    assert [p["reference"] for p in payments] == ["pay_tls"]
