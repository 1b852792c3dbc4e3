"""The ledger's transfer counters, from item results (no I/O)."""

from __future__ import annotations

from ledger.adapters.metrics import record_results
from ledger.domain.model import ItemResult, TransferKind, TransferStatus
from prometheus_client import REGISTRY


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_applied_refused_and_replayed_transfers_are_counted_apart() -> None:
    before = {
        "posted": _value("ledger_transfers_total", kind="MOVEMENT", status="POSTED"),
        "pending": _value("ledger_transfers_total", kind="PENDING", status="PENDING"),
        "funds": _value("ledger_transfer_rejections_total", reason="INSUFFICIENT_FUNDS"),
        "replayed": _value("ledger_transfer_replays_total", outcome="applied"),
        "replayed_refusal": _value("ledger_transfer_replays_total", outcome="refused"),
    }
    record_results(
        [
            ItemResult("tr_1", True, kind=TransferKind.MOVEMENT, status=TransferStatus.POSTED),
            ItemResult("tr_2", True, kind=TransferKind.MOVEMENT, status=TransferStatus.POSTED),
            ItemResult("tr_3", True, kind=TransferKind.PENDING, status=TransferStatus.PENDING),
            ItemResult("tr_4", False, reason="INSUFFICIENT_FUNDS"),
            ItemResult("tr_1", True, replayed=True, kind=TransferKind.MOVEMENT),
            ItemResult("tr_4", False, reason="INSUFFICIENT_FUNDS", replayed=True),
        ]
    )
    assert (
        _value("ledger_transfers_total", kind="MOVEMENT", status="POSTED") - before["posted"] == 2
    )
    assert (
        _value("ledger_transfers_total", kind="PENDING", status="PENDING") - before["pending"] == 1
    )
    assert (
        _value("ledger_transfer_rejections_total", reason="INSUFFICIENT_FUNDS") - before["funds"]
        == 1
    )
    assert _value("ledger_transfer_replays_total", outcome="applied") - before["replayed"] == 1
    assert (
        _value("ledger_transfer_replays_total", outcome="refused") - before["replayed_refusal"] == 1
    )
