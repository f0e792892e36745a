"""The command's progress while a pull is under way, and after an interrupted one.

The live display runs in a pseudo-terminal; its output is read as it comes, each
piece with the time it arrived, and replayed through a terminal emulator (pyte) to
see the screen at given moments of a throttled pull.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pexpect
import pyte
import pytest

from dockerdrag.human_units import format_amount, format_bytes
from tests.support.command import run_cli
from tests.support.fault_proxy import FaultProxy, throttle
from tests.support.images import PushedImage, push_image
from tests.support.registry_server import RegistryServer
from tests.test_cli_progress import COLS, ROWS, final_screen, spawn_in_terminal
from tests.test_progress_events import cut_short, random_layer

TOTAL_LINE = re.compile(
    r"^Total:\s+(\d+)/(\d+) layers\s+\S*\s+(\d+\.\d)/(\d+\.\d) (kB|MB)\s+(\d+\.\d) (kB|MB)/s\s+"
    r"(\d:\d\d:\d\d|-:--:--)$"
)
LAYER_LINE = re.compile(
    r"^[0-9a-f]{12}: Downloading \S+ (\d+\.\d)/(\d+\.\d) (kB|MB) (\d+\.\d) (kB|MB)/s$"
)
SCALE = {"kB": 1e3, "MB": 1e6}


def timed_output(child: pexpect.spawn) -> list[tuple[float, str]]:  # type: ignore[type-arg]
    """Everything the child writes until it exits, each piece with when it arrived."""
    pieces: list[tuple[float, str]] = []
    while True:
        try:
            pieces.append((time.monotonic(), child.read_nonblocking(65536, timeout=0.05)))
        except pexpect.TIMEOUT:
            continue
        except pexpect.EOF:
            child.close()
            return pieces


def screens_at(pieces: list[tuple[float, str]], moments: list[float]) -> list[list[str]]:
    """The screen as it stood at each of ``moments`` (in order)."""
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.Stream(screen)
    shots: list[list[str]] = []
    remaining = list(moments)
    for arrived, text in pieces:
        while remaining and arrived > remaining[0]:
            shots.append([line.rstrip() for line in screen.display if line.strip()])
            remaining.pop(0)
        stream.feed(text)
    return shots


def total_bytes_shown(line: str) -> tuple[float, float, float]:
    """(done, total, rate) in bytes from the total line."""
    match = TOTAL_LINE.match(line)
    assert match, line
    unit = SCALE[match[5]]
    return float(match[3]) * unit, float(match[4]) * unit, float(match[6]) * SCALE[match[7]]


_pushed: dict[str, PushedImage] = {}


@pytest.fixture
def two_layers(registry: RegistryServer) -> PushedImage:
    """Two layers of 600 kB (pushed once per registry)."""
    if registry.url not in _pushed:
        layers = [random_layer(seed, 600_000) for seed in (11, 12)]
        _pushed[registry.url] = push_image(registry, "progress/two", "v1", layers)
    return _pushed[registry.url]


@pytest.fixture
def throttled(registry: RegistryServer) -> Iterator[FaultProxy]:
    """The registry behind a proxy sending each blob at 200 kB/s (the image takes ~3 s)."""
    with FaultProxy(registry.url) as proxy:
        proxy.add(throttle(200_000), path="/blobs/", times=None)
        yield proxy


def test_terminal_display_at_two_moments_of_a_throttled_pull(
    two_layers: PushedImage, throttled: FaultProxy, tmp_path: Path
) -> None:
    image = f"{throttled.host}/{two_layers.repo}:{two_layers.tag}"
    child = spawn_in_terminal(image, "--insecure", throttled.host, "-o", "t.tar", cwd=tmp_path)
    pieces = timed_output(child)
    assert child.exitstatus == 0, "".join(text for _, text in pieces)
    output = "".join(text for _, text in pieces)
    started = next(when for when, text in pieces if "Downloading" in text)
    ended = next(when for when, text in pieces if "Pull complete" in text)
    span = ended - started
    assert span > 1.0, "the throttled pull was too quick to look at"
    moments = [started + span / 3, started + 2 * span / 3]
    first, second = screens_at(pieces, moments)
    readings = []
    for screen in (first, second):
        rows = [match for line in screen if (match := LAYER_LINE.match(line))]
        assert rows, "\n".join(screen)
        (total_line,) = [line for line in screen if line.startswith("Total:")]
        done, total, rate = total_bytes_shown(total_line)
        assert 0 < done < total and rate > 0, total_line
        assert not total_line.endswith("-:--:--"), total_line
        # The layer rows are finer (kB) than the total (MB).
        readings.append((sum(float(row[1]) * SCALE[row[3]] for row in rows), rate))
    (done1, _), (done2, rate2) = readings
    assert done2 > done1
    between = (done2 - done1) / (moments[1] - moments[0])
    # The rate shown counts bytes received, not increases of several chunks' counts.
    assert 0.5 * between <= rate2 <= 1.5 * between, (rate2, between)

    final = final_screen(output)
    (total_line,) = [line for line in final if line.startswith("Total:")]
    assert "Done" in total_line
    size = sum(built.size for built in two_layers.layers)
    summary = [line for line in final if line.startswith("Downloaded ")]
    assert summary and summary[0].startswith(f"Downloaded {format_bytes(size)} in "), final


@pytest.mark.parametrize("where", ["pipe", "terminal"])
def test_resumed_pull_says_so_without_verbose(
    registry: RegistryServer, tmp_path: Path, where: str
) -> None:
    pushed = push_image(registry, f"progress/cli-resume-{where}", "v1", [random_layer(21, 900_000)])
    (built,) = pushed.layers
    cache = tmp_path / "cache"
    with FaultProxy(registry.url) as proxy:
        anyio.run(cut_short, proxy, pushed, cache, 400_000)
    args = (pushed.reference, "--insecure", registry.host, "--cache-dir", str(cache), "-o", "r.tar")
    if where == "pipe":
        completed = run_cli(*args, cwd=tmp_path)
        assert completed.returncode == 0, completed.stderr
        lines = completed.stderr.splitlines()
    else:
        child = spawn_in_terminal(*args, cwd=tmp_path)
        child.expect(pexpect.EOF)
        output: str = child.before
        child.close()
        assert child.exitstatus == 0, output
        lines = final_screen(output)
    resuming = f"{built.digest[7:19]}: Resuming ({format_amount(400_000, built.size)} on disk)"
    assert resuming in lines, lines
    (summary,) = [line for line in lines if line.startswith("Downloaded ")]
    assert summary.startswith(f"Downloaded {format_bytes(built.size - 400_000)} in "), summary
    assert summary.endswith(f" s ({format_bytes(400_000)} resumed)"), summary
