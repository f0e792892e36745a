"""Each module imports only from modules in rows above it (docs/DESIGN.md module map)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dockerdrag"

# Rank of each module: a module may import only modules of a strictly lower rank.
LAYERS: list[set[str]] = [
    {"errors"},
    {"digest", "platform", "direct_io", "retry", "credentials"},
    {"gojson"},
    {"reference", "manifest", "tarwriter", "events", "tokens"},
    {"auth", "store", "layers"},
    {"transport"},
    {"registry"},
    {"download"},
    {"docker_archive", "oci_archive"},
    {"docker_parallel"},
    {"assemble"},
    {"pull"},
    {"config", "progress"},
    {"cli_parser", "cli_credentials", "cli_report"},
    {"cli_session"},
    {"cli_inspect"},
    {"cli_pull"},
    {"cli"},
    {"startup"},
    {"__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def internal_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dockerdrag."):
            found.add((node.module or "").split(".")[1])
    return found


def test_every_module_has_a_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules <= set(RANK), f"add to LAYERS: {sorted(modules - set(RANK))}"


def test_modules_import_only_lower_layers() -> None:
    violations = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "__init__":
            continue
        for imported in internal_imports(path):
            if imported == "__version__":
                continue
            if imported in RANK and RANK[imported] >= RANK[path.stem]:
                violations.append(f"{path.stem} imports {imported}")
    assert not violations, violations


def test_only_transport_and_auth_use_aiohttp() -> None:
    users = set()
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "aiohttp" for a in node.names):
                users.add(path.stem)
            if isinstance(node, ast.ImportFrom) and node.module == "aiohttp":
                users.add(path.stem)
    assert users <= {"transport", "auth"}, users
