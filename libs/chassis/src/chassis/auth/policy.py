"""Which scopes each RPC requires, read from the contracts' ``astra.auth.v1.access`` option."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from astra.auth.v1 import annotations_pb2
from google.protobuf.descriptor import ServiceDescriptor


class UndeclaredAccess(ValueError):
    """A served method states no access rule, or a contradictory one."""


@dataclass(frozen=True, slots=True)
class MethodRule:
    allow_unauthenticated: bool
    required_scopes: frozenset[str]


def rule_of(method: object) -> MethodRule:
    options = method.GetOptions()  # type: ignore[attr-defined]
    name = method.full_name  # type: ignore[attr-defined]
    if not options.HasExtension(annotations_pb2.access):
        raise UndeclaredAccess(f"{name} declares no (astra.auth.v1.access) option")
    access = options.Extensions[annotations_pb2.access]
    if access.allow_unauthenticated and access.required_scopes:
        raise UndeclaredAccess(f"{name} is open yet requires scopes")
    return MethodRule(access.allow_unauthenticated, frozenset(access.required_scopes))


class AccessPolicy:
    """Rules by gRPC method path (``/astra.ledger.v1.LedgerService/GetAccount``)."""

    def __init__(self, rules: Mapping[str, MethodRule]) -> None:
        self._rules = dict(rules)

    @classmethod
    def for_services(cls, *services: ServiceDescriptor) -> AccessPolicy:
        """Every method of ``services``; fails if one declares no rule (deny by default)."""
        rules = {
            f"/{service.full_name}/{method.name}": rule_of(method)
            for service in services
            for method in service.methods
        }
        return cls(rules)

    def rule_for(self, method_path: str) -> MethodRule | None:
        return self._rules.get(method_path)

    @property
    def methods(self) -> Mapping[str, MethodRule]:
        return dict(self._rules)


def contract_services(package: str = "astra") -> Iterator[ServiceDescriptor]:
    """Every service in the generated contracts (each ``*_pb2`` module under ``package``)."""
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(info.name)
            yield from module.DESCRIPTOR.services_by_name.values()


def declared_scopes(services: Iterable[ServiceDescriptor] | None = None) -> set[str]:
    """The scopes the contracts require somewhere (by default: all of them)."""
    chosen = contract_services() if services is None else services
    scopes: set[str] = set()
    for service in chosen:
        for method in service.methods:
            try:
                scopes |= rule_of(method).required_scopes
            except UndeclaredAccess:
                continue  # a contract still without rules adds no scope
    return scopes
