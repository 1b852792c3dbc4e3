"""Signed requests and responses (chassis.http_signatures): anything changed is refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from chassis.http_signatures import (
    NonceCache,
    SignatureError,
    SigningAuth,
    SigningKey,
    load_key,
    sign_request,
    sign_response,
    verify_request,
    verify_response,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KEY = SigningKey("payments", b"k" * 32)
KEYS = {KEY.key_id: KEY.secret}
NOW = 1_800_000_000.0
paths = st.from_regex(r"/v1/[a-z0-9/_-]{0,30}(\?[a-z_]{1,8}=[a-z0-9]{0,8})?", fullmatch=True)
bodies = st.binary(max_size=256)


def headers_of(signed: dict[str, str]) -> httpx.Headers:
    return httpx.Headers(signed)  # case-insensitive, as the receivers see them


def check_request(
    method: str, target: str, body: bytes, headers: dict[str, str], nonces: NonceCache
) -> None:
    verify_request(KEYS, method, target, body, headers_of(headers), nonces=nonces, now=NOW)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST"]),
    path=paths,
    body=bodies,
    other_path=paths,
    other_body=bodies,
)
def test_a_request_is_accepted_once_as_signed_and_never_changed(
    method: str, path: str, body: bytes, other_path: str, other_body: bytes
) -> None:
    headers = sign_request(KEY, method, path, body, now=NOW)
    if (other_path, other_body) != (path, body):
        with pytest.raises(SignatureError) as tampered:
            check_request(method, other_path, other_body, headers, NonceCache())
        assert tampered.value.reason in ("bad_signature", "digest_mismatch")
    other_method = "POST" if method == "GET" else "GET"
    with pytest.raises(SignatureError, match="bad_signature"):
        check_request(other_method, path, body, headers, NonceCache())
    nonces = NonceCache()
    check_request(method, path, body, headers, nonces)
    with pytest.raises(SignatureError, match="replayed"):
        check_request(method, path, body, headers, nonces)


@settings(max_examples=40)
@given(skew=st.integers(min_value=301, max_value=10**7), sign=st.sampled_from([-1, 1]))
def test_a_request_from_too_far_in_the_past_or_future_is_stale(skew: int, sign: int) -> None:
    headers = sign_request(KEY, "GET", "/v1/events", b"", now=NOW + sign * skew)
    with pytest.raises(SignatureError, match="stale"):
        check_request("GET", "/v1/events", b"", headers, NonceCache())


@settings(max_examples=40)
@given(
    key=st.text(alphabet="abcdefghijklmnop_0123456789", max_size=20),
    other=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
def test_the_idempotency_key_and_content_type_are_signed(key: str, other: str) -> None:
    sent = {"Idempotency-Key": key, "Content-Type": "application/json"}
    headers = sign_request(KEY, "POST", "/v1/payments", b"{}", headers=sent, now=NOW)
    check_request("POST", "/v1/payments", b"{}", {**headers, **sent}, NonceCache())
    for changed in (
        {**sent, "Idempotency-Key": other},
        {**sent, "Content-Type": "text/plain"},
        {"Content-Type": "application/json"},
    ):
        if (
            changed["Content-Type"] == sent["Content-Type"]
            and changed.get("Idempotency-Key", "").strip() == key.strip()
        ):
            continue  # the same values: nothing was changed
        with pytest.raises(SignatureError, match="bad_signature"):
            check_request("POST", "/v1/payments", b"{}", {**headers, **changed}, NonceCache())


def test_within_the_skew_a_request_passes() -> None:
    for offset in (-299.0, 0.0, 299.0):
        headers = sign_request(KEY, "GET", "/v1/events", b"", now=NOW + offset)
        check_request("GET", "/v1/events", b"", headers, NonceCache())


def test_missing_unknown_or_forged_signatures_are_refused() -> None:
    headers = sign_request(KEY, "POST", "/v1/payments", b"{}", now=NOW)
    cases = {
        "missing": {k: v for k, v in headers.items() if k != "Signature"},
        "unknown_key": sign_request(
            SigningKey("someone", b"k" * 32), "POST", "/v1/payments", b"{}", now=NOW
        ),
        "bad_signature": sign_request(
            SigningKey("payments", b"x" * 32), "POST", "/v1/payments", b"{}", now=NOW
        ),
        # A signer may not leave the body out of what it signs.
        "malformed": {
            **headers,
            "Signature-Input": headers["Signature-Input"].replace(' "content-digest"', ""),
        },
    }
    for reason, sent in cases.items():
        with pytest.raises(SignatureError) as refused:
            check_request("POST", "/v1/payments", b"{}", sent, NonceCache())
        assert refused.value.reason == reason


def test_a_forged_timestamp_breaks_the_signature() -> None:
    headers = sign_request(KEY, "GET", "/v1/events", b"", now=NOW - 3600)
    created = str(int(NOW - 3600))
    moved = {
        **headers,
        "Signature-Input": headers["Signature-Input"].replace(created, str(int(NOW))),
    }
    with pytest.raises(SignatureError, match="bad_signature"):
        check_request("GET", "/v1/events", b"", moved, NonceCache())


TARGET = "/v1/events?after=3"


def check_response(
    status: int, body: bytes, headers: httpx.Headers, nonce: str = "n" * 32, now: float = NOW
) -> str:
    verified = verify_response(
        KEYS,
        status,
        body,
        headers,
        request_method="GET",
        request_target=TARGET,
        request_nonce=nonce,
        now=now,
    )
    return verified.key_id


@settings(max_examples=60)
@given(status=st.sampled_from([200, 201, 404, 422, 429, 503]), body=bodies, other=bodies)
def test_a_response_answers_only_its_request_and_only_as_signed(
    status: int, body: bytes, other: bytes
) -> None:
    signed = sign_response(
        KEY,
        status,
        body,
        request_method="GET",
        request_target=TARGET,
        request_nonce="n" * 32,
        now=NOW,
    )
    headers = headers_of(signed)
    assert check_response(status, body, headers) == "payments"
    if other != body:
        with pytest.raises(SignatureError):
            check_response(status, other, headers)
    with pytest.raises(SignatureError, match="bad_signature"):
        check_response(200 if status != 200 else 201, body, headers)
    # A recorded answer replayed to a later request (another nonce) is not its answer.
    with pytest.raises(SignatureError, match="bad_signature"):
        check_response(status, body, headers, nonce="m" * 32)
    with pytest.raises(SignatureError, match="stale"):
        check_response(status, body, headers, now=NOW + 301)


def test_the_nonce_cache_forgets_a_nonce_once_its_message_is_stale_anyway() -> None:
    nonces = NonceCache(max_skew=300)
    assert nonces.first_use("payments", "a" * 16, int(NOW), NOW)
    assert not nonces.first_use("payments", "a" * 16, int(NOW), NOW + 10)
    assert nonces.first_use("other", "a" * 16, int(NOW), NOW)  # nonces are per key
    assert nonces.first_use("payments", "b" * 16, int(NOW + 400), NOW + 400)
    assert len(nonces) == 1  # the first two expired at NOW + 300


def test_the_client_side_signs_requests_and_refuses_unsigned_or_forged_answers() -> None:
    seen: list[httpx.Request] = []

    def bank(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        target = request.url.raw_path.decode()
        nonces = NonceCache()
        verified = verify_request(
            KEYS, request.method, target, request.content, request.headers, nonces=nonces
        )
        body = b'{"ok": true}'
        signed = sign_response(
            KEY,
            200,
            body,
            request_method=request.method,
            request_target=target,
            request_nonce=verified.nonce,
        )
        forged = request.url.params.get("forge") == "1"
        return httpx.Response(200, content=b'{"ok": false}' if forged else body, headers=signed)

    auth = SigningAuth(KEY, KEYS)
    with httpx.Client(transport=httpx.MockTransport(bank), auth=auth) as client:
        assert client.get("https://bank.test/v1/payments?idempotency_key=k").json() == {"ok": True}
        with pytest.raises(SignatureError, match="digest_mismatch"):
            client.get("https://bank.test/v1/payments?forge=1")
    unsigned = httpx.MockTransport(lambda _request: httpx.Response(200, json={"ok": True}))
    with httpx.Client(transport=unsigned, auth=auth) as client, pytest.raises(SignatureError):
        client.get("https://bank.test/v1/events")
    assert len(seen) == 2


def test_the_key_comes_from_its_value_or_its_file(tmp_path: Path) -> None:
    file = tmp_path / "key"
    file.write_text("f" * 40 + "\n")
    assert load_key("p", "", str(file), setting="X").secret == b"f" * 40
    assert load_key("p", "v" * 32, "", setting="X").secret == b"v" * 32
    for value, path, message in [
        ("", "", "X or X_FILE is required"),
        ("v" * 32, str(file), "not both"),
        ("short", "", "at least 32 bytes"),
        ("", str(tmp_path / "absent"), "cannot read"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_key("p", value, path, setting="X")
    assert "f" * 40 not in repr(load_key("p", "", str(file), setting="X"))
