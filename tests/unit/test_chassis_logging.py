"""Secrets never reach the log in clear."""

from __future__ import annotations

import json

import pytest
import structlog
from chassis.logging import REDACTED, configure_logging, redact_text


def test_secret_keys_and_token_shapes_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", "INFO")
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjbGllbnQifQ.c2lnbmF0dXJlLXZhbHVl"
    structlog.get_logger("t").info(
        "calling",
        client_secret="hunter2",
        headers={"authorization": f"Bearer {token}", "x-request-id": "r1"},
        note=f"got {token}",
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    text = json.dumps(line)
    assert "hunter2" not in text
    assert token not in text
    assert line["client_secret"] == REDACTED
    assert line["headers"]["authorization"] == REDACTED
    assert line["headers"]["x-request-id"] == "r1"
    assert line["service"] == "test"


def test_bearer_tokens_in_free_text() -> None:
    assert "abc.def" not in redact_text("Authorization: Bearer abc.def")
