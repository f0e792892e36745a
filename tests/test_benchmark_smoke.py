"""Smoke runs of the benchmark harness (``python -m benchmarks --quick``).

Tiny images, one timed run, no docker. The first run: both links (direct and through
the shaping proxy), dockerdrag + skopeo + the floors, against the plain registry. The
second: the TLS + token registry, every contender that talks to a registry, and the
resume figures. They check that the one command runs end to end and writes a report
with a row per contender for every image, registry and link, and the bytes each sent
over time; the numbers themselves are not judged here.
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


def _quick(tmp_path: Path, *options: str) -> str:
    """Run ``--quick`` with one timed run and no warm-up; the report's text."""
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
            *options,
            "--results",
            str(results),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    assert elapsed < 120, f"the quick benchmark took {elapsed:.0f} s"  # did not hang
    return results.read_text()


def _check_bytes_over_time(text: str, title: str, contenders: list[str]) -> None:
    rows = _section_rows(text, f"### {title}: bytes over time")
    assert list(rows) == contenders, (title, list(rows))
    for cells in rows.values():
        assert float(cells["MB sent"]) > 0 and float(cells["to 90% (s)"]) > 0, cells
        assert cells["MB/s per bucket (bucket s)"].endswith("(1)"), cells


def test_quick_benchmark_writes_a_row_per_contender(tmp_path: Path) -> None:
    text = _quick(tmp_path, "--link", "both")
    expected = [
        "dockerdrag",
        "skopeo",
        "curl-floor",
        "decompress-floor",
        "python-floor",
        "python-floor-docker",
        "python-floor-docker-write",
        "native-docker-floor",
    ]
    formats = dockerdrag_formats()
    expected[1:1] = [f"dockerdrag-{f}" for f in ("oci", "oci-dir") if f in formats]
    for image in ("big", "many"):
        for link in ("direct (loopback)", "shaped (proxy)"):
            rows = _section_rows(text, f"### {image}, {link}")
            assert list(rows) == expected, (image, link, list(rows))
            network = [name for name in expected if name != "decompress-floor"]
            _check_bytes_over_time(text, f"{image}, {link}", network)
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
    oci_target = "big / direct / `--format oci`: wall vs curl floor"
    if "oci" in dockerdrag_formats():
        assert targets[oci_target]["floor in this run"].endswith("(CPU floor)"), targets
    docker_target = "many / direct / docker format: wall vs skopeo"
    floor = targets[docker_target]["floor in this run"]
    assert "(native docker floor), " in floor and "(Python docker floor), " in floor, floor
    assert floor.endswith("(writing its archive)"), floor
    assert "docker pull + save not run" in text


def test_quick_benchmark_against_a_tls_token_registry(tmp_path: Path) -> None:
    """Every contender that talks to a registry pulls from the TLS + token one, as a user
    would (its CA, an anonymous token); the resume figures come in the same report."""
    contenders = ["dockerdrag", "skopeo", "curl-floor", "python-floor"]
    text = _quick(
        tmp_path,
        "--images",
        "many",
        "--link",
        "direct",
        "--registry",
        "tls-token",
        "--contenders",
        ",".join([*contenders, "decompress-floor"]),
        "--resume-mb",
        "2",
    )
    title = "many, direct (loopback), TLS + token"
    rows = _section_rows(text, f"### {title}")
    assert list(rows) == contenders  # the decompression floor needs no registry
    assert all(cells["runs ok"] == "1/1" for cells in rows.values()), rows
    _check_bytes_over_time(text, title, contenders)
    targets = _section_rows(
        text, "## Targets (dockerdrag = `--format docker` unless said otherwise)"
    )
    assert targets["many / direct / tls-token / docker format: wall vs skopeo"]["result"] in (
        "PASS",
        "FAIL",
    )
    resume = _section_rows(text, "## Resume: bytes fetched twice (`benchmarks.resume_measure`)")
    assert list(resume) == [
        "drop, one stream",
        "cancel, one stream",
        "cancel, chunked (16 MiB)",
        "sigkill CLI, whole blob",
    ]
    sizes = {int(cells["layer"].replace(",", "")) for cells in resume.values()}
    assert len(sizes) == 1 and sizes.pop() >= 2_000_000, resume


def test_bundle_measure_pulls_the_list_with_each_checkout() -> None:
    """``python -m benchmarks.bundle_measure`` with two images over a short link, once with
    this checkout and once with the same checkout as the baseline: a time for each."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bundle_measure",
            "--images",
            "2",
            "--rtt-ms",
            "10",
            "--runs",
            "1",
            "--baseline-checkout",
            str(ROOT),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    medians = re.findall(r"^(dockerdrag|baseline): median (\d+\.\d+) s", completed.stdout, re.M)
    assert [name for name, _ in medians] == ["dockerdrag", "baseline"]
    assert all(float(seconds) > 0 for _, seconds in medians)
