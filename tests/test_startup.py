"""Start-up stays light: a pull without the live display imports neither rich nor
zstandard (each costs time and memory on every run), and a docker-format pull none of
the modules of the other commands and formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.registry_server import RegistryServer

SeededRegistry = tuple[RegistryServer, dict[str, Any]]

# Imported only when needed: rich for the live display on a terminal, zstandard for
# zstd layers. (bz2 and lzma are deferred too, but shutil imports them anyway.)
DEFERRED = ("rich", "zstandard")

REPORT_MODULES = """\
import json, sys
from dockerdrag.cli import main
try:
    code = main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as report:
        json.dump(sorted(sys.modules), report)
sys.exit(code)
"""


def modules_after(*args: str, cwd: Path) -> set[str]:
    """The modules loaded by the command line run with ``args`` (not in a terminal)."""
    report = cwd / "modules.json"
    completed = subprocess.run(
        [sys.executable, "-c", REPORT_MODULES, str(report), *args],
        cwd=cwd,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("DOCKERDRAG_")},
            "XDG_CACHE_HOME": str(cwd / ".xdg-cache"),
            "DOCKER_CONFIG": str(cwd),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return set(json.loads(report.read_text()))


def deferred_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in DEFERRED)


def test_help_imports_no_deferred_module(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", REPORT_MODULES, str(tmp_path / "m.json"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert deferred_in(set(json.loads((tmp_path / "m.json").read_text()))) == []


def modules_after_pull(seeded: SeededRegistry, cwd: Path, *display: str) -> set[str]:
    """The modules a CLI pull of busybox from the seeded registry had imported."""
    server, images = seeded
    reference = images["busybox"].reference
    return modules_after(
        "pull", reference, "--insecure", server.host, "-o", "x.tar", *display, cwd=cwd
    )


@pytest.mark.parametrize("display", [["--quiet"], ["--json"], ["--progress", "plain"]])
def test_a_pull_without_the_live_display_imports_no_deferred_module(
    seeded_registry: SeededRegistry, tmp_path: Path, display: list[str]
) -> None:
    modules = modules_after_pull(seeded_registry, tmp_path, *display)
    assert "dockerdrag.pull" in modules
    assert deferred_in(modules) == []


# What a docker-format pull of images named on the command line never needs: the other
# commands (push, verify, cache, inspect and platforms), the list pull (-f, --locked), the
# event iterator of the API (Puller.pull_events), the other formats (oci, oci-dir) and the
# live display.
NOT_FOR_A_DOCKER_PULL = (
    "push",
    "upload",
    "push_progress",
    "archive_images",
    "recompress",
    "verify",
    "verify_layout",
    "archive_scan",
    "cache_admin",
    "pull_inspect",
    "list_pull",
    "list_pull_run",
    "pull_stream",
    "oci_archive",
    "oci_dir",
    "oci_documents",
    "oci_layout",
    "blob_copy",
    "progress_live",
)


def test_a_docker_pull_imports_only_what_it_uses(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    modules = modules_after_pull(seeded_registry, tmp_path, "--quiet")
    assert {"dockerdrag.pull", "dockerdrag.docker_archive"} <= modules
    unused = [f"dockerdrag.{name}" for name in NOT_FOR_A_DOCKER_PULL]
    assert sorted(modules.intersection(unused)) == []


# What a pull in the oci format never needs: the docker writer.
NOT_FOR_AN_OCI_PULL = ("docker_archive", "docker_parallel", "decoder_processes")


def test_an_oci_pull_imports_no_docker_writer(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    modules = modules_after_pull(seeded_registry, tmp_path, "--quiet", "--format", "oci")
    assert {"dockerdrag.pull", "dockerdrag.oci_archive"} <= modules
    unused = [f"dockerdrag.{name}" for name in NOT_FOR_AN_OCI_PULL]
    assert sorted(modules.intersection(unused)) == []


IMPORT_AHEAD = """\
import sys
from dockerdrag.assemble import import_docker_writer_ahead
thread = import_docker_writer_ahead()
assert thread is not None, "the docker writer was imported already"
thread.join()
assert "dockerdrag.docker_parallel" in sys.modules
assert "dockerdrag.docker_archive" in sys.modules
assert import_docker_writer_ahead() is None  # imported: nothing more to start
"""


def test_the_docker_writer_can_be_imported_ahead_in_a_thread(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_AHEAD],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr


def test_the_live_display_still_loads_rich(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    modules = modules_after_pull(seeded_registry, tmp_path, "--progress", "tty")
    assert "rich.progress" in modules


def test_the_command_has_one_way_in() -> None:
    """``python -m dockerdrag`` and the ``dockerdrag`` script both run
    startup.run_command_and_exit; no other module runs the command itself, skipping the
    start-up preparation."""
    package = Path(__file__).resolve().parent.parent / "dockerdrag"
    runs_itself = [
        path.name
        for path in sorted(package.glob("*.py"))
        if path.name != "__main__.py" and 'if __name__ == "__main__":' in path.read_text()
    ]
    assert runs_itself == []


# Runs the command as ``python -m dockerdrag`` and the ``dockerdrag`` script do (argv[1]:
# "run"), or returns from cli.main and lets the interpreter end ("main"); an atexit
# handler of the interpreter's teardown says whether it ran.
EXIT_PROBE = """\
import atexit, sys
atexit.register(print, "interpreter teardown ran", file=sys.stderr)
way, sys.argv = sys.argv[1], ["dockerdrag", *sys.argv[2:]]
if way == "run":
    from dockerdrag.__main__ import run
    run()
else:
    from dockerdrag.cli import main
    sys.exit(main())
"""


def run_exit_probe(way: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The probe run with ``args``; its stdout a pipe, buffered as for a user's pipe."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-c", EXIT_PROBE, way, *args],
        cwd=cwd,
        env={**environ, "XDG_CACHE_HOME": str(cwd / ".xdg-cache")},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_ends_without_the_teardown_its_output_flushed(tmp_path: Path) -> None:
    ended = run_exit_probe("run", "help", "pull", cwd=tmp_path)
    returned = run_exit_probe("main", "help", "pull", cwd=tmp_path)
    assert ended.returncode == returned.returncode == 0
    assert "interpreter teardown ran" in returned.stderr
    assert "interpreter teardown ran" not in ended.stderr
    assert "exit codes:" in ended.stdout
    assert ended.stdout == returned.stdout


def test_a_failed_command_ends_through_the_interpreters_exit(tmp_path: Path) -> None:
    ended = run_exit_probe("run", "pull", "Bad Ref!", "-o", str(tmp_path / "x.tar"), cwd=tmp_path)
    assert ended.returncode == 2
    assert "invalid reference 'Bad Ref!'" in ended.stderr
    assert "interpreter teardown ran" in ended.stderr
