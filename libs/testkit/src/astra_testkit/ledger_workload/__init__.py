"""A bank workload against the ledger, and the invariants it must keep.

``chart``: the hot accounts (limited both ways, several currencies).
``model``: what each client sent and was answered, the only truth a client has.
``driver``: concurrent clients doing what banks do to a ledger (transfers, linked
batches, holds posted or voided the instant they exist, reversals of transfers
still committing, replays, tight deadlines, as-of reads), retrying what is
transient with the same id, while a chaos hook crashes the ledger.
``checks``: the invariants, read back through the API and from the tables, each
violation counted and shown by example.

The driver talks to any ledger endpoint and the checks to any ledger database,
so the same pieces serve the end-to-end test, a simulation or a benchmark.
"""
