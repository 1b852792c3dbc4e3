"""Trace context in Pub/Sub attributes and in log lines; account numbers masked in logs."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from chassis import tracing
from chassis.events.writer import OutboxMessage, with_trace_context
from chassis.logging import mask_account_number, redact_text
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.observability_fixtures import spans_named


def test_outside_any_trace_there_is_nothing_to_inject(
    collected_spans: InMemorySpanExporter,
) -> None:
    assert tracing.inject_trace_context() == {}
    assert tracing.current_trace_id() is None


def test_a_message_carries_its_trace_to_the_subscriber(
    collected_spans: InMemorySpanExporter,
) -> None:
    with tracing.tracer().start_as_current_span("record event") as recording:
        attributes = tracing.inject_trace_context()
    recorded = recording.get_span_context()
    assert set(attributes) == {"ce-traceparent"}
    assert format(recorded.trace_id, "032x") in attributes["ce-traceparent"]

    message = {**attributes, "ce-id": "evt-1", "ce-type": "astra.test.v1.Happened"}
    with tracing.consumer_span("payments-ledger-events", message) as consuming:
        assert tracing.current_trace_id() == format(recorded.trace_id, "032x")
    assert consuming.get_span_context().trace_id == recorded.trace_id

    (span,) = spans_named(collected_spans, "payments-ledger-events process")
    assert span.kind is trace.SpanKind.CONSUMER
    assert span.parent is not None
    assert span.parent.span_id == recorded.span_id
    assert span.attributes is not None
    assert span.attributes["messaging.message.id"] == "evt-1"
    assert span.attributes["cloudevents.event_type"] == "astra.test.v1.Happened"


def test_a_message_without_trace_context_starts_a_new_trace(
    collected_spans: InMemorySpanExporter,
) -> None:
    with tracing.consumer_span("sub", {"ce-id": "evt-2"}) as span:
        pass
    assert span.get_span_context().is_valid
    (finished,) = spans_named(collected_spans, "sub process")
    assert finished.parent is None


def test_unrelated_attributes_are_not_taken_for_trace_context() -> None:
    context = tracing.extract_trace_context({"ce-source": "x", "traceparent": "garbage"})
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_log_lines_carry_the_trace_and_span_ids(
    collected_spans: InMemorySpanExporter, json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    with tracing.tracer().start_as_current_span("work") as span:
        structlog.get_logger("t").info("inside")
    structlog.get_logger("t").info("outside")
    inside, outside = json_logs()[-2:]
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert inside["service"] == "tests"
    assert "trace_id" not in outside


def test_account_numbers_are_masked_by_key_and_in_free_text(
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    iban = "DE89370400440532013000"
    structlog.get_logger("t").info(
        "payout",
        account_number="12345678901",
        beneficiary={"iban": iban, "name_ref": "cus_01"},
        note=f"sending to {iban} now",
        span="not an account",
    )
    line = json_logs()[-1]
    text = json.dumps(line)
    assert iban not in text
    assert "12345678901" not in text
    assert line["account_number"] == "*******8901"
    assert line["beneficiary"]["iban"].endswith("3000")
    assert line["beneficiary"]["name_ref"] == "cus_01"
    assert line["note"] == f"sending to {'*' * 18}3000 now"
    assert line["span"] == "not an account"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("request 4f1c2a9be0d94d51a1f3c2b7d8e9f0a1 done", True),
        ("account acct_01JD3Q8Z4X5Y6W7V8T9S0R1P2N opened", True),
        ("listening on 127.0.0.1:50052", True),
        ("at 2026-11-23T13:36:12Z", True),
    ],
)
def test_ids_addresses_and_times_are_not_mistaken_for_account_numbers(
    text: str, kept: bool
) -> None:
    assert (redact_text(text) == text) is kept


def test_short_values_are_masked_whole() -> None:
    assert mask_account_number("1234") == "****"
    assert mask_account_number(123456789) == "*****6789"


def test_an_unknown_exporter_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracing.EXPORTER_ENV, "zipkin")
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        tracing._processor(None)
    monkeypatch.setenv(tracing.EXPORTER_ENV, "none")
    assert tracing._processor(None) is None


def _message(headers: dict[str, str] | None = None) -> OutboxMessage:
    return OutboxMessage("astra.test.v1.Happened", "agg-1", b"x", datetime.now(UTC), "evt", headers)


def test_events_written_inside_a_recorded_trace_carry_it_to_the_outbox(
    collected_spans: InMemorySpanExporter,
) -> None:
    assert with_trace_context([_message()])[0].headers is None  # no trace, no bytes
    with tracing.tracer().start_as_current_span("create payout") as span:
        plain, own = with_trace_context([_message(), _message({"x-own": "1"})])
    assert plain.headers is not None
    assert format(span.get_span_context().trace_id, "032x") in plain.headers["ce-traceparent"]
    assert own.headers == {"x-own": "1"}  # what the mapper set is left alone


def test_work_resumed_later_joins_the_trace_it_stored(
    collected_spans: InMemorySpanExporter,
) -> None:
    with tracing.tracer().start_as_current_span("accept payout") as accepted:
        stored = tracing.current_traceparent()
    assert tracing.current_traceparent() == ""
    with tracing.resumed_span(stored, "submit to bank", payment_id="pay_1") as resumed:
        pass
    assert resumed.get_span_context().trace_id == accepted.get_span_context().trace_id
    with tracing.resumed_span("", "fresh") as fresh:
        pass
    assert fresh.get_span_context().trace_id != accepted.get_span_context().trace_id
