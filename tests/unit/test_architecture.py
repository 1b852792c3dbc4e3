"""Dependencies point inward: domains and the shared kernel import no framework."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
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


# --- no import cycles between packages ----------------------------------------------------

SOURCE_ROOTS = [ROOT / "libs/chassis/src", *sorted(ROOT.glob("services/*/src"))]


def source_modules() -> dict[str, Path]:
    """Every module of the chassis and the services, by dotted name."""
    modules = {}
    for root in SOURCE_ROOTS:
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def package_of(module: str) -> str:
    """What a module belongs to: ``chassis.db``, ``ledger.domain``, ``chassis.metrics``..."""
    return ".".join(module.split(".")[:2])


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The known modules ``module`` imports anywhere in its source (functions and
    TYPE_CHECKING blocks included: a dependency is a dependency)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # ``from chassis import tracing`` imports the module chassis.tracing.
            candidates = [origin, *(f"{origin}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in candidates:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the imports that make the edge (``a.b -> c.d``)."""
    modules = source_modules()
    known = set(modules)
    graph: dict[str, dict[str, list[str]]] = {package_of(m): {} for m in modules}
    for module, path in modules.items():
        for imported in imports_of(module, path, known):
            source, target = package_of(module), package_of(imported)
            if source != target:
                graph[source].setdefault(target, []).append(f"{module} -> {imported}")
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_cycle_finder_finds_cycles_and_only_cycles() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": ["e"], "e": ["d"], "f": ["a"]}
    assert cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert cycles({"a": ["b"], "b": ["c"], "c": []}) == []


def test_the_package_graph_sees_relative_and_from_imports() -> None:
    graph = package_graph()
    assert "chassis.tracing" in graph["chassis.grpc"]  # from chassis.tracing import ...
    assert "ledger.service_layer" in graph["ledger.entrypoints"]
    assert "ledger.domain" in graph["ledger.service_layer"]


@pytest.mark.parametrize(
    "root", ["chassis", *sorted(p.parent.name for p in ROOT.glob("services/*/src/*/__init__.py"))]
)
def test_no_import_cycle_between_packages(root: str) -> None:
    """Packages of the chassis (chassis.grpc, chassis.db, chassis.metrics...) and layers of a
    context (domain, service_layer, adapters, entrypoints, bootstrap) depend one way."""
    graph = package_graph()
    report = []
    for component in cycles(graph):
        if component[0].split(".")[0] != root:
            continue
        edges = [
            f"  {source} -> {target}: {', '.join(sorted(graph[source][target])[:3])}"
            for source in component
            for target in component
            if target in graph[source]
        ]
        report.append(" <-> ".join(component) + "\n" + "\n".join(edges))
    assert report == [], "import cycles:\n" + "\n".join(report)


# --- bootstraps only wire -----------------------------------------------------------------

SQL_KEYWORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|TRUNCATE|LOCK|pg_[a-z_]+)\b"
)
RUNTIME_MODULES = ("threading", "concurrent", "multiprocessing", "asyncio", "sched")
SQL_BUILDERS = {"text", "select", "insert", "update", "delete", "func", "literal_column"}


def bootstraps() -> list[Path]:
    return sorted(ROOT.glob("services/*/src/*/bootstrap.py"))


