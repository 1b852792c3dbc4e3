"""The ledger's own metric families (the gRPC ones come from the chassis).

- ``ledger_transfers_total{kind,status}``: transfers applied (replays not counted again);
- ``ledger_transfer_replays_total{outcome}``: idempotent replays answered from the record;
- ``ledger_transfer_rejections_total{reason}``: transfers refused, by stable reason.
"""

from __future__ import annotations

from collections import Counter
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
    # Tallied first: a batch of thousands costs one increment per distinct series.
    replays: Counter[str] = Counter()
    transfers: Counter[tuple[str, str]] = Counter()
    rejections: Counter[str] = Counter()
    for result in results:
        if result.replayed:
            replays["applied" if result.ok else "refused"] += 1
        elif result.ok:
            kind = result.kind.name if result.kind is not None else "UNKNOWN"
            status = result.status.name if result.status is not None else "UNKNOWN"
            transfers[(kind, status)] += 1
        else:
            rejections[result.reason or "UNKNOWN"] += 1
    for outcome, count in replays.items():
        REPLAYS.labels(outcome).inc(count)
    for (kind, status), count in transfers.items():
        TRANSFERS.labels(kind, status).inc(count)
    for reason, count in rejections.items():
        REJECTIONS.labels(reason).inc(count)
