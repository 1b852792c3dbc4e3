"""Benchmark only: ``astra-ledger`` with the journal switched off, to measure what it costs.

``bench.journal_cost`` starts this instead of ``astra-ledger serve`` for its "without"
figures. The switch is a class attribute set here, in this process, before the ledger
starts: no setting or environment variable reaches it, so a deployed ledger always
keeps its journal. Only one server process (``LEDGER_PROCESSES`` 1): a supervisor's
children would start without it.
"""

from __future__ import annotations

from ledger.adapters.repository import SqlLedgerRepository
from ledger.entrypoints.server import main

if __name__ == "__main__":
    SqlLedgerRepository.journal_enabled = False
    main()
