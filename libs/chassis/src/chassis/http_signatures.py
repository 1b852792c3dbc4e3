"""Signed HTTP requests and responses between two parties sharing a key (HMAC-SHA256).

Shaped after HTTP Message Signatures (RFC 9421) with a fixed list of covered
components, so a signer cannot choose to leave anything out:

- a request signs its method, its target (path and query, as sent), the digest
  of its body (``Content-Digest``), its ``Content-Type`` and ``Idempotency-Key``
  headers (empty when absent: a key changed on the way would let one payment be
  made twice), a creation time, a nonce and the key id;
- a response signs its status and body digest, its own time, nonce and key id,
  and the method, target and nonce of the request it answers, so a recorded
  response cannot be passed off as the answer to another (or a later) request.

The receiver refuses a message whose signature is missing or wrong, whose key
id it does not hold, whose time is more than ``max_skew`` from its own clock,
or (requests) whose nonce it has seen before: a recorded request cannot be
replayed, neither inside the skew window (the nonce) nor after it (the time).

Headers: ``Content-Digest: sha-256=:<base64>:``,
``Signature-Input: astra=(<components>);created=<epoch>;nonce="<n>";keyid="<k>";alg="hmac-sha256"``
and ``Signature: astra=:<base64 HMAC>:``.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import re
import secrets
import threading
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

ALGORITHM = "hmac-sha256"
LABEL = "astra"
DEFAULT_MAX_SKEW = 300.0  # seconds: five minutes either way
MIN_KEY_BYTES = 32

REQUEST_COMPONENTS = '"@method" "@target" "content-digest" "content-type" "idempotency-key"'
RESPONSE_COMPONENTS = '"@status" "content-digest" "@method";req "@target";req "nonce";req'

_INPUT = re.compile(
    rf"^{LABEL}=\((?P<components>[^)]*)\);created=(?P<created>\d{{1,12}});"
    r'nonce="(?P<nonce>[A-Za-z0-9_-]{16,128})";keyid="(?P<keyid>[A-Za-z0-9._-]{1,64})";'
    rf'alg="{ALGORITHM}"$'
)
_SIGNATURE = re.compile(rf"^{LABEL}=:(?P<value>[A-Za-z0-9+/=]{{1,200}}):$")


class SignatureError(Exception):
    """A message that must not be believed; ``reason`` says why, in one word."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    secret: bytes

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", self.key_id):
            raise ValueError("a key id is 1 to 64 letters, digits, '.', '_' or '-'")
        if len(self.secret) < MIN_KEY_BYTES:
            raise ValueError(f"a signing key has at least {MIN_KEY_BYTES} bytes")

    def __repr__(self) -> str:  # never the secret in a log or a traceback
        return f"SigningKey(key_id={self.key_id!r})"


@dataclass(frozen=True, slots=True)
class Verified:
    """What a verified message told: who signed it, when, and its nonce."""

    key_id: str
    created: int
    nonce: str


