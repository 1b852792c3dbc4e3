"""Fixtures shared by every tier: real PostgreSQL databases, the real Pub/Sub emulator.

A missing PostgreSQL or emulator is an error naming what to provide, never a
skip: they are the production store and the production broker's stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from astra_testkit.postgres import PostgresServer
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.tls import suite_ca
from chassis.tls.devca import DevCa

# Every context's fixtures, available to every test without importing them.
pytest_plugins = [
    "tests.ledger_fixtures",
    "tests.identity_fixtures",
    "tests.payments_fixtures",
    "tests.outbox_fixtures",
    "tests.observability_fixtures",
]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.require()
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def dev_ca() -> DevCa:
    """The run's development CA (made by ``chassis.tls.devca`` in a temporary folder): every
    in-process server, process and client of the tests has its certificates from it."""
    return suite_ca()


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    with PubSubEmulator() as emulator:
        yield emulator
