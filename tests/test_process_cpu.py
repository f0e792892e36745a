"""The pull's CPU time counts its running child processes (the docker writer's decoder
processes) where the system lists them (Linux's /proc), and is the process's own elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dockerdrag import process_cpu

# Spins until it has used 0.3 CPU seconds, says so, then waits for stdin to close.
BURNER = """\
import sys, time
while time.process_time() < 0.3:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="no /proc to list children")
def test_a_running_child_process_counts() -> None:
    before = process_cpu.cpu_seconds()
    own_before = time.process_time()
    child = subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "burnt\n"
        counted = process_cpu.cpu_seconds() - before
        own = time.process_time() - own_before
        assert counted - own >= 0.25  # the child's 0.3 s, at the clock tick's resolution
    finally:
        child.communicate("")
    # Once it has ended it is no longer counted.
    assert process_cpu.cpu_seconds() - before < counted


def test_without_proc_it_is_this_process_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_cpu, "_TASKS", str(tmp_path / "missing"))
    child = subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "burnt\n"
        own = time.process_time()
        counted = process_cpu.cpu_seconds()
        assert 0 <= counted - own < 0.05
    finally:
        child.communicate("")


def test_a_stat_line_with_spaces_and_parentheses_in_the_command_name() -> None:
    after_name = ["S", *["0"] * 10, "250", "150", *["0"] * 37]  # utime, stime: fields 14, 15
    line = f"4242 (a b) c) {' '.join(after_name)}\n"
    ticks = process_cpu._TICKS_PER_SECOND
    assert process_cpu._child_seconds(line) == pytest.approx(400 / ticks)
    assert process_cpu._child_seconds("") == 0.0
