"""The package's shape: no module imports itself back through others (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "registry"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Registry modules ``path`` imports anywhere (module level or in functions), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imports_of(path, modules) for path in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
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
            connect(node)
    return found


def test_no_module_imports_itself_back() -> None:
    # A package __init__ re-exporting its children is not a cycle of behaviour: leave packages' own children out.
    graph = {module: {target for target in targets if not target.startswith(module + ".")}
             for module, targets in import_graph().items()}
    graph = {module: {target for target in targets if not module.startswith(target + ".")}
             for module, targets in graph.items()}
    assert cycles(graph) == []


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_docs_architecture_names_every_module() -> None:
    """docs/architecture.md stays true: each module of the package (and each subpackage) has its line."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [path.name for path in sorted(PACKAGE.glob("*.py"))
               if path.name not in ("__init__.py", "__main__.py", "_lazy.py") and f"`{path.name}`" not in text
               and f"`{path.stem}.py`" not in text and f"{path.name}`" not in text]
    missing += [f"{path.name}/" for path in sorted(PACKAGE.iterdir())
                if path.is_dir() and (path / "__init__.py").exists() and f"`{path.name}/`" not in text]
    assert missing == []


def test_the_cli_uses_the_facades_only() -> None:
    """No ``cfreg`` command reaches into a registry's context (or opens sessions) itself."""
    offenders = [f"{path.name}:{number}" for path in sorted((PACKAGE / "cli").glob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if ".context." in line or ".context)" in line or "._ctx" in line or "Session" in line]
    assert offenders == []


def test_the_web_pages_and_api_use_the_facades_only() -> None:
    """The dashboards ask ``ModelRegistry`` (leaderboard pages, metric names, chart series), not its context."""
    offenders = [f"{path.name}:{number}" for path in sorted((PACKAGE / "web").glob("*.py")) if path.name != "service.py"
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if ".context" in line or "._ctx" in line or "Session" in line]
    offenders += [f"service.py:{number}" for number, line in
                  enumerate((PACKAGE / "web" / "service.py").read_text(encoding="utf-8").splitlines(), 1)
                  if "leaderboard" in line and "context" in line]
    assert offenders == []
