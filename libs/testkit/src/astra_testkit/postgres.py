"""Fresh PostgreSQL databases per test, created from a migrated template and dropped after.

``ASTRA_TEST_POSTGRES_URL`` names the server (default: the local one on
127.0.0.1:5432 as user postgres). If it cannot be reached the tests fail with
that message: PostgreSQL is the production store, never skipped.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg import sql

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class PostgresUnavailable(RuntimeError):
    pass


class PostgresServer:
    def __init__(self, admin_url: str | None = None) -> None:
        self.admin_url = admin_url or os.environ.get("ASTRA_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)
        self._templates: dict[str, str] = {}
        self._lock = threading.Lock()
        self._created: set[str] = set()

    def require(self) -> None:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as error:
            raise PostgresUnavailable(
                f"PostgreSQL is required at {self.admin_url} (set ASTRA_TEST_POSTGRES_URL): {error}"
            ) from error

    def url_for(self, database: str) -> str:
        base = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        user = base.get("user") or "postgres"
        host = base.get("host") or "127.0.0.1"
        port = base.get("port") or "5432"
        password = base.get("password")
        auth = f"{user}:{password}@" if password else f"{user}@"
        return f"postgresql://{auth}{host}:{port}/{database}"

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10)

    def create_database(self, prefix: str = "astra_t", template: str | None = None) -> str:
        """Create an empty database (or a copy of ``template``); returns its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        else:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        # Copying a template fails while anyone (autovacuum included) is connected
        # to it; that passes in a moment.
        for attempt in range(50):
            try:
                with self._admin() as conn:
                    conn.execute(statement)
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        self._created.add(name)
        return name

    def migrated_template(self, key: str, migrate: Callable[[str], None]) -> str:
        """A template database migrated once per process; copies of it are fast."""
        with self._lock:
            if key not in self._templates:
                name = self.create_database(prefix=f"astra_tpl_{key}")
                migrate(self.url_for(name))
                self._templates[key] = name
            return self._templates[key]

    def fresh_database_url(self, key: str, migrate: Callable[[str], None]) -> str:
        template = self.migrated_template(key, migrate)
        with self._lock:  # CREATE DATABASE ... TEMPLATE needs the template idle
            name = self.create_database(prefix=f"astra_t_{key}", template=template)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self._created.discard(name)

    def drop_url(self, url: str) -> None:
        self.drop_database(url.rsplit("/", 1)[-1].split("?", 1)[0])

    def drop_all(self) -> None:
        for name in list(self._created):
            self.drop_database(name)
        self._templates.clear()
