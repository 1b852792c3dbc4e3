"""The ledger's own metric families (the gRPC ones come from the chassis).

- ``ledger_transfers_total{kind,status}``: transfers applied (replays not counted again);
- ``ledger_transfer_replays_total{outcome}``: idempotent replays answered from the record;
- ``ledger_transfer_rejections_total{reason}``: transfers refused, by stable reason.
"""

from __future__ import annotations

from collections.abc import Iterable

from chassis.metrics import counter

from ledger.domain.model import ItemResult

TRANSFERS = counter("ledger_transfers_total", "Transfers applied", ("kind", "status"))
REPLAYS = counter(
    "ledger_transfer_replays_total",
    "Transfer requests answered from the record of an earlier identical request",
    ("outcome",),
)
REJECTIONS = counter(
    "ledger_transfer_rejections_total", "Transfers refused, by reason", ("reason",)
)


def record_results(results: Iterable[ItemResult]) -> None:
    for result in results:
        if result.replayed:
            REPLAYS.labels("applied" if result.ok else "refused").inc()
        elif result.ok:
            kind = result.kind.name if result.kind is not None else "UNKNOWN"
            status = result.status.name if result.status is not None else "UNKNOWN"
            TRANSFERS.labels(kind, status).inc()
        else:
            REJECTIONS.labels(result.reason or "UNKNOWN").inc()
