"""The journal's verification, checkpoints, export and import, through ``astra-ledger``'s
commands run in-process.

Tamper tests on PostgreSQL (the journal's trigger switched off by the superuser,
as an intruder with database access would): verification names the exact first
record that does not verify; a history re-hashed from a record on is a valid
chain, and the checkpoint (stored, and published as ``JournalCheckpointed``)
exposes it. Export -> import into an empty database gives the same balances,
entries, history and head, on PostgreSQL and on the SQLite default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from astra.ledger.v1 import events_pb2 as ev
from astra_testkit.postgres import PostgresServer
from chassis.kernel.audit import Requester
from ledger.adapters.journal import SqlJournal
from ledger.bootstrap import Ledger, bootstrap, migrate
from ledger.domain.checkpoint import Checkpoint
from ledger.domain.journal import GENESIS, chain
from ledger.domain.model import AccountSpec, NormalSide
from ledger.domain.replay import AccountOpenedChange, read_body
from ledger.entrypoints.workers import JournalCheckpoints
from ledger.service_layer import journal, use_cases
from sqlalchemy import Engine, create_engine, text

from tests.ledger_builders import credit, debit, hold, move, post, reverse
from tests.ledger_fixtures import MovableClock, ledger_settings
from tests.ledger_fixtures import ledger_cli as cli

CHECKPOINTED = ev.JournalCheckpointed.DESCRIPTOR.full_name
WHO = Requester("svc_payments", "cus_7", "req-1")


def use_the_ledger(ledger: Ledger, clock: MovableClock) -> None:
    """Every kind of change: accounts opened, applied and refused transfers, holds posted,
    expired and left open, a reversal."""
    specs = [
        AccountSpec("acct_bank", "EUR", NormalSide.DEBIT),
        AccountSpec(
            "acct_alice",
            "EUR",
            NormalSide.CREDIT,
            debits_must_not_exceed_credits=True,
            metadata=(("tier", "gold"),),
            external_reference="ext-1",
            customer_id="cus_7",
        ),
        AccountSpec("acct_bob", "EUR", NormalSide.CREDIT),
    ]
    for spec in specs:
        use_cases.open_account(ledger.uow, clock, spec, WHO)
    clock.advance(timedelta(seconds=1))
    use_cases.create_transfers(
        ledger.uow,
        clock,
        [
            move("tr_fund", debit("acct_bank", 1000), credit("acct_alice", 1000)),
            move("tr_big", debit("acct_alice", 5000), credit("acct_bob", 5000)),  # refused
            hold("tr_hold", debit("acct_alice", 300), credit("acct_bob", 300)),
            hold(
                "tr_short",
                debit("acct_alice", 100),
                credit("acct_bob", 100),
                timeout=timedelta(seconds=5),
            ),
            hold("tr_open", debit("acct_alice", 50), credit("acct_bob", 50)),
        ],
        WHO,
    )
    clock.advance(timedelta(minutes=1))
    use_cases.create_transfers(ledger.uow, clock, [post("tr_post", "tr_hold")])
    assert use_cases.expire_due_holds(ledger.uow, clock) == 1
    clock.advance(timedelta(seconds=1))
    use_cases.create_transfers(
        ledger.uow, clock, [move("tr_gift", debit("acct_bank", 70), credit("acct_bob", 70))]
    )
    clock.advance(timedelta(seconds=1))
    use_cases.create_transfers(ledger.uow, clock, [reverse("tr_back", "tr_gift")])


@pytest.fixture
def journaled(ledger: Ledger, clock: MovableClock) -> Ledger:
    use_the_ledger(ledger, clock)
    return ledger


def url_of(ledger: Ledger) -> str:
    return ledger.settings.database_url


def sequence_of(engine: Engine, record_id: str) -> int:
    with engine.connect() as c:
        for sequence, body in c.execute(text("SELECT sequence, body FROM journal")):
            change = read_body(bytes(body))
            named = (
                change.account.id if isinstance(change, AccountOpenedChange) else change.record.id
            )
            if named == record_id:
                return int(sequence)
    raise AssertionError(f"{record_id} is not journaled")


def tampered(engine: Engine, *statements: tuple[str, dict[str, object]]) -> None:
    """Run ``statements`` as a superuser past the journal's immutability trigger."""
    with engine.begin() as c:
        c.execute(text("SET LOCAL session_replication_role = replica"))
        for sql, params in statements:
            c.execute(text(sql), params)


