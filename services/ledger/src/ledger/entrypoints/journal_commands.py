"""``astra-ledger verify-journal | export-journal | import-journal`` (services/ledger/JOURNAL.md).

verify-journal prints ``journal verified: head sequence N hash <hex>`` and
exits 0, or prints ``journal broken at sequence N: <why>`` and exits 1.
export-journal and import-journal exit 0 when done, 1 when the journal (or
the file) does not verify, 2 when they cannot start (an import into a ledger
that is not empty, a file that is not an export).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from chassis.db.engine import create_db_engine
from chassis.kernel.clock import SystemClock
from chassis.kernel.errors import FailedPrecondition
from chassis.service import Command

from ledger.adapters import journal_file
from ledger.bootstrap import migrate, unit_of_work
from ledger.config import LedgerSettings
from ledger.domain.books import check_history
from ledger.domain.checkpoint import Checkpoint, Head
from ledger.domain.journal import Broken
from ledger.service_layer import journal
from ledger.service_layer.journal import JournalBroken, UowFactory


@contextlib.contextmanager
def _database(settings: LedgerSettings) -> Iterator[UowFactory]:
    engine = create_db_engine(
        settings.database_url, pool_size=2, application_name="astra-ledger-journal"
    )
    try:
        yield unit_of_work(engine)
    finally:
        engine.dispose()


def _checkpoint(value: str) -> Checkpoint:
    """``SEQUENCE:HEX``, a checkpoint held outside the database (a published one)."""
    sequence, _, digest = value.partition(":")
    try:
        parsed = Checkpoint(int(sequence), bytes.fromhex(digest), datetime.now(UTC))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{value!r} is not SEQUENCE:HEX") from error
    if len(parsed.hash) != 32 or parsed.sequence < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: a sequence from 1 and a 32-byte hash")
    return parsed


def _verdict(head: Head, broken: Broken | None) -> None:
    if broken is not None:
        print(f"journal broken at sequence {broken.sequence}: {broken.reason}")
        raise SystemExit(1)
    print(f"journal verified: head sequence {head[0]} hash {head[1].hex()}")


def _cannot(why: object) -> None:
    print(f"error: {why}", file=sys.stderr)
    raise SystemExit(2)


def _verify(args: argparse.Namespace, settings: LedgerSettings) -> None:
    extra: list[Checkpoint] = list(args.checkpoint or ())
    if args.file is not None:
        with args.file.open("rb") as source:
            try:
                head, records = journal_file.read(source)
                if args.from_checkpoint:
                    with _database(settings) as uow:
                        extra += journal.stored_checkpoints(uow)
                broken = check_history(records, head=head, checkpoints=extra)
            except journal_file.BadExport as error:
                _cannot(error)
                return
        _verdict(head, broken)
        return
    with _database(settings) as uow:
        verdict = journal.verify(uow, from_checkpoint=args.from_checkpoint, extra=extra)
    _verdict(verdict.head, verdict.broken)


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-checkpoint",
        action="store_true",
        help="start at the newest stored checkpoint, once its record is found to still have "
        "its hash (with --file: check the file against the stored checkpoints)",
    )
    parser.add_argument(
        "--file", type=Path, help="verify an export file instead of the database (offline)"
    )
    parser.add_argument(
        "--checkpoint",
        type=_checkpoint,
        action="append",
        metavar="SEQUENCE:HEX",
        help="a published checkpoint (JournalCheckpointed) the record at SEQUENCE must match; "
        "repeatable",
    )


def _export(args: argparse.Namespace, settings: LedgerSettings) -> None:
    heads: list[Head] = []
    with _database(settings) as uow, args.out.open("wb") as out:

        def write_head(head: Head) -> None:
            heads.append(head)
            out.write(journal_file.header(head))

        count = 0
        for record in journal.export(uow, write_head):
            out.write(journal_file.record_line(record))
            count += 1
    sequence, digest = heads[0]
    print(f"exported {count} records to {args.out}: head sequence {sequence} hash {digest.hex()}")


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the file to write (JSON lines)")


def _import(args: argparse.Namespace, settings: LedgerSettings) -> None:
    if settings.migrate_on_start:
        migrate(settings.database_url)
    with _database(settings) as uow, args.input.open("rb") as source:
        try:
            head, records = journal_file.read(source)
            journal.import_journal(uow, SystemClock(), head, records)
        except JournalBroken as error:
            _verdict(head, error.broken)
            return
        except (journal_file.BadExport, FailedPrecondition) as error:
            _cannot(error)
            return
    print(f"imported: head sequence {head[0]} hash {head[1].hex()}")


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--in", dest="input", type=Path, required=True, help="an export-journal file"
    )


COMMANDS: tuple[Command[LedgerSettings], ...] = (
    Command(
        "verify-journal",
        "check the journal's hash chain; print its head, or the first sequence that does not "
        "verify (exit 1)",
        _verify,
        _verify_arguments,
    ),
    Command(
        "export-journal",
        "write the journal to a file (JSON lines, services/ledger/JOURNAL.md)",
        _export,
        _export_arguments,
    ),
    Command(
        "import-journal",
        "replay an exported journal into an empty ledger database, verifying it as it reads",
        _import,
        _import_arguments,
    ),
)
