"""The personal-data migrations seal what existing rows hold in clear and rewrite the events
still in the outbox (identity 0004_personal_data, payments 0006_personal_data), on
PostgreSQL and on SQLite (``make run``'s files)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from astra.identity.v1 import events_pb2 as iev
from astra.identity.v1 import identity_pb2 as ipb
from astra.payments.v1 import events_pb2 as pev
from astra.payments.v1 import payments_pb2 as ppb
from astra_testkit.postgres import PostgresServer
from chassis.db.data_keys import DataKeys
from chassis.db.engine import create_db_engine
from chassis.db.migrations import upgrade
from chassis.pii import Envelope, generate_key_encryption_key
from identity.adapters import tables as identity_tables
from identity.adapters.orm import start_mappers
from identity.adapters.unit_of_work import SqlIdentityUnitOfWork
from payments.adapters import tables as payments_tables
from payments.adapters.unit_of_work import SqlPaymentsUnitOfWork
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEK = generate_key_encryption_key()
EMAIL, NAME = "old.row.4d2@example.com", "Old Row Customer-4d2"
IBAN, HOLDER = "DE75512108001245126199", "Old Row Payee-4d2"


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    name = postgres.create_database(prefix="astra_t_pii_mig")
    yield postgres.url_for(name)
    postgres.drop_database(name)


def insert_outbox(engine: Engine, event_type: str, aggregate: str, payload: bytes) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO outbox (event_id, event_type, ordering_key, lane, payload, "
                "occurred_at) VALUES ('evt_old', :type, :key, 0, :payload, :at)"
            ),
            {"type": event_type, "key": aggregate, "payload": payload, "at": NOW},
        )


def stored(engine: Engine, table: str) -> bytes:
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT * FROM {table}")).all()
    return b"".join(v if isinstance(v, bytes) else str(v).encode() for row in rows for v in row)


def outbox_payload(engine: Engine) -> bytes:
    with engine.connect() as connection:
        return bytes(connection.execute(text("SELECT payload FROM outbox")).scalar_one())


def test_identity_seals_existing_customers_and_strips_old_events(database_url: str) -> None:
    migrations = ROOT / "services" / "identity" / "migrations"
    upgrade(database_url, migrations, "0002")
    engine = create_db_engine(database_url, pool_size=1)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO customers (id, display_name, email, fingerprint, kyc_status, "
                "kyc_reason, kyc_version, kyc_updated_at, created_at) VALUES "
                "('cus_old', :name, :email, 'f', 'UNVERIFIED', '', 0, :at, :at)"
            ),
            {"name": NAME, "email": EMAIL, "at": NOW},
        )
    # The old CustomerCreated: the whole Customer in field 1, the time in field 2.
    old = ipb.Customer(
        id="cus_old", display_name=NAME, email=EMAIL, kyc_status=ipb.KYC_STATUS_UNVERIFIED
    )
    old.create_time.FromDatetime(NOW)
    occurred = iev.CustomerCreated()
    occurred.occur_time.FromDatetime(NOW)
    payload = (
        ipb.EraseCustomerResponse(customer=old).SerializeToString() + occurred.SerializeToString()
    )
    insert_outbox(engine, iev.CustomerCreated.DESCRIPTOR.full_name, "cus_old", payload)

    upgrade(database_url, migrations, key_encryption_keys=[KEK])

    for table in ("customers", "outbox"):
        assert EMAIL.encode() not in stored(engine, table)
        assert NAME.encode() not in stored(engine, table)
    created = iev.CustomerCreated.FromString(outbox_payload(engine))
    assert (created.customer_id, created.occur_time.ToDatetime(UTC)) == ("cus_old", NOW)
    start_mappers()
    keys = DataKeys(identity_tables.data_keys, Envelope([KEK]))
    with SqlIdentityUnitOfWork(engine, keys) as uow:
        customer = uow.customers.get("cus_old")
        assert customer is not None
        assert (customer.display_name, customer.email) == (NAME, EMAIL)
    engine.dispose()


def test_payments_seals_existing_counterparties_and_strips_old_events(database_url: str) -> None:
    migrations = ROOT / "services" / "payments" / "migrations"
    upgrade(database_url, migrations, "0004")
    engine = create_db_engine(database_url, pool_size=1)
    columns = {
        "id": "pay_old", "kind": 1, "state": 6, "customer_id": "cus_old", "amount": 700,
        "currency": "EUR", "fee": 0, "counterparty_account": IBAN, "counterparty_name": HOLDER,
        "description": "", "original_payment_id": "", "fingerprint": "f",
        "ledger_account_id": "acct_cus_old_EUR", "reason": "", "review_required": False,
        "review_reason": "", "review_outcome": "", "bank_payment_id": "", "bank_attempts": 0,
        "ledger_done": 0, "hold_uncertain": False, "ledger_error": "", "retries": 0,
        "version": 0, "transition_count": 1, "created_at": NOW, "updated_at": NOW,
    }  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            text(
                f"INSERT INTO payments ({', '.join(columns)}) "
                f"VALUES ({', '.join(':' + c for c in columns)})"
            ),
            columns,
        )
    old = ppb.Payment(
        id="pay_old",
        state=ppb.PAYMENT_STATE_SETTLED,
        customer_id="cus_old",
        amount=700,
        currency="EUR",
        counterparty=ppb.BankAccount(account_number=IBAN, holder_name=HOLDER),
    )
    rest = pev.PaymentStateChanged(state=ppb.PAYMENT_STATE_SETTLED, reason="BANK_SETTLED")
    payload = ppb.GetPaymentResponse(payment=old).SerializeToString() + rest.SerializeToString()
    insert_outbox(engine, pev.PaymentStateChanged.DESCRIPTOR.full_name, "pay_old", payload)

    upgrade(database_url, migrations, key_encryption_keys=[KEK])

    for table in ("payments", "outbox"):
        assert IBAN.encode() not in stored(engine, table)
        assert HOLDER.encode() not in stored(engine, table)
    event = pev.PaymentStateChanged.FromString(outbox_payload(engine))
    assert (event.payment.id, event.payment.amount, event.reason) == (
        "pay_old",
        700,
        "BANK_SETTLED",
    )
    assert event.payment.counterparty_account_last4 == IBAN[-4:]
    keys = DataKeys(payments_tables.data_keys, Envelope([KEK]))
    with SqlPaymentsUnitOfWork(engine, keys) as uow:
        payment = uow.payments.get("pay_old")
        assert payment is not None
        assert (payment.counterparty.account_number, payment.counterparty.holder_name) == (
            IBAN,
            HOLDER,
        )
    engine.dispose()
