"""Dependencies point inward: domains and the shared kernel import no framework."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("grpc", "google", "sqlalchemy", "psycopg", "alembic", "astra", "httpx", "structlog")


def pure_packages() -> list[Path]:
    found = [ROOT / "libs/chassis/src/chassis/kernel"]
    found += sorted(p for p in (ROOT / "services").glob("*/src/*/domain") if p.is_dir())
    return found


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", pure_packages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_packages_import_no_framework(package: Path) -> None:
    offenders = []
    for source in sorted(package.rglob("*.py")):
        for module in imported_modules(source):
            if module.split(".")[0] in FORBIDDEN:
                offenders.append(f"{source.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_the_ledger_domain_is_among_the_checked_packages() -> None:
    assert ROOT / "services/ledger/src/ledger/domain" in pure_packages()


def test_services_never_import_each_other() -> None:
    services = {p.name for p in (ROOT / "services").iterdir() if (p / "src").is_dir()}
    packages = {
        s: {q.name for q in (ROOT / "services" / s / "src").iterdir() if q.is_dir()}
        for s in services
    }
    offenders = []
    for service, own in packages.items():
        others = set().union(*(pkgs for s, pkgs in packages.items() if s != service))
        for source in (ROOT / "services" / service / "src").rglob("*.py"):
            for module in imported_modules(source):
                if module.split(".")[0] in others - own:
                    offenders.append(f"{source.relative_to(ROOT)} imports {module}")
    assert offenders == []


def service_layers() -> list[Path]:
    return sorted(p for p in (ROOT / "services").glob("*/src/*/service_layer") if p.is_dir())


@pytest.mark.parametrize("service_layer", service_layers(), ids=lambda p: p.parent.name)
def test_a_service_layer_never_imports_its_adapters_or_entrypoints(service_layer: Path) -> None:
    context = service_layer.parent.name
    outer = (f"{context}.adapters", f"{context}.entrypoints", f"{context}.bootstrap")
    offenders = []
    for source in sorted(service_layer.rglob("*.py")):
        offenders += [
            f"{source.relative_to(ROOT)} imports {module}"
            for module in imported_modules(source)
            if module in outer or module.startswith(tuple(f"{o}." for o in outer))
        ]
        # A relative import would pass unseen: there are none, and none may come.
        tree = ast.parse(source.read_text(), filename=str(source))
        if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)):
            offenders.append(f"{source.relative_to(ROOT)} has a relative import")
    assert offenders == []


def test_every_context_with_a_service_layer_is_checked() -> None:
    assert {p.parent.name for p in service_layers()} >= {"identity", "ledger", "payments"}
