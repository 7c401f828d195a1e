"""The arrows of docs/ARCHITECTURE.md, read from the source (its import statements, no import run).

Why: the map is only worth something while the code keeps to it; a cycle or an arrow the wrong way
would otherwise come back one convenient import at a time."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "calsync"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module the file imports, at any depth (lazy imports inside functions count too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


MODULES = {_module_name(path): path for path in SRC.rglob("*.py")}
IMPORTS = {name: set(_imports(path)) for name, path in MODULES.items()}


def _calsync_deps(name: str) -> set[str]:
    """calsync modules `name` imports (a `from package import name` counts as the submodule when there
    is one, else as the package)."""
    return {dep for dep in IMPORTS[name] if dep in MODULES and dep != name}


def _imports_any(name: str, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(dep for dep in IMPORTS[name] if dep.startswith(prefixes))


def test_no_module_imports_itself_back_through_others() -> None:
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(_calsync_deps(module)):
            if MODULES[dep].name == "__init__.py" and module.startswith(dep + "."):
                continue  # a module naming its own package (`from pkg import sub`): the parent is loaded first
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep):], dep] if dep in path else [module, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_engine_imports_neither_http_nor_the_service_nor_the_cli() -> None:
    found = {name: _imports_any(name, ("httpx", "calsync.service", "calsync.cli", "fastapi", "uvicorn"))
             for name in MODULES if name.startswith("calsync.engine")}
    assert {name: deps for name, deps in found.items() if deps} == {}


def test_the_planner_is_pure() -> None:
    """engine/page_plan.py decides without the store: no SQL, no connection, no provider."""
    deps = IMPORTS["calsync.engine.page_plan"]
    forbidden = ("sqlalchemy", "httpx", "calsync.providers", "calsync.engine.page_store")
    assert not [d for d in deps if d.startswith(forbidden)]
    assert {d for d in deps if d.startswith("calsync.store")} <= {
        "calsync.store.events", "calsync.store.events.event_columns", "calsync.store.links",
        "calsync.store.links.LinkedEvent"}, "only the LinkedEvent value and the column mapping"


def test_providers_and_conferencing_never_import_the_engine_or_the_store() -> None:
    found = {name: _imports_any(name, ("calsync.engine", "calsync.store", "calsync.service", "calsync.cli"))
             for name in MODULES if name.startswith(("calsync.providers", "calsync.conferencing"))}
    assert {name: deps for name, deps in found.items() if deps} == {}


def test_emulators_import_nothing_of_calsync_but_model_helpers_and_themselves() -> None:
    """So they can be lifted out and run alone. One exception, on purpose: confhook is the executable
    reference of calsync's own signed webhook protocol, and takes it from conferencing/webhook.py."""
    allowed = {"calsync.emulators.confhook": ("calsync.conferencing.webhook",)}
    found = {name: [d for d in _imports_any(name, ("calsync.",))
                    if not d.startswith(("calsync.emulators", "calsync.model", *allowed.get(name, ())))]
             for name in MODULES if name.startswith("calsync.emulators")}
    assert {name: deps for name, deps in found.items() if deps} == {}


def test_outbound_webhooks_stay_beside_the_engine() -> None:
    """calsync.hooks (delivery, signing, URL checks) reads the store; it never reaches into the engine, the
    service or the CLI, and the engine never sends webhooks itself (a slow receiver must not hold a sync)."""
    found = {name: _imports_any(name, ("calsync.engine", "calsync.service", "calsync.cli"))
             for name in MODULES if name.startswith("calsync.hooks")}
    assert {name: deps for name, deps in found.items() if deps} == {}
    engine = {name: _imports_any(name, ("calsync.hooks",)) for name in MODULES if name.startswith("calsync.engine")}
    assert {name: deps for name, deps in engine.items() if deps} == {}
