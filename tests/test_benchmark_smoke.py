"""Smoke run of the benchmark harness (``python -m benchmarks --quick``).

Tiny images, one timed run, both links (direct and through the shaping proxy),
dockerdrag + skopeo + the two floors, no docker. It checks that the one command runs
end to end and writes a report with a row per contender for every image and link;
the numbers themselves are not judged here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.contenders import dockerdrag_formats

ROOT = Path(__file__).resolve().parent.parent


def _section_rows(text: str, title: str) -> dict[str, dict[str, str]]:
    """first cell -> {column header: cell} of the table under the heading ``title``."""
    start = text.index(f"{title}\n")
    end = text.find("\n#", start + 4)
    lines = [line for line in text[start:end].splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_quick_benchmark_writes_a_row_per_contender(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--link",
            "both",
            "--results",
            str(results),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    assert elapsed < 60, f"the quick benchmark took {elapsed:.0f} s"

    text = results.read_text()
    expected = [
        "dockerdrag",
        "skopeo",
        "curl-floor",
        "decompress-floor",
        "python-floor",
        "python-floor-docker",
    ]
    if "oci" in dockerdrag_formats():
        expected.insert(1, "dockerdrag-oci")
    for image in ("big", "many"):
        for link in ("direct (loopback)", "shaped (proxy)"):
            rows = _section_rows(text, f"### {image}, {link}")
            assert list(rows) == expected, (image, link, list(rows))
            for name, cells in rows.items():
                assert cells["runs ok"] == "1/1", f"{image}/{link} {name} failed: {cells}"
                for measured in ("wall median (s)", "registry CPU (s)", "cores busy"):
                    assert re.fullmatch(r"\d+\.\d\d", cells[measured]), cells
                if link.startswith("shaped") and name != "decompress-floor":
                    assert int(cells["connections"]) >= 1, cells  # through the proxy
    floors = _section_rows(text, "## The CPU floor of a verified pull (direct link)")
    assert list(floors) == ["big", "many"]
    for cells in floors.values():
        assert cells["cores"].isdigit() and float(cells["least wall (s)"]) >= 0, cells
    targets = _section_rows(
        text, "## Targets (dockerdrag = `--format docker` unless said otherwise)"
    )
    oci_target = "big / direct / oci format: wall vs curl floor"
    if "oci" in dockerdrag_formats():
        assert targets[oci_target]["floor in this run"].endswith("(CPU floor)"), targets
    docker_target = "many / direct / docker format: wall vs skopeo"
    assert targets[docker_target]["floor in this run"].endswith("(Python docker floor)")
    assert "docker pull + save not run" in text
