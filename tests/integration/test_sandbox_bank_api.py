"""The sandbox bank as a client sees it: a real process over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from chassis.http_signatures import SigningKey, sign_request

from tests.payments_fixtures import BANK_KEY, SandboxBank


def body(reference: str, amount: int = 1_000, account: str = "DE0001", **kw: Any) -> dict[str, Any]:
    return {
        "type": kw.get("type", "credit_transfer"),
        "amount": amount,
        "currency": "EUR",
        "counterparty": {"account_number": account, "name": "Dora"},
        "reference": reference,
    }


def submit(bank: SandboxBank, key: str, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{bank.url}/v1/payments",
        json=payload,
        headers={"Idempotency-Key": key},
        timeout=10,
        auth=bank.auth(),
    )


def events(bank: SandboxBank, after: int = 0, wait: float = 2) -> dict[str, Any]:
    response = httpx.get(
        f"{bank.url}/v1/events",
        params={"after": after, "wait": wait},
        timeout=wait + 5,
        auth=bank.auth(),
    )
    response.raise_for_status()
    return dict(response.json())


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_idempotency_keys_replay_and_refuse_other_content(sandbox_bank: SandboxBank) -> None:
    first = submit(sandbox_bank, "key-1", body("pay_a"))
    assert first.status_code == 201
    replay = submit(sandbox_bank, "key-1", body("pay_a"))
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    other = submit(sandbox_bank, "key-1", body("pay_a", amount=2_000))
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    missing = httpx.post(
        f"{sandbox_bank.url}/v1/payments", json=body("pay_b"), timeout=10, auth=sandbox_bank.auth()
    )
    assert missing.status_code == 400
    found = httpx.get(
        f"{sandbox_bank.url}/v1/payments",
        params={"idempotency_key": "key-1"},
        timeout=10,
        auth=sandbox_bank.auth(),
    ).json()["payments"]
    assert [p["id"] for p in found] == [first.json()["id"]]
    counters = sandbox_bank.stats()["counters"]
    assert (counters["submissions_created"], counters["submissions_replayed"]) == (1, 1)


def test_malformed_submissions_are_refused(sandbox_bank: SandboxBank) -> None:
    bad = submit(sandbox_bank, "key-x", {"type": "cash", "amount": 1.5, "currency": "eur"})
    assert bad.status_code == 400
    assert "amount" in bad.json()["message"]
    assert sandbox_bank.payments() == []


def test_settlement_feed_statement_and_returns(sandbox_bank: SandboxBank) -> None:
    paid = submit(sandbox_bank, "k-pay", body("pay_out", 700)).json()
    collected = submit(sandbox_bank, "k-col", body("pay_in", 300, type="direct_debit")).json()
    closed = submit(sandbox_bank, "k-closed", body("pay_x", account="DE9902"))
    assert (closed.status_code, closed.json()["error"]) == (422, "account_closed")
    failing = submit(sandbox_bank, "k-fail", body("pay_f", account="DE9903")).json()
    seen: dict[str, list[str]] = {}
    after = 0
    while sum(len(v) for v in seen.values()) < 6:
        page = events(sandbox_bank, after)
        assert page["events"], "the feed stayed silent"
        for event in page["events"]:
            seen.setdefault(event["payment"]["reference"], []).append(event["status"])
        after = page["next_after"]
    assert seen == {
        "pay_out": ["pending", "settled"],
        "pay_in": ["pending", "settled"],
        "pay_f": ["pending", "failed"],
    }
    returned = sandbox_bank.return_payment(paid["id"])
    assert returned["status"] == "returned"
    assert [e["status"] for e in events(sandbox_bank, after)["events"]] == ["returned"]
    not_again = httpx.post(f"{sandbox_bank.url}/admin/payments/{failing['id']}/return")
    assert not_again.status_code == 409
    statement = httpx.get(
        f"{sandbox_bank.url}/v1/statements/{today()}", timeout=10, auth=sandbox_bank.auth()
    ).json()
    lines = [(x["reference"], x["kind"], x["direction"], x["amount"]) for x in statement["lines"]]
    assert sorted(lines) == sorted(
        [
            ("pay_out", "credit_transfer", "debit", 700),
            ("pay_in", "direct_debit", "credit", 300),
            ("pay_out", "return", "credit", 700),
        ]
    )
    assert collected["status"] == "pending"


def test_an_empty_feed_waits_then_answers(sandbox_bank: SandboxBank) -> None:
    page = events(sandbox_bank, 0, wait=0.3)
    assert page == {"events": [], "next_after": 0}


def test_books_survive_a_kill(sandbox_bank: SandboxBank) -> None:
    first = submit(sandbox_bank, "k-1", body("pay_1")).json()
    path = f"/v1/payments/{first['id']}"
    recorded = sign_request(BANK_KEY, "GET", path, b"")
    assert httpx.get(sandbox_bank.url + path, headers=recorded, timeout=10).status_code == 200
    sandbox_bank.kill()
    sandbox_bank.start()
    # The nonces seen are in the books too: a request recorded before the kill stays spent.
    replayed = httpx.get(sandbox_bank.url + path, headers=recorded, timeout=10)
    assert (replayed.status_code, replayed.json()["error"]) == (401, "signature_replayed")
    replay = submit(sandbox_bank, "k-1", body("pay_1"))
    assert replay.status_code == 200
    assert replay.json()["id"] == first["id"]
    assert [p["id"] for p in sandbox_bank.payments()] == [first["id"]]


def test_faults_are_configured_at_run_time(sandbox_bank: SandboxBank) -> None:
    sandbox_bank.set_faults(rate_limit_rate=1, retry_after_seconds=7)
    limited = submit(sandbox_bank, "k-1", body("pay_1"))
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    sandbox_bank.set_faults(rate_limit_rate=0, error_rate=1)
    failed = submit(sandbox_bank, "k-1", body("pay_1"))
    assert failed.status_code in (500, 502, 503)
    # Neither acted: the bank has no payment.
    assert sandbox_bank.payments() == []
    sandbox_bank.set_faults(error_rate=0, lost_response_rate=1, hang_seconds=3)
    try:
        submit_fast = httpx.post(
            f"{sandbox_bank.url}/v1/payments",
            json=body("pay_1"),
            headers={"Idempotency-Key": "k-1"},
            timeout=0.5,
            auth=sandbox_bank.auth(),
        )
        raise AssertionError(f"a lost response arrived: {submit_fast}")
    except httpx.ReadTimeout:
        pass
    # The reply was lost, but the bank acted.
    assert [p["reference"] for p in sandbox_bank.payments()] == ["pay_1"]
    refused = httpx.put(f"{sandbox_bank.url}/admin/faults", json={"volcano_rate": 1}, timeout=5)
    assert refused.status_code == 400
    out_of_range = httpx.put(f"{sandbox_bank.url}/admin/faults", json={"error_rate": 2}, timeout=5)
    assert out_of_range.status_code == 400
    injected = sandbox_bank.stats()["faults_injected"]
    assert injected == {"rate_limited": 1, "error": 1, "lost_response": 1}


def test_requests_payments_did_not_sign_are_refused_unread(sandbox_bank: SandboxBank) -> None:
    url = f"{sandbox_bank.url}/v1/payments"
    payload = body("pay_unsigned")
    content = httpx.Request("POST", url, json=payload).content
    key_header = {"Idempotency-Key": "k-unsigned", "Content-Type": "application/json"}

    def post(signature: dict[str, str]) -> httpx.Response:
        return httpx.post(url, content=content, headers={**key_header, **signature}, timeout=10)

    def sign(key: SigningKey = BANK_KEY, target: str = "/v1/payments", **kw: Any) -> dict[str, str]:
        return sign_request(key, "POST", target, content, headers=key_header, **kw)

    signed = sign()
    other_key = SigningKey(BANK_KEY.key_id, b"not-the-shared-key-0123456789abcdef")
    refused = [
        ("missing", post({})),
        ("bad_signature", post(sign(other_key))),
        ("stale", post(sign(now=1_000_000))),
        # Signed for another target: the query is part of what is signed.
        ("bad_signature", post(sign(target="/v1/payments?x=1"))),
        # Another idempotency key would let one payment be made twice.
        (
            "bad_signature",
            httpx.post(
                url,
                content=content,
                headers={**key_header, **sign(), "Idempotency-Key": "k-other"},
                timeout=10,
            ),
        ),
    ]
    for reason, response in refused:
        assert response.status_code == 401, (reason, response.text)
        assert response.json()["error"] == f"signature_{reason}"
    assert sandbox_bank.payments() == []
    accepted = post(signed)
    assert accepted.status_code == 201
    # The same signed request again (a recording replayed) is refused, not replayed.
    replayed = post(signed)
    assert (replayed.status_code, replayed.json()["error"]) == (401, "signature_replayed")
    assert [p["reference"] for p in sandbox_bank.payments()] == ["pay_unsigned"]
    stats = sandbox_bank.stats()
    assert stats["counters"]["submissions_created"] == 1
    assert "submissions_replayed" not in stats["counters"]
    assert stats["signatures_refused"] == {
        "missing": 1,
        "bad_signature": 3,
        "stale": 1,
        "replayed": 1,
    }