def body_at(engine: Engine, sequence: int) -> bytes:
    with engine.connect() as c:
        return bytes(
            c.execute(text("SELECT body FROM journal WHERE sequence = :s"), {"s": sequence}).one()[
                0
            ]
        )


def with_amount(body: bytes, amount: int, instead: int) -> bytes:
    """``body`` with its first debit of ``amount`` (a leg's or an entry's) made ``instead``.

    A transfer body is positional (JOURNAL.md): a direction is followed by its amount.
    """
    was, becomes = f'"DEBIT",{amount},'.encode(), f'"DEBIT",{instead},'.encode()
    assert was in body, f"no debit of {amount} in {body!r}"
    return body.replace(was, becomes, 1)


def head_of(engine: Engine) -> tuple[int, bytes]:
    with engine.connect() as c:
        row = c.execute(text("SELECT sequence, hash FROM journal_head")).one()
    return int(row[0]), bytes(row[1])


# --- verification ---------------------------------------------------------------------


def test_an_intact_journal_verifies_and_the_head_is_printed(
    journaled: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sequence, digest = head_of(journaled.engine)
    assert sequence == 12  # 3 accounts, 9 transfer rows (a refusal and an expiry among them)
    code, out = cli(monkeypatch, capsys, url_of(journaled), "verify-journal")
    assert (code, out.strip()) == (
        0,
        f"journal verified: head sequence 12 hash {digest.hex()}",
    )


def test_a_changed_amount_is_named(
    journaled: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = journaled.engine
    at = sequence_of(engine, "tr_fund")
    body = body_at(engine, at)
    changed = with_amount(body, 1000, 9000)
    tampered(engine, ("UPDATE journal SET body = :b WHERE sequence = :s", {"b": changed, "s": at}))
    code, out = cli(monkeypatch, capsys, url_of(journaled), "verify-journal")
    assert code == 1
    assert out.strip() == (
        f"journal broken at sequence {at}: its hash is not the hash of its content"
    )


def test_a_deleted_record_is_named(
    journaled: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = journaled.engine
    at = sequence_of(engine, "tr_post")
    tampered(engine, ("DELETE FROM journal WHERE sequence = :s", {"s": at}))
    code, out = cli(monkeypatch, capsys, url_of(journaled), "verify-journal")
    assert (code, out.strip()) == (
        1,
        f"journal broken at sequence {at}: found sequence {at + 1} in its place",
    )


def test_the_deleted_last_record_is_named_against_the_head(
    journaled: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = journaled.engine
    tampered(engine, ("DELETE FROM journal WHERE sequence = 12", {}))
    code, out = cli(monkeypatch, capsys, url_of(journaled), "verify-journal")
    assert (code, out.strip()) == (
        1,
        "journal broken at sequence 12: it is missing: the head is at sequence 12",
    )


def test_two_swapped_records_are_named(
    journaled: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = journaled.engine
    at = sequence_of(engine, "tr_big")
    move_row = "UPDATE journal SET sequence = :to WHERE sequence = :s"
    tampered(
        engine,
        (move_row, {"s": at, "to": -1}),
        (move_row, {"s": at + 1, "to": at}),
        (move_row, {"s": -1, "to": at + 1}),
    )
    code, out = cli(monkeypatch, capsys, url_of(journaled), "verify-journal")
    assert (code, out.strip()) == (
        1,
        f"journal broken at sequence {at}: its previous hash is not the hash of the record before",
    )


def test_a_suffix_re_hashed_after_a_checkpoint_is_exposed_by_it(
    journaled: Ledger,
    clock: MovableClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine, url = journaled.engine, url_of(journaled)
    taken = journal.checkpoint(journaled.uow, clock)
    assert taken is not None
    assert taken.sequence == 12
    # What a party outside the database holds: the published event.
    with engine.connect() as c:
        payload = c.execute(
            text(f"SELECT payload FROM outbox WHERE event_type = '{CHECKPOINTED}'")
        ).scalar_one()
    published = ev.JournalCheckpointed.FromString(bytes(payload))
    # An intruder changes tr_fund's amount and re-hashes every record from it to the head.
    at = sequence_of(engine, "tr_fund")
    with engine.connect() as c:
        rows = c.execute(
            text("SELECT sequence, body, hash FROM journal WHERE sequence >= :s ORDER BY sequence"),
            {"s": at - 1},
        ).all()
    before, rest = bytes(rows[0][2]), rows[1:]
    bodies = [bytes(body) for _, body, _ in rest]
    bodies[0] = with_amount(bodies[0], 1000, 9000)
    links = chain(at - 1, before, bodies)
    tampered(
        engine,
        *(
            (
                "UPDATE journal SET body = :b, prev_hash = :p, hash = :h WHERE sequence = :s",
                {"b": body, "p": link.prev_hash, "h": link.hash, "s": link.sequence},
            )
            for link, body in zip(links, bodies, strict=True)
        ),
        ("UPDATE journal_head SET hash = :h", {"h": links[-1].hash}),
    )
    # The chain alone is valid again: a copy of it verifies without the checkpoint.
    export = tmp_path / "rewritten.jsonl"
    assert cli(monkeypatch, capsys, url, "export-journal", "--out", str(export))[0] == 0
    code, out = cli(monkeypatch, capsys, url, "verify-journal", "--file", str(export))
    assert (code, out.strip()) == (
        0,
        f"journal verified: head sequence 12 hash {links[-1].hash.hex()}",
    )
    # The stored checkpoint exposes it, from the checkpoint and from the start...
    for argv in (["--from-checkpoint"], []):
        code, out = cli(monkeypatch, capsys, url, "verify-journal", *argv)
        assert code == 1
        assert out.startswith("journal broken at sequence 12: ")
        assert published.hash.hex() in out
    # ... and so does the published one, offline.
    code, out = cli(
        monkeypatch,
        capsys,
        url,
        "verify-journal",
        "--file",
        str(export),
        "--checkpoint",
        f"{published.sequence}:{published.hash.hex()}",
    )
    assert code == 1
    assert out.startswith("journal broken at sequence 12: its hash is not the one checkpointed")


def test_verification_from_a_checkpoint_checks_only_what_follows_it(
    journaled: Ledger,
    clock: MovableClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = journaled.engine
    assert journal.checkpoint(journaled.uow, clock) is not None
    use_cases.create_transfers(
        journaled.uow, clock, [move("tr_late", debit("acct_bank", 5), credit("acct_bob", 5))]
    )
    late = with_amount(body_at(engine, 13), 5, 6)
    tampered(engine, ("UPDATE journal SET body = :b WHERE sequence = 13", {"b": late}))
    code, out = cli(monkeypatch, capsys, url_of(journaled), "verify-journal", "--from-checkpoint")
    assert (code, out.strip()) == (
        1,
        "journal broken at sequence 13: its hash is not the hash of its content",
    )


def test_a_cut_tail_with_the_head_moved_back_is_exposed_by_a_checkpoint(
    journaled: Ledger,
    clock: MovableClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = journaled.engine
    assert journal.checkpoint(journaled.uow, clock) is not None  # at 12
    with engine.connect() as c:
        ten = bytes(c.execute(text("SELECT hash FROM journal WHERE sequence = 10")).scalar_one())
    tampered(
        engine,
        ("DELETE FROM journal WHERE sequence > 10", {}),
        ("UPDATE journal_head SET sequence = 10, hash = :h", {"h": ten}),
    )
    code, out = cli(monkeypatch, capsys, url_of(journaled), "verify-journal")
    assert code == 1
    assert out.startswith(
        "journal broken at sequence 11: it is missing: sequence 12 was checkpointed at "
    )


# --- checkpoints ----------------------------------------------------------------------


def test_the_worker_stores_and_publishes_one_checkpoint_per_moved_head(
    journaled: Ledger, clock: MovableClock
) -> None:
    engine = journaled.engine
    worker = JournalCheckpoints(journaled)

    def stored() -> list[tuple[int, bytes]]:
        with engine.connect() as c:
            return [
                (int(s), bytes(h))
                for s, h in c.execute(
                    text("SELECT sequence, hash FROM journal_checkpoints ORDER BY sequence")
                )
            ]

    def published() -> list[tuple[int, bytes, str]]:
        with engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT payload, ordering_key FROM outbox "
                    f"WHERE event_type = '{CHECKPOINTED}' ORDER BY id"
                )
            ).all()
        events = [(ev.JournalCheckpointed.FromString(bytes(p)), key) for p, key in rows]
        return [(e.sequence, e.hash, key) for e, key in events]

    worker.checkpoint()
    worker.checkpoint()  # the head did not move: nothing new
    first = head_of(engine)
    assert stored() == [first]
    assert [(s, h) for s, h, _ in published()] == [first]
    use_cases.create_transfers(
        journaled.uow, clock, [move("tr_more", debit("acct_bank", 5), credit("acct_bob", 5))]
    )
    second = head_of(engine)
    worker.checkpoint()
    assert stored() == [first, second]
    assert [(s, h) for s, h, _ in published()] == [first, second]
    # Another process that saw the same head stores nothing and publishes nothing.
    with journaled.uow() as uow:
        assert uow.journal is not None
        again = Checkpoint.of_head(second[0], second[1], clock.now())
        assert uow.journal.add_checkpoint(again) is False
        assert uow.collect_events() == []
    assert journal.checkpoint(journaled.uow, clock) is None
    assert len(published()) == 2
    # One ordering key: subscribers get the checkpoints in the order they were taken.
    assert len({key for _, _, key in published()}) == 1


# --- export and import ----------------------------------------------------------------

_STATE = {
    "accounts": "SELECT id, currency, normal_side, debits_must_not_exceed_credits, "
    "credits_must_not_exceed_debits, debits_posted, credits_posted, debits_pending, "
    "credits_pending, entry_sequence, last_entry_at, metadata, external_reference, "
    "customer_id, fingerprint, created_at, requester_id FROM accounts ORDER BY id",
    "transfers": "SELECT * FROM transfers ORDER BY id",
    "entries": "SELECT * FROM entries ORDER BY account_id, sequence",
    "open_holds": "SELECT * FROM open_holds ORDER BY transfer_id",
    "requesters": "SELECT * FROM requesters ORDER BY id",
    "journal": "SELECT sequence, kind, body, prev_hash, hash FROM journal ORDER BY sequence",
    "journal_head": "SELECT * FROM journal_head",
}


def state(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as c:
        return {
            table: [
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in c.execute(text(sql))
            ]
            for table, sql in _STATE.items()
        }


def export_then_import(
    source: str,
    target: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export = tmp_path / "journal.jsonl"
    code, out = cli(monkeypatch, capsys, source, "export-journal", "--out", str(export))
    assert code == 0, out
    code, out = cli(monkeypatch, capsys, source, "verify-journal", "--file", str(export))
    assert code == 0, out
    code, out = cli(monkeypatch, capsys, target, "import-journal", "--in", str(export))
    assert code == 0, out
    # Into a ledger that is not empty, an import refuses and writes nothing.
    code, out = cli(monkeypatch, capsys, source, "import-journal", "--in", str(export))
    assert code == 2
    assert "empty" in out


@pytest.fixture
def empty_ledger_db(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.fresh_database_url("ledger", migrate)
    yield url
    postgres.drop_url(url)


def test_export_then_import_on_postgresql_gives_the_same_ledger(
    journaled: Ledger,
    empty_ledger_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export_then_import(url_of(journaled), empty_ledger_db, tmp_path, monkeypatch, capsys)
    target = create_engine(empty_ledger_db)
    try:
        before, after = state(journaled.engine), state(target)
    finally:
        target.dispose()
    assert after["open_holds"]
    assert after["journal"]
    assert after == before


def test_export_then_import_on_sqlite_gives_the_same_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = MovableClock()
    source = f"sqlite:///{tmp_path / 'source.db'}"
    ledger = bootstrap(ledger_settings(source, migrate_on_start=True), clock=clock)
    try:
        use_the_ledger(ledger, clock)
        target_url = f"sqlite:///{tmp_path / 'target.db'}"
        migrate(target_url)
        target = create_engine(target_url)
        export_then_import(source, target_url, tmp_path, monkeypatch, capsys)
        before, after = state(ledger.engine), state(target)
        target.dispose()
    finally:
        ledger.close()
    assert after["open_holds"]
    assert after["journal"]
    assert after == before


def test_an_export_with_a_changed_line_does_not_import(
    journaled: Ledger,
    empty_ledger_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export = tmp_path / "journal.jsonl"
    assert (
        cli(monkeypatch, capsys, url_of(journaled), "export-journal", "--out", str(export))[0] == 0
    )
    lines = export.read_bytes().splitlines(keepends=True)
    at = sequence_of(journaled.engine, "tr_post")
    lines[at] = with_amount(lines[at], 300, 301)  # line 0 is the header
    export.write_bytes(b"".join(lines))
    code, out = cli(monkeypatch, capsys, empty_ledger_db, "import-journal", "--in", str(export))
    assert (code, out.strip()) == (
        1,
        f"journal broken at sequence {at}: its hash is not the hash of its content",
    )
    target = create_engine(empty_ledger_db)
    try:
        with target.connect() as c:
            assert SqlJournal(c).is_empty()
    finally:
        target.dispose()


def test_a_forged_copy_hashed_anew_is_exposed_by_its_books(
    journaled: Ledger,
    empty_ledger_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Someone writes a copy of the journal with tr_fund's entry made smaller and hashes
    # the whole chain anew (no checkpoint held): the chain verifies, the books do not.
    source = url_of(journaled)
    export = tmp_path / "journal.jsonl"
    assert cli(monkeypatch, capsys, source, "export-journal", "--out", str(export))[0] == 0
    lines = export.read_bytes().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    bodies = [line[line.index(b'"body":') + len(b'"body":') : -1] for line in lines[1:]]
    at = sequence_of(journaled.engine, "tr_fund")
    entry_debit = b'"POSTED","DEBIT",1000,'  # an entry's amount (legs have no entry type)
    assert bodies[at - 1].count(entry_debit) == 1
    bodies[at - 1] = bodies[at - 1].replace(entry_debit, b'"POSTED","DEBIT",900,')
    links = chain(0, GENESIS, bodies)
    forged = [
        json.dumps(
            {"format": "astra-ledger-journal", "head": {"hash": links[-1].hash.hex(),
             "sequence": links[-1].sequence}, "version": 1},
            sort_keys=True, separators=(",", ":"),
        ).encode()
    ]  # fmt: skip
    for record, link, body in zip(records, links, bodies, strict=True):
        forged.append(
            b'{"sequence":%d,"prev_hash":"%s","hash":"%s","recorded_at":%d,"body":%s}'
            % (link.sequence, link.prev_hash.hex().encode(), link.hash.hex().encode(),
               record["recorded_at"], body)
        )  # fmt: skip
    export.write_bytes(b"\n".join(forged) + b"\n")
    code, out = cli(monkeypatch, capsys, source, "verify-journal", "--file", str(export))
    assert code == 1
    assert out.startswith(f"journal broken at sequence {at}: transfer tr_fund: account ")
    assert "sums after its entry" in out
    code, out = cli(monkeypatch, capsys, empty_ledger_db, "import-journal", "--in", str(export))
    assert code == 1, out
    assert out.startswith(f"journal broken at sequence {at}: transfer tr_fund: account ")
    target = create_engine(empty_ledger_db)
    try:
        with target.connect() as c:
            assert SqlJournal(c).is_empty()
    finally:
        target.dispose()
