"""Domain errors with stable reasons.

A domain raises these; one interceptor in ``chassis.grpc`` maps them to gRPC
status codes with ``google.rpc.ErrorInfo`` and ``BadRequest`` details (AIP-193).
The category says which status code fits; the reason is the stable, machine
readable cause clients switch on.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class ErrorCategory(enum.Enum):
    """What kind of failure an error is; each maps to one gRPC status code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One offending field of a request, named by its path (``transfers[3].legs[0].amount``)."""

    field: str
    description: str
    reason: str = ""


class DomainError(Exception):
    """A refusal the domain decided, with a stable reason."""

    category: ErrorCategory = ErrorCategory.FAILED_PRECONDITION

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        category: ErrorCategory | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        if category is not None:
            self.category = category
        self.metadata: dict[str, str] = dict(metadata or {})
        self.violations: tuple[FieldViolation, ...] = tuple(violations)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.message!r})"


class InvalidArgument(DomainError):
    """Bad input: the request can never succeed as written."""

    category = ErrorCategory.INVALID_ARGUMENT

    def __init__(
        self,
        violations: Sequence[FieldViolation],
        *,
        reason: str = "INVALID_ARGUMENT",
        message: str | None = None,
    ) -> None:
        if not violations:
            raise ValueError("InvalidArgument needs at least one field violation")
        text = message or "; ".join(f"{v.field}: {v.description}" for v in violations[:5])
        if message is None and len(violations) > 5:
            text += f" (and {len(violations) - 5} more)"
        super().__init__(reason, text, violations=violations)

    def under(self, prefix: str) -> InvalidArgument:
        """The same refusal with each field named from an enclosing message.

        ``pending.timeout`` under ``transfers[3]`` is ``transfers[3].pending.timeout``.
        """
        return InvalidArgument(
            [
                FieldViolation(f"{prefix}.{v.field}", v.description, v.reason)
                for v in self.violations
            ],
            reason=self.reason,
        )


class NotFound(DomainError):
    category = ErrorCategory.NOT_FOUND


class AlreadyExists(DomainError):
    category = ErrorCategory.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    category = ErrorCategory.FAILED_PRECONDITION


class PermissionDenied(DomainError):
    category = ErrorCategory.PERMISSION_DENIED


class Unauthenticated(DomainError):
    category = ErrorCategory.UNAUTHENTICATED


class Unavailable(DomainError):
    category = ErrorCategory.UNAVAILABLE


class ResourceExhausted(DomainError):
    """Too many calls: try again after ``retry_after`` seconds (a ``google.rpc.RetryInfo``)."""

    category = ErrorCategory.RESOURCE_EXHAUSTED

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        retry_after: float,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason, message, metadata=metadata)
        self.retry_after = max(0.0, retry_after)


class DeadlineExceeded(DomainError):
    """The caller's deadline passed before its outcome was known.

    Not a refusal and not a server failure: the request may still have been
    applied (it was under way) or not (it never started). Retrying with the same
    client-chosen id returns the original outcome, whichever it was.
    """

    category = ErrorCategory.DEADLINE_EXCEEDED

    def __init__(self, what: str = "the request") -> None:
        super().__init__(
            "DEADLINE_EXCEEDED",
            f"the deadline passed before {what} was decided; it may or may not have been "
            "applied: retry with the same id to learn its outcome",
        )


class RetryTransaction(Exception):
    """What a transaction read changed before it could decide: run it again from the start.

    Raised while nothing of the transaction has been written; the retry of
    conflicting transactions (``chassis.db.retry``) treats it like a lost race.
    Pure, so that a domain can raise it when the snapshot it was given is not
    the one it needs.
    """


class IdempotencyKeyReused(AlreadyExists):
    """The client-chosen id was used before for different content (AIP-155)."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(
            "IDEMPOTENCY_KEY_REUSED",
            f"{kind} {key} already exists with different content; "
            "use a new id for a different request",
            metadata={"id": key},
        )


class Violations:
    """Collects field violations while a request is validated, then raises them all at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str, reason: str = "") -> None:
        self._items.append(FieldViolation(field, description, reason))

    def extend(self, violations: Sequence[FieldViolation]) -> None:
        self._items.extend(violations)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> tuple[FieldViolation, ...]:
        return tuple(self._items)

    def raise_if_any(self, *, reason: str = "INVALID_ARGUMENT") -> None:
        if self._items:
            raise InvalidArgument(self._items, reason=reason)
