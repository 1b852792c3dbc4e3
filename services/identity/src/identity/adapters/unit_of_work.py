"""Identity's unit of work on an ORM session (the domain is mapped in ``identity.adapters.orm``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chassis.db.data_keys import DataKeys
from chassis.db.uow import EventsWriter, SessionUnitOfWork
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from identity.adapters.repository import (
    SqlClientRepository,
    SqlCustomerRepository,
    SqlKycRequestRepository,
    SqlRevocationRepository,
    SqlSigningKeyRepository,
)
from identity.service_layer.unit_of_work import IdentityUnitOfWork


class SqlIdentityUnitOfWork(SessionUnitOfWork, IdentityUnitOfWork):
    def __init__(
        self,
        engine: Engine,
        data_keys: DataKeys,
        write_events: EventsWriter | None = None,
        on_commit: Callable[[Sequence[Any]], None] | None = None,
    ) -> None:
        super().__init__(engine, write_events, on_commit)
        self._data_keys = data_keys

    def _open_repositories(self, session: Session) -> None:
        self.customers = SqlCustomerRepository(session, self._data_keys)
        self.kyc_requests = SqlKycRequestRepository(session)
        self.clients = SqlClientRepository(session)
        self.signing_keys = SqlSigningKeyRepository(session)
        self.revocations = SqlRevocationRepository(session)

    def rollback(self) -> None:
        # Leaving a block rolls back, and a rollback expires what the session loaded:
        # detached first, what was read stays readable after the block.
        if self._session is not None:
            self._session.expunge_all()
        super().rollback()
