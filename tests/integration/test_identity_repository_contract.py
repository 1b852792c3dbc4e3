"""Identity's unit of work and repositories, run against every implementation: the in-memory
fake, PostgreSQL and SQLite. What the use-case tests on the fake rely on holds for the SQL ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from astra_testkit.postgres import PostgresServer
from chassis.db.data_keys import DataKeys
from chassis.db.engine import create_db_engine
from chassis.events.writer import OutboxWriter
from chassis.kernel.audit import Requester
from chassis.pii import Envelope
from identity.adapters import tables
from identity.adapters.events import to_outbox_message
from identity.adapters.memory import MemoryIdentityDatabase, MemoryIdentityUnitOfWork
from identity.adapters.orm import start_mappers
from identity.adapters.unit_of_work import SqlIdentityUnitOfWork
from identity.bootstrap import migrate
from identity.domain.events import CustomerCreated, CustomerErased, CustomerKycChanged
from identity.domain.model import (
    Customer,
    CustomerSpec,
    KycDecision,
    KycRequest,
    KycStatus,
    ServiceClient,
    SigningKey,
    TokenRevocation,
)
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from sqlalchemy import Engine, text

from tests.identity_fixtures import TEST_KEK

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=15)


class Backend:
    def __init__(
        self,
        make: Callable[[Callable[[Sequence[Any]], None]], IdentityUnitOfWork],
        engine: Engine | None = None,
    ) -> None:
        self.events: list[Any] = []
        self._make = make
        # The SQL backends' engine, to read what is really stored.
        self.engine = engine

    def uow(self) -> IdentityUnitOfWork:
        return self._make(self.events.extend)


def _sql_backend(url: str) -> Iterator[Backend]:
    start_mappers()
    engine = create_db_engine(url, pool_size=2, application_name="astra-contract")
    write_events = OutboxWriter(tables.outbox, "identity").events_writer(to_outbox_message)
    keys = DataKeys(tables.data_keys, Envelope([TEST_KEK]))
    yield Backend(lambda hook: SqlIdentityUnitOfWork(engine, keys, write_events, hook), engine)
    engine.dispose()


@pytest.fixture(params=["memory", "postgresql", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        database = MemoryIdentityDatabase()
        yield Backend(lambda hook: MemoryIdentityUnitOfWork(database, hook))
    elif request.param == "postgresql":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        url = postgres.fresh_database_url("identity", migrate)
        yield from _sql_backend(url)
        postgres.drop_url(url)
    else:
        url = f"sqlite:///{tmp_path / 'identity.db'}"
        migrate(url)
        yield from _sql_backend(url)


# SQLite has one writer at a time and does not count a unique violation as a lost race
# (a racing transaction cannot even write there); these run where races happen.
RACING = pytest.mark.parametrize("backend", ["memory", "postgresql"], indirect=True)


def _customer(customer_id: str) -> Customer:
    return Customer.create(CustomerSpec(customer_id, "Name", f"{customer_id}@example.com"), T0)


def _key(kid: str, *, created: datetime = T0, request_id: str = "") -> SigningKey:
    return SigningKey(kid, {"kid": kid, "kty": "EC"}, b"sealed", created, request_id)


def _failure(uow: IdentityUnitOfWork, write: Callable[[], None]) -> Exception:
    """What writing and committing raised: each backend raises its own kind of error."""
    try:
        write()
        uow.commit()
    except Exception as error:
        return error
    raise AssertionError("the write was accepted")


def test_one_object_per_row_in_a_transaction_and_changes_written_at_commit(
    backend: Backend,
) -> None:
    with backend.uow() as uow:
        uow.customers.add(_customer("cus_a"))
        uow.commit()
    with backend.uow() as uow:
        customer = uow.customers.get("cus_a", for_update=True)
        assert customer is not None
        assert uow.customers.get("cus_a") is customer
        customer.submit_for_review("tester", T0 + timedelta(seconds=1))
        customer.review(KycDecision.APPROVE, "fine", "tester", T0 + timedelta(seconds=2))
        uow.commit()
    with backend.uow() as uow:
        stored = uow.customers.get("cus_a")
        assert stored is not None
        view = stored.view()
    assert (view.kyc_status, view.kyc_version, view.kyc_reason) == (KycStatus.VERIFIED, 2, "fine")
    assert [c.status for c in view.history] == [KycStatus.PENDING_REVIEW, KycStatus.VERIFIED]
    assert [type(e) for e in backend.events] == [
        CustomerCreated,
        CustomerKycChanged,
        CustomerKycChanged,
    ]


def test_customers_kyc_changes_and_clients_keep_who_asked(backend: Backend) -> None:
    admin = Requester("cli_admin", None, "req-1")
    app = Requester("cli_app", "cus_a", "req-2")
    spec = CustomerSpec("cus_a", "Name", "cus_a@example.com")
    with backend.uow() as uow:
        uow.customers.add(Customer.create(spec, T0, admin))
        uow.customers.add(_customer("cus_b"))
        uow.clients.add(ServiceClient("cli_a", "A", ("x.read",), "hash", T0, admin))
        uow.clients.add(ServiceClient("cli_b", "B", ("x.read",), "hash", T0))
        uow.commit()
    with backend.uow() as uow:
        customer = uow.customers.get("cus_a", for_update=True)
        client = uow.clients.get("cli_a", for_update=True)
        assert customer is not None
        assert client is not None
        customer.submit_for_review("cus_a", T0 + timedelta(seconds=1), app)
        customer.review(KycDecision.REJECT, "no", "cli_admin", T0 + timedelta(seconds=2), admin)
        client.disable(T0, app)
        uow.commit()
    with backend.uow() as uow:
        stored, plain = uow.customers.get("cus_a"), uow.customers.get("cus_b")
        assert stored is not None
        assert plain is not None
        view, plain_view = stored.view(), plain.view()
        disabled, enabled = uow.clients.get("cli_a"), uow.clients.get("cli_b")
    assert (view.created_by, [c.changed_by for c in view.history]) == (admin, [app, admin])
    assert plain_view.created_by is None
    assert disabled is not None
    assert enabled is not None
    assert (disabled.created_by, disabled.disabled_by) == (admin, app)
    assert (enabled.created_by, enabled.disabled_by) == (None, None)


def test_nothing_of_a_transaction_that_did_not_commit_remains(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.customers.add(_customer("cus_a"))
        uow.signing_keys.add(_key("key_1"))
        uow.commit()
    with backend.uow() as uow:
        customer = uow.customers.get("cus_a", for_update=True)
        assert customer is not None
        customer.submit_for_review("tester", T0)
        uow.customers.add(_customer("cus_b"))
        uow.kyc_requests.add(KycRequest("kyc_1", "cus_a", "f", T0, kyc_version=1))
        uow.clients.add(ServiceClient("cli_a", "A", ("x.y",), "hash", T0))
        active = uow.signing_keys.active(for_update=True)
        assert active is not None
        active.retire(T0, TTL, timedelta(0))
        uow.signing_keys.add(_key("key_2", request_id="rot_1"))
        assert [k.kid for k in uow.signing_keys.published(T0)] == ["key_2", "key_1"]
    with backend.uow() as uow:
        customer = uow.customers.get("cus_a")
        assert customer is not None
        assert customer.kyc_version == 0
        assert uow.customers.get("cus_b") is None
        assert uow.kyc_requests.get("kyc_1") is None
        assert uow.clients.get("cli_a") is None
        assert [k.kid for k in uow.signing_keys.published(T0)] == ["key_1"]
        assert uow.signing_keys.by_request("rot_1") is None
    assert [type(e) for e in backend.events] == [CustomerCreated]


def test_what_a_block_read_stays_readable_after_it(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.clients.add(ServiceClient("cli_a", "A", ("b.c", "a.b"), "hash", T0))
        uow.signing_keys.add(_key("key_1"))
        uow.customers.add(_customer("cus_a"))
        uow.commit()
    with backend.uow() as uow:
        client = uow.clients.get("cli_a")
        key = uow.signing_keys.active()
        customers = uow.customers.list(None, 10, None)
    assert client is not None
    assert key is not None
    assert (client.allowed_scopes, client.secret_hash, client.disabled) == (
        ("a.b", "b.c"),
        "hash",
        False,
    )
    assert (key.kid, key.public_jwk, key.created_at) == ("key_1", {"kid": "key_1", "kty": "EC"}, T0)
    assert [c.view().id for c in customers] == ["cus_a"]


def test_customers_are_listed_by_id_after_a_position_and_by_status(backend: Backend) -> None:
    with backend.uow() as uow:
        for i in range(5):
            uow.customers.add(_customer(f"cus_{i}"))
        uow.commit()
    with backend.uow() as uow:
        customer = uow.customers.get("cus_3", for_update=True)
        assert customer is not None
        customer.submit_for_review("tester", T0)
        # A query sees the transaction's own change.
        pending = uow.customers.list(None, 10, KycStatus.PENDING_REVIEW)
        assert [c.id for c in pending] == ["cus_3"]
        assert pending[0] is customer
        uow.commit()
    with backend.uow() as uow:
        assert [c.id for c in uow.customers.list("cus_1", 2, None)] == ["cus_2", "cus_3"]
        assert [c.id for c in uow.customers.list(None, 10, KycStatus.UNVERIFIED)] == [
            "cus_0",
            "cus_1",
            "cus_2",
            "cus_4",
        ]


def test_keys_rotate_in_one_transaction_and_are_found_by_request_and_published_in_order(
    backend: Backend,
) -> None:
    with backend.uow() as uow:
        uow.signing_keys.add(_key("key_1"))
        uow.commit()
    for n in (2, 3):
        created = T0 + timedelta(minutes=n)
        with backend.uow() as uow:
            previous = uow.signing_keys.active(for_update=True)
            assert previous is not None
            previous.retire(created, TTL, timedelta(0))
            uow.signing_keys.add(_key(f"key_{n}", created=created, request_id=f"rot_{n}"))
            uow.commit()
    with backend.uow() as uow:
        active = uow.signing_keys.active()
        found = uow.signing_keys.by_request("rot_2")
        assert found is not None
        retired_by = (
            uow.signing_keys.retired_by(found),
            uow.signing_keys.retired_by(_key("key_1")),
        )
        published_now = [k.kid for k in uow.signing_keys.published(T0 + timedelta(minutes=3))]
        published_later = [k.kid for k in uow.signing_keys.published(T0 + timedelta(minutes=17))]
    assert active is not None
    assert active.kid == "key_3"
    assert retired_by == (T0 + timedelta(minutes=2) + TTL, None)
    assert published_now == ["key_3", "key_2", "key_1"]
    assert published_later == ["key_3", "key_2"]  # key_1's tokens expired, key_2's have not


@RACING
def test_a_second_active_key_or_a_second_key_for_one_request_is_a_lost_race(
    backend: Backend,
) -> None:
    with backend.uow() as uow:
        uow.signing_keys.add(_key("key_1", request_id="rot_1"))
        uow.commit()
    with backend.uow() as uow:
        assert uow.is_conflict(_failure(uow, lambda: uow.signing_keys.add(_key("key_2"))))
    with backend.uow() as uow:
        retired = _key("key_3", request_id="rot_1")
        retired.retire(T0, TTL, timedelta(0))
        assert uow.is_conflict(_failure(uow, lambda: uow.signing_keys.add(retired)))
    with backend.uow() as uow:
        assert [k.kid for k in uow.signing_keys.published(T0)] == ["key_1"]


@RACING
def test_a_second_row_with_a_taken_id_is_a_lost_race(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.customers.add(_customer("cus_a"))
        uow.clients.add(ServiceClient("cli_a", "A", (), "hash", T0))
        uow.commit()
    with backend.uow() as uow:
        assert uow.is_conflict(_failure(uow, lambda: uow.customers.add(_customer("cus_a"))))
    with backend.uow() as uow:
        client = ServiceClient("cli_a", "B", (), "hash", T0)
        assert uow.is_conflict(_failure(uow, lambda: uow.clients.add(client)))
    assert [type(e) for e in backend.events] == [CustomerCreated]


def test_revocations_and_disabled_clients_are_listed_since_a_time(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.revocations.add(TokenRevocation("jti_a", T0, T0 + TTL))
        uow.revocations.add(TokenRevocation("jti_b", T0 + timedelta(seconds=5), T0 + TTL * 2))
        for client_id in ("cli_on", "cli_off", "cli_later"):
            uow.clients.add(ServiceClient(client_id, client_id, (), "hash", T0))
        uow.commit()
    with backend.uow() as uow:
        off, later = uow.clients.get("cli_off"), uow.clients.get("cli_later")
        assert off is not None
        assert later is not None
        off.disable(T0)
        later.disable(T0 + timedelta(seconds=10))
        uow.commit()
    with backend.uow() as uow:
        assert [r.token_id for r in uow.revocations.listed(None, T0)] == ["jti_a", "jti_b"]
        since = T0 + timedelta(seconds=1)
        assert [r.token_id for r in uow.revocations.listed(since, T0)] == ["jti_b"]
        # Listed only until the token would have expired anyway.
        assert [r.token_id for r in uow.revocations.listed(None, T0 + TTL)] == ["jti_b"]
        assert [c.id for c in uow.clients.disabled_since(None)] == ["cli_later", "cli_off"]
        assert [c.id for c in uow.clients.disabled_since(since)] == ["cli_later"]
        found = uow.revocations.get("jti_a")
        assert found is not None
        assert found.expire_at == T0 + TTL
        assert uow.revocations.get("jti_none") is None


def _stored_bytes(engine: Engine) -> bytes:
    """Every value of the customers' and data keys' rows as stored, in one blob."""
    blob = b""
    with engine.connect() as connection:
        for table in ("customers", "data_keys"):
            for row in connection.execute(text(f"SELECT * FROM {table}")):
                for value in row:
                    blob += value if isinstance(value, bytes) else str(value).encode()
    return blob


def test_personal_data_is_sealed_at_rest_and_erased_for_good(backend: Backend) -> None:
    spec = CustomerSpec("cus_pii", "Ada Lovelace-7e1", "ada.7e1@example.com")
    with backend.uow() as uow:
        uow.customers.add(Customer.create(spec, T0))
        uow.commit()
    if backend.engine is not None:
        stored = _stored_bytes(backend.engine)
        assert b"cus_pii" in stored
        assert spec.email.encode() not in stored
        assert spec.display_name.encode() not in stored
    with backend.uow() as uow:
        listed = uow.customers.list(None, 10, None)
        assert [(c.display_name, c.email) for c in listed] == [(spec.display_name, spec.email)]

    for _ in range(2):  # erasing again changes nothing
        with backend.uow() as uow:
            customer = uow.customers.get("cus_pii", for_update=True)
            assert customer is not None
            if customer.erase("cli_admin", T0 + timedelta(minutes=1)):
                uow.customers.destroy_personal_data(customer)
            uow.commit()
    with backend.uow() as uow:
        erased = uow.customers.get("cus_pii")
        assert erased is not None
        view = erased.view()
        assert (view.display_name, view.email) == ("", "")
        assert view.erased_at == T0 + timedelta(minutes=1)
        assert view.kyc_status is KycStatus.UNVERIFIED
    assert [type(e) for e in backend.events] == [CustomerCreated, CustomerErased]
    if backend.engine is not None:
        with backend.engine.connect() as connection:
            keys = connection.execute(text("SELECT count(*) FROM data_keys")).scalar_one()
            sealed = connection.execute(
                text("SELECT display_name_sealed, email_sealed FROM customers")
            ).one()
        assert keys == 0
        assert tuple(sealed) == (None, None)
