"""The repository layout DESIGN.md promises, and the plane boundaries STYLE.md asks for."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from mlplat._pyast import parse_source

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "platform" / "mlplat"
PLANES = {"data", "experiment", "training", "deployment", "monitoring", "governance"}


def test_top_level_layout() -> None:
    for folder in ["platform", "apps", "cluster", "jobs", "terraform", "tests", "bench", "docs"]:
        assert (REPO / folder).is_dir(), folder
    for file in ["pyproject.toml", "platform.yaml", "Makefile", "README.md", ".ci/run"]:
        assert (REPO / file).is_file(), file
    assert not (REPO / "platform" / "__init__.py").exists()
    for plane in PLANES:
        assert (PKG / plane / "__init__.py").is_file(), plane
        assert (REPO / "docs" / "contracts" / f"{plane}.md").is_file(), plane


def test_stdlib_platform_is_not_shadowed_from_repo_root() -> None:
    code = "import platform, mlplat; print(platform.system(), platform.python_version())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] in {"Linux", "Darwin", "Windows"}


def _imports(path: Path) -> list[str]:
    tree = parse_source(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_planes_import_each_other_only_through_public_apis() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        own = rel[0] if rel[0] in PLANES else None
        for name in _imports(path):
            parts = name.split(".")
            if len(parts) >= 3 and parts[0] == "mlplat" and parts[1] in PLANES:
                if parts[1] != own and parts[2].startswith("_"):
                    offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert offenders == []


def test_platform_actor_names_live_in_one_module() -> None:
    """Every plane that calls a platform actor imports its name from mlplat.cluster: a name
    retyped as a literal elsewhere drifts (a renamed actor that one caller still looks up)."""
    from mlplat import cluster

    names = {v for k, v in vars(cluster).items() if k.endswith("_ACTOR") and isinstance(v, str)}
    assert len(names) >= 5
    home = PKG / "cluster" / "_actors.py"
    offenders = [f"{path.relative_to(REPO)}: {name}" for path in PKG.rglob("*.py")
                 if path != home for name in names if f'"{name}"' in path.read_text()]
    assert offenders == []


def _package_graph() -> dict[str, dict[str, list[str]]]:
    """package → imported package → where (file:line), from every import in the package's
    files, function-level ones included. A package is mlplat's first-level name (a plane,
    ``audit``, ``cluster``, ``config`` …)."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        src = rel.parts[0].removesuffix(".py")
        for node in ast.walk(parse_source(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                if parts[0] == "mlplat" and len(parts) > 1 and parts[1] != src:
                    graph.setdefault(src, {}).setdefault(parts[1], []).append(
                        f"{rel}:{node.lineno}")
    return graph


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected groups of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_packages_function_level_imports_included() -> None:
    graph = _package_graph()
    assert {"deployment", "audit", "cluster", "governance"} <= set(graph)  # it sees them all
    cycles = _cycles(graph)
    where = {f"{a} -> {b}": graph[a][b][:3] for group in cycles for a in group
             for b in graph.get(a, {}) if b in group}
    assert cycles == [], where


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": ["x"]}}) == []
