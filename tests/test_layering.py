"""Each module imports only from modules in rows above it (docs/DESIGN.md module map)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dockerdrag"

# Rank of each module: a module may import only modules of a strictly lower rank.
LAYERS: list[set[str]] = [
    {
        "errors",
        "osfiles",
        "os_copies",
        "human_units",
        "safe_text",
        "user_numbers",
        "closing",
        "media_types",
        "parameter_docs",
        "disk_threads",
        "tls_buffers",
        "connections_ahead",
        "docker_options",
        "arriving_blob",
        "decode_order",
        "ordered_calls",
    },
    {"digest", "platform", "direct_io", "retry", "credentials", "blob_lock", "conventions"},
    {"gojson", "direct_regions", "low_speed", "ca_preload", "range_checks", "blob_body", "events"},
    {
        "reference",
        "manifest",
        "tarwriter",
        "tarstream",
        "request_retries",
        "transfer_options",
        "tls_proxy",
    },
    {
        "tokens",
        "chunk_split",
        "connection_limit",
        "http_failures",
        "redirects",
        "call_progress",
        "client_credentials",
        "image_config",
    },
    {
        "auth",
        "store",
        "layers",
        "image_list",
        "oci_layout",
        "http_session",
        "pull_plan",
        "connection_growth",
    },
    {
        "scheme_probe",
        "cache_use",
        "blob_copy",
        "partial_blob",
        "ranges_sidecar",
        "oci_documents",
        "blob_follow",
        "decoder_worker",
    },
    {"transport", "archive_scan", "lockfile", "outputs", "eventloop", "decoder_processes"},
    {"registry", "upload", "chunked_download", "pull_results", "oci_dir"},
    {"blob_bodies"},
    {"blob_download", "pull_stream", "size_claims"},
    {"download"},
    {"docker_archive", "oci_archive", "verify_layout"},
    {"docker_parallel", "verify"},
    {"archive_images", "recompress", "blob_gate"},
    {"assemble"},
    {"list_pull", "cache_repair", "cache_admin"},
    {"pull_resolve", "pull_assembly"},
    {"pull_inspect", "list_pull_run"},
    {"pull", "push"},
    {"progress_tally"},
    {"progress_json", "progress_plain", "progress_live"},
    {"config", "progress"},
    {"push_progress"},
    {"cli_parser", "cli_credentials", "cli_report", "cli_list"},
    {"cli_session"},
    {"cli_inspect", "cli_verify", "cli_cache"},
    {"cli_pull", "cli_push"},
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


# The modules of the HTTP layer (docs/DESIGN.md): no other module imports aiohttp.
HTTP_MODULES = {
    "transport",
    "http_session",
    "http_failures",
    "redirects",
    "connections_ahead",
    "scheme_probe",
}


def test_only_the_http_modules_use_aiohttp() -> None:
    users = set()
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "aiohttp" for a in node.names):
                users.add(path.stem)
            if isinstance(node, ast.ImportFrom) and node.module == "aiohttp":
                users.add(path.stem)
    assert users <= HTTP_MODULES, users


# Only the OS module (dockerdrag/osfiles.py) may touch these: they are missing or behave
# differently on some system dockerdrag runs on (issue 17).
OS_MODULE = "osfiles"
OS_SPECIFIC_MODULES = {"fcntl", "msvcrt", "ctypes"}
OS_SPECIFIC_OS_NAMES = {
    "pwrite",
    "pread",
    "O_TMPFILE",
    "O_DIRECT",
    "O_DIRECTORY",
    "fchmod",
    "open",  # raw descriptors: O_BINARY on Windows
    "rename",  # never replaces on Windows
    "replace",  # refused while a scanner holds the file on Windows: osfiles.replace retries
}


def os_specific_uses(tree: ast.AST) -> list[str]:
    """Where ``tree`` imports or names one of the OS-specific modules or ``os`` names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                alias.name
                for alias in node.names
                if alias.name.split(".")[0] in OS_SPECIFIC_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top in OS_SPECIFIC_MODULES:
                found.append(node.module)
            elif node.module == "os":
                found += [f"os.{a.name}" for a in node.names if a.name in OS_SPECIFIC_OS_NAMES]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr in OS_SPECIFIC_OS_NAMES:
                found.append(f"os.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            # getattr(os, "O_DIRECT", 0) and the like
            args = node.args
            if (
                node.func.id in {"getattr", "hasattr"}
                and len(args) >= 2
                and isinstance(args[0], ast.Name)
                and args[0].id == "os"
                and isinstance(args[1], ast.Constant)
                and args[1].value in OS_SPECIFIC_OS_NAMES
            ):
                found.append(f"os.{args[1].value}")
    return found


def test_only_the_os_module_makes_os_specific_calls() -> None:
    violations = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == OS_MODULE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        violations += [f"{path.name}: {name}" for name in os_specific_uses(tree)]
    assert not violations, f"use dockerdrag.osfiles instead: {violations}"


def test_the_os_call_check_finds_each_form() -> None:
    source = """
import fcntl
import ctypes.util
from msvcrt import locking
from os import pwrite
import os
os.open("x", os.O_RDONLY | os.O_DIRECTORY)
getattr(os, "O_TMPFILE", 0)
os.replace("a", "b")
os.read(0, 1)
"""
    assert sorted(os_specific_uses(ast.parse(source))) == [
        "ctypes.util",
        "fcntl",
        "msvcrt",
        "os.O_DIRECTORY",
        "os.O_TMPFILE",
        "os.open",
        "os.pwrite",
        "os.replace",
    ]
