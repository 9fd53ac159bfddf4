"""No import circle in the runtime package: every import statement counts (``TYPE_CHECKING`` and function-level too)."""

from __future__ import annotations

import ast
from pathlib import Path

import airflow_provider_smartmca

PACKAGE = Path(airflow_provider_smartmca.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Runtime module -> the runtime modules it imports (``testing`` and ``examples`` left out)."""
    files = {_module(p): p for p in PACKAGE.rglob("*.py") if not {"testing", "examples"} & set(p.parts)}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def circles(graph: dict[str, set[str]], modules: list[str]) -> list[tuple[str, str]]:
    """Every import edge ``(a, b)`` from one of ``modules`` whose target imports ``a`` back."""
    return [(a, b) for a in modules for b in sorted(graph[a]) if reaches(graph, b, a)]


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        current = todo.pop()
        if current == goal:
            return True
        if current not in seen:
            seen.add(current)
            todo.extend(graph[current])
    return False


def test_no_client_module_imports_itself_back():
    graph = import_graph()
    client = [name for name in graph if name.startswith("airflow_provider_smartmca.client.")]
    assert len(client) >= 7
    assert circles(graph, client) == []


def test_no_runtime_module_imports_itself_back():
    """Hooks, triggers, operators, sensors too: a package import (``from pkg import mod``) counts as
    importing the package's ``__init__``, which may import the importer back. start_once is typed
    against a small protocol, not the hook, so neither imports the other back."""
    graph = import_graph()
    runtime = sorted(graph)
    assert {"airflow_provider_smartmca.hooks.smartmca", "airflow_provider_smartmca.triggers.events"} <= set(
        runtime
    )
    assert circles(graph, runtime) == []
