"""Process-level tuning every service applies once it has started up."""

from __future__ import annotations

import gc


def tune_gc(threshold: int = 50_000) -> None:
    """Fewer, cheaper garbage collections for a request-serving process.

    A batch allocates tens of thousands of short-lived objects; with the default
    threshold (700) the cyclic collector runs dozens of times per batch and
    walks the long-lived heap each time it promotes. Freezing what start-up
    built moves it out of the collector's sight; a higher first threshold
    keeps collections rare. Measured on the ledger's 1,000-transfer batch:
    about a quarter less CPU per batch.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 20, 100)