def content_digest(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


class NonceStore(Protocol):
    def first_use(self, key_id: str, nonce: str, created: int, now: float) -> bool:
        """Remember the nonce until ``created`` plus the skew; False when it was seen before."""
        ...


class NonceCache:
    """Nonces seen while their message could still be accepted (its time plus the skew),
    in memory: a receiver that restarts within the skew should keep them elsewhere."""

    def __init__(self, max_skew: float = DEFAULT_MAX_SKEW) -> None:
        self._max_skew = max_skew
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[float, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def first_use(self, key_id: str, nonce: str, created: int, now: float) -> bool:
        """Remember the nonce; False when it was seen before."""
        entry = (key_id, nonce)
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                self._seen.discard(heapq.heappop(self._expiry)[1])
            if entry in self._seen:
                return False
            self._seen.add(entry)
            heapq.heappush(self._expiry, (created + self._max_skew, entry))
            return True

    def __len__(self) -> int:
        return len(self._seen)


def _params(components: str, created: int, nonce: str, key_id: str) -> str:
    return f'({components});created={created};nonce="{nonce}";keyid="{key_id}";alg="{ALGORITHM}"'


def _mac(secret: bytes, lines: list[str]) -> str:
    base = "\n".join(lines).encode()
    return base64.b64encode(hmac.new(secret, base, hashlib.sha256).digest()).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header's value whatever the mapping's case rules ("" when absent)."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), "")
    return value.strip()


def _request_lines(
    method: str, target: str, digest: str, headers: Mapping[str, str], params: str
) -> list[str]:
    return [
        f'"@method": {method.upper()}',
        f'"@target": {target}',
        f'"content-digest": {digest}',
        f'"content-type": {_header(headers, "content-type")}',
        f'"idempotency-key": {_header(headers, "idempotency-key")}',
        f'"@signature-params": {params}',
    ]


def _response_lines(
    status: int, digest: str, method: str, target: str, request_nonce: str, params: str
) -> list[str]:
    return [
        f'"@status": {status}',
        f'"content-digest": {digest}',
        f'"@method";req: {method.upper()}',
        f'"@target";req: {target}',
        f'"nonce";req: {request_nonce}',
        f'"@signature-params": {params}',
    ]


def _headers(key: SigningKey, digest: str, params: str, mac: str) -> dict[str, str]:
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{mac}:",
    }


def sign_request(
    key: SigningKey,
    method: str,
    target: str,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that sign a request for ``target`` (its path and query as sent) with
    ``headers`` (those it is sent with: the covered ones are read from them)."""
    digest = content_digest(body)
    created = int(time.time() if now is None else now)
    params = _params(REQUEST_COMPONENTS, created, nonce or new_nonce(), key.key_id)
    lines = _request_lines(method, target, digest, headers or {}, params)
    return _headers(key, digest, params, _mac(key.secret, lines))


def sign_response(
    key: SigningKey,
    status: int,
    body: bytes,
    *,
    request_method: str,
    request_target: str,
    request_nonce: str,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that sign a response to the request (method, target, nonce) it answers."""
    digest = content_digest(body)
    created = int(time.time() if now is None else now)
    params = _params(RESPONSE_COMPONENTS, created, nonce or new_nonce(), key.key_id)
    lines = _response_lines(status, digest, request_method, request_target, request_nonce, params)
    return _headers(key, digest, params, _mac(key.secret, lines))


def _parse(
    headers: Mapping[str, str], components: str, keys: Mapping[str, bytes], body: bytes
) -> tuple[Verified, str, bytes, str, str]:
    """(what it claims, its params, the key, the body's digest, the signature sent)."""
    signature_input = headers.get("signature-input")
    signature = headers.get("signature")
    if not signature_input or not signature:
        raise SignatureError("missing", "Signature and Signature-Input are required")
    parsed = _INPUT.match(signature_input.strip())
    sent = _SIGNATURE.match(signature.strip())
    if parsed is None or sent is None:
        raise SignatureError("malformed", "Signature or Signature-Input is not understood")
    if parsed["components"] != components:
        raise SignatureError("malformed", "the signature does not cover what it must")
    secret = keys.get(parsed["keyid"])
    if secret is None:
        raise SignatureError("unknown_key", f"key id {parsed['keyid']!r} is not known")
    digest = content_digest(body)
    if headers.get("content-digest", "").strip() != digest:
        raise SignatureError("digest_mismatch", "Content-Digest is not the body's")
    claimed = Verified(parsed["keyid"], int(parsed["created"]), parsed["nonce"])
    params = signature_input.strip().removeprefix(f"{LABEL}=")
    return claimed, params, secret, digest, sent["value"]


def _check(claimed: Verified, expected: str, sent: str, now: float, max_skew: float) -> None:
    # The signature before the clock: a forger learns nothing from which check failed.
    if not hmac.compare_digest(expected.encode(), sent.encode()):
        raise SignatureError("bad_signature", "the signature does not match")
    if abs(now - claimed.created) > max_skew:
        raise SignatureError("stale", f"created {claimed.created} is over {max_skew:.0f} s away")


def verify_request(
    keys: Mapping[str, bytes],
    method: str,
    target: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    nonces: NonceStore,
    now: float | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
) -> Verified:
    """Check a signed request; raises ``SignatureError``. ``headers`` lookups are lower-case."""
    at = time.time() if now is None else now
    claimed, params, secret, digest, sent = _parse(headers, REQUEST_COMPONENTS, keys, body)
    expected = _mac(secret, _request_lines(method, target, digest, headers, params))
    _check(claimed, expected, sent, at, max_skew)
    if not nonces.first_use(claimed.key_id, claimed.nonce, claimed.created, at):
        raise SignatureError("replayed", "this nonce was used before")
    return claimed


def verify_response(
    keys: Mapping[str, bytes],
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    request_method: str,
    request_target: str,
    request_nonce: str,
    now: float | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
) -> Verified:
    """Check a signed response to the request (method, target, nonce) it claims to answer.

    No nonce cache is needed: the request's nonce is new for every request, so a
    replayed response answers a request that is not the one in flight."""
    at = time.time() if now is None else now
    claimed, params, secret, digest, sent = _parse(headers, RESPONSE_COMPONENTS, keys, body)
    lines = _response_lines(status, digest, request_method, request_target, request_nonce, params)
    _check(claimed, _mac(secret, lines), sent, at, max_skew)
    return claimed


def request_nonce(headers: Mapping[str, str]) -> str:
    """The nonce a signed request carries (empty when it has none that parses)."""
    parsed = _INPUT.match(headers.get("signature-input", "").strip())
    return parsed["nonce"] if parsed else ""


class SigningAuth(httpx.Auth):
    """httpx client side: sign every request; verify every response, raising ``SignatureError``.

    ``keys`` are the verifying keys of the other side by key id (the shared key, and
    the next one while a key is rotated)."""

    requires_request_body = True
    requires_response_body = True

    def __init__(
        self, key: SigningKey, keys: Mapping[str, bytes], max_skew: float = DEFAULT_MAX_SKEW
    ) -> None:
        self._key = key
        self._keys = dict(keys)
        self._max_skew = max_skew

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        target = request.url.raw_path.decode("ascii")
        nonce = new_nonce()
        signed = sign_request(
            self._key, request.method, target, request.content, headers=request.headers, nonce=nonce
        )
        request.headers.update(signed)
        response = yield request
        verify_response(
            self._keys,
            response.status_code,
            response.content,
            response.headers,
            request_method=request.method,
            request_target=target,
            request_nonce=nonce,
            max_skew=self._max_skew,
        )


def load_key(key_id: str, value: str, file: str, *, setting: str) -> SigningKey:
    """The shared key from its value or from a file holding it (surrounding blanks stripped).

    ``setting`` names the variables in the error (e.g. ``PAYMENTS_BANK_SIGNING_KEY``)."""
    if value and file:
        raise ValueError(f"set {setting} or {setting}_FILE, not both")
    if file:
        try:
            with open(file, encoding="utf-8") as source:
                value = source.read().strip()
        except OSError as error:
            raise ValueError(f"{setting}_FILE: cannot read {file!r}: {error}") from error
    if not value:
        raise ValueError(f"{setting} or {setting}_FILE is required: requests are signed")
    try:
        return SigningKey(key_id, value.encode())
    except ValueError as error:
        raise ValueError(f"{setting}: {error}") from error