def runtime_work_in(path: Path) -> list[str]:
    """Loops, threads, SQL and behaviour in a module that should only wire.

    The running service's parts (``Ledger``, ``Payments``...) are held, not acted
    on: their only method is ``close`` (properties aside).
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if (
                    isinstance(item, ast.FunctionDef)
                    and item.name != "close"
                    and not item.name.startswith("__")
                    and not any(
                        isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list
                    )
                ):
                    found.append(f"line {item.lineno}: {node.name}.{item.name}() acts")
        elif isinstance(node, ast.While):
            found.append(f"line {line}: a while loop")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for name in names:
                if name.split(".")[0] in RUNTIME_MODULES:
                    found.append(f"line {line}: imports {name}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                builders = {alias.name for alias in node.names} & SQL_BUILDERS
                found += [f"line {line}: imports sqlalchemy's {name}" for name in sorted(builders)]
        elif isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            called = node.func.id if isinstance(node.func, ast.Name) else called
            if called in {"Thread", "text", "sleep"}:
                found.append(f"line {line}: calls {called}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            keyword = SQL_KEYWORDS.search(node.value)
            if keyword:
                found.append(f"line {line}: SQL in a string ({keyword.group()})")
    return found


def test_every_context_has_a_bootstrap_to_check() -> None:
    assert {p.parent.name for p in bootstraps()} >= {"identity", "ledger", "payments"}


@pytest.mark.parametrize("path", bootstraps(), ids=lambda p: str(p.relative_to(ROOT)))
def test_bootstrap_only_wires(path: Path) -> None:
    """No loops, threads or SQL: workers live in the entrypoints, SQL in the adapters."""
    assert runtime_work_in(path) == []


def test_the_bootstrap_check_sees_loops_threads_and_sql(tmp_path: Path) -> None:
    sample = tmp_path / "bootstrap.py"
    sample.write_text(
        "import threading\n"
        "from sqlalchemy import Engine, text\n"
        "def loop(engine: Engine) -> None:\n"
        "    threading.Thread(target=print).start()\n"
        "    while True:\n"
        "        engine.connect().execute(text('SELECT pg_try_advisory_lock(1)'))\n"
        "class App:\n"
        "    @property\n"
        "    def uow(self) -> None: ...\n"
        "    def start_workers(self) -> None: ...\n"
        "    def close(self) -> None: ...\n"
    )
    found = runtime_work_in(sample)
    assert len(found) == 7, found
    assert "line 10: App.start_workers() acts" in found


# --- service layers orchestrate: one call, one step; the loops are the entrypoints' -----------

# Modules that run or wait on things; of ``threading``, only the locks are let in:
# guarding shared state runs nothing.
THREAD_MODULES = {"concurrent", "multiprocessing", "asyncio", "sched", "chassis.background"}
STATE_GUARDS = {"Lock", "RLock"}


def runs_things(module: str) -> bool:
    return any(module == m or module.startswith(f"{m}.") for m in THREAD_MODULES)


THREAD_STARTERS = {"Thread", "Timer", "ThreadPoolExecutor", "ProcessPoolExecutor", "sleep"}


def threads_in(path: Path) -> list[str]:
    """Threads, executors, sleeps, waits and loops in a module whose functions each do one
    step (``chassis.background``'s workers included: they are threads too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.While):
            found.append(f"line {line}: a while loop")
        elif isinstance(node, ast.Import):
            found += [
                f"line {line}: imports {alias.name}"
                for alias in node.names
                if runs_things(alias.name)
            ]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module == "threading":
                found += [
                    f"line {line}: imports threading's {alias.name}"
                    for alias in node.names
                    if alias.name not in STATE_GUARDS
                ]
            elif runs_things(module):
                found.append(f"line {line}: imports {module}")
        elif isinstance(node, ast.Attribute):
            if (
                isinstance(node.value, ast.Name)
                and node.value.id == "threading"
                and node.attr not in STATE_GUARDS
            ):
                found.append(f"line {line}: uses threading.{node.attr}")
        elif isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            called = node.func.id if isinstance(node.func, ast.Name) else called
            if called in THREAD_STARTERS:
                found.append(f"line {line}: calls {called}()")
    return found


@pytest.mark.parametrize("service_layer", service_layers(), ids=lambda p: p.parent.name)
def test_a_service_layer_starts_no_threads_and_runs_no_loops(service_layer: Path) -> None:
    """Use cases are called (by a servicer, a subscriber, a worker's loop) and return:
    threads, pools and loops live in the entrypoints."""
    offenders = [
        f"{source.relative_to(ROOT)} {finding}"
        for source in sorted(service_layer.rglob("*.py"))
        for finding in threads_in(source)
    ]
    assert offenders == []


def test_the_thread_check_sees_threads_pools_waits_and_loops(tmp_path: Path) -> None:
    sample = tmp_path / "rounds.py"
    sample.write_text(
        "import threading\n"
        "import time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from threading import Event, Lock\n"
        "from chassis.background import Periodic\n"
        "GUARD = threading.Lock()\n"
        "def loop() -> None:\n"
        "    threading.Thread(target=print).start()\n"
        "    while not Event().wait(1):\n"
        "        time.sleep(1)\n"
    )
    assert sorted(threads_in(sample)) == [
        "line 10: calls sleep()",
        "line 3: imports concurrent.futures",
        "line 4: imports threading's Event",
        "line 5: imports chassis.background",
        "line 8: calls Thread()",
        "line 8: uses threading.Thread",
        "line 9: a while loop",
    ]
