"""The benchmark's timing of a command sequence (benchmarks/measure.py): what it adds up."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from benchmarks import measure
from benchmarks.measure import Usage, run_sequence


def _fake_runs(monkeypatch: pytest.MonkeyPatch, usages: list[Usage]) -> list[list[str]]:
    """Make run_measured hand out ``usages`` in turn; the commands it was given."""
    ran: list[list[str]] = []

    def run_measured(argv: Sequence[str], **_options: object) -> Usage:
        ran.append(list(argv))
        return usages[len(ran) - 1]

    monkeypatch.setattr(measure, "run_measured", run_measured)
    return ran


def test_a_sequence_costs_what_its_commands_cost_as_the_launcher_measured_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_runs(monkeypatch, [Usage(1.25, 0.5, 100, 0), Usage(2.5, 1.0, 300, 0)])
    usage = run_sequence([["a"], ["b"]], log=tmp_path / "log")
    assert usage == Usage(3.75, 1.5, 300, 0)


def test_a_sequence_stops_at_its_first_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran = _fake_runs(monkeypatch, [Usage(1.0, 0.25, 50, 3), Usage(9.0, 9.0, 900, 0)])
    usage = run_sequence([["a"], ["b"]], log=tmp_path / "log")
    assert ran == [["a"]]
    assert usage == Usage(1.0, 0.25, 50, 3)


def test_the_launcher_reports_the_commands_own_exit_code_and_time(tmp_path: Path) -> None:
    usage = measure.run_measured(["sh", "-c", "exit 7"], log=tmp_path / "log")
    assert usage.returncode == 7
    assert usage.wall > 0 and usage.max_rss_kb > 0
