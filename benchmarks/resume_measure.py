"""How many bytes does a resume fetch twice? Cut a 200 MB layer at 50 % and count.

Run from the repository root::

    python -m benchmarks.resume_measure            # 200 MB layer
    python -m benchmarks.resume_measure --mb 50    # smaller, quicker

A local ``docker-registry`` (``tests/support``) holds one image whose only layer is
``--mb`` MB of random bytes (uncompressed tar, so nothing shrinks it). A fault proxy
sits in front and counts the body bytes it serves. Each scenario starts from an empty
cache, cuts the layer's download at half its size, lets dockerdrag finish it, and
prints the bytes served beyond the layer's size (the re-downloaded bytes), split in:

* lost at the cut: bytes the proxy sent before the cut that never reached the partial
  file (in socket buffers, aiohttp's buffer, or not yet recorded in the sidecar);
* resume overhead: bytes served after the cut beyond what was missing on disk
  (``size - kept``); 0 means the resume fetched exactly the missing bytes.

Scenarios:

* ``drop``: the connection is reset after 50 % of the body (one stream); the same
  run reconnects with ``Range``.
* ``cancel``: the pull is cancelled (as Ctrl-C does) once 50 % is on disk; a second
  pull resumes from the cache. Once as one stream, once in parallel chunks.
* ``sigkill``: a CLI pull (``python -m dockerdrag``, default options: the blob whole) is
  killed with SIGKILL once 50 % is recorded on disk; a second CLI pull resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from benchmarks import REPO_ROOT
from dockerdrag import Digest, Puller, RetryPolicy
from dockerdrag.download import TransferOptions
from dockerdrag.events import LayerPhase, LayerProgress, ProgressEvent
from tests.support.fault_proxy import FaultProxy, drop_after, throttle
from tests.support.images import PushedImage, layer, push_image
from tests.support.registry_server import start_registry

ONE_STREAM = TransferOptions(chunk_threshold=1 << 40)
CHUNKED = TransferOptions(whole_blobs=False)  # ranked 16 MiB chunks, as from a far registry


@dataclass(frozen=True)
class Outcome:
    """One scenario's figures (bytes)."""

    name: str
    size: int
    served_before: int  # served until the cut
    kept: int  # on disk and reused by the resume
    served_after: int  # served after the cut
    seconds: float

    @property
    def refetched(self) -> int:
        return self.served_before + self.served_after - self.size

    @property
    def lost_at_cut(self) -> int:
        return self.served_before - self.kept

    @property
    def overhead(self) -> int:
        return self.served_after - (self.size - self.kept)


def blob_regex(image: PushedImage) -> str:
    return rf"/blobs/{image.layers[0].digest}$"


def reference(proxy: FaultProxy, image: PushedImage) -> str:
    return f"{proxy.host}/{image.repo}:{image.tag}"


def recorded(cache: Path, digest: str) -> int:
    """Bytes a resume will reuse: the sidecar's ranges, else the partial's length."""
    base = cache / "blobs" / "sha256" / Digest.parse(digest).hex
    sidecar = base.with_name(base.name + ".ranges")
    try:
        ranges = json.loads(sidecar.read_text())["ranges"]
        return sum(hi - lo for lo, hi in ranges)
    except (OSError, ValueError, KeyError):
        pass
    try:
        return base.with_name(base.name + ".partial").stat().st_size
    except FileNotFoundError:
        return 0


async def pull(
    proxy: FaultProxy,
    image: PushedImage,
    cache: Path,
    transfer: TransferOptions,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> None:
    async with Puller(
        insecure=[proxy.host],
        cache_dir=cache,
        use_docker_config=False,
        transfer=transfer,
        progress=progress,
        retry=RetryPolicy(base_delay=0.05),
    ) as puller:
        await puller.pull(reference(proxy, image), output=cache.parent / "out.tar")


async def drop(proxy: FaultProxy, image: PushedImage, work: Path) -> Outcome:
    size = image.layers[0].size
    proxy.add(drop_after(size // 2), path=blob_regex(image))
    started = time.monotonic()
    await pull(proxy, image, work / "cache", ONE_STREAM)
    proxy.wait_idle()
    first, *rest = proxy.requests_for(blob_regex(image))
    kept = int((rest[0].header("Range") or "bytes=0-")[6:-1])
    after = sum(r.bytes_sent for r in rest)
    return Outcome("drop, one stream", size, first.bytes_sent, kept, after, _since(started))


async def cancel(
    proxy: FaultProxy, image: PushedImage, work: Path, transfer: TransferOptions, name: str
) -> Outcome:
    size = image.layers[0].size
    digest = Digest.parse(image.layers[0].digest)
    cache = work / "cache"
    started = time.monotonic()
    with anyio.CancelScope() as scope:

        def halfway(event: ProgressEvent) -> None:
            if (
                isinstance(event, LayerProgress)
                and event.digest == digest
                and event.phase is LayerPhase.DOWNLOADING
                and event.done >= size // 2
            ):
                scope.cancel()

        await pull(proxy, image, cache, transfer, halfway)
    kept = recorded(cache, image.layers[0].digest)
    proxy.wait_idle()
    before = proxy.bytes_served(blob_regex(image))
    await pull(proxy, image, cache, transfer)
    proxy.wait_idle()
    after = proxy.bytes_served(blob_regex(image)) - before
    return Outcome(name, size, before, kept, after, _since(started))


async def sigkill(proxy: FaultProxy, image: PushedImage, work: Path) -> Outcome:
    size = image.layers[0].size
    cache = work / "cache"
    proxy.add(throttle(60_000_000), path=blob_regex(image), times=None)
    command = [
        sys.executable,
        "-m",
        "dockerdrag",
        "pull",
        reference(proxy, image),
        "-o",
        str(work / "out.tar"),
        "--cache-dir",
        str(cache),
        "--insecure",
        proxy.host,
        "-q",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while recorded(cache, image.layers[0].digest) < size // 2:
        if proc.poll() is not None:
            raise RuntimeError("the CLI pull finished before it could be killed")
        await anyio.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = recorded(cache, image.layers[0].digest)
    proxy.clear_rules()
    proxy.wait_idle()
    before = proxy.bytes_served(blob_regex(image))
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    proxy.wait_idle()
    after = proxy.bytes_served(blob_regex(image)) - before
    return Outcome("sigkill CLI, whole blob", size, before, kept, after, _since(started))


def _since(started: float) -> float:
    return time.monotonic() - started


async def measure(megabytes: int, root: Path) -> list[Outcome]:
    registry = start_registry(root / "registry", auth="none")
    try:
        data = random.Random(200).randbytes(megabytes * 1_000_000)
        image = push_image(registry, "bench/resume", "v1", [layer({"data.bin": data}, "none")])
        del data
        outcomes = []
        scenarios: list[Callable[[FaultProxy, Path], Awaitable[Outcome]]] = [
            lambda p, w: drop(p, image, w),
            lambda p, w: cancel(p, image, w, ONE_STREAM, "cancel, one stream"),
            lambda p, w: cancel(p, image, w, CHUNKED, "cancel, chunked (16 MiB)"),
            lambda p, w: sigkill(p, image, w),
        ]
        for number, scenario in enumerate(scenarios):
            work = root / f"run-{number}"
            work.mkdir()
            with FaultProxy(registry.url) as proxy:
                outcomes.append(await scenario(proxy, work))
        return outcomes
    finally:
        registry.stop()


def markdown_table(outcomes: Sequence[Outcome]) -> str:
    """The figures as a Markdown table (bytes, and the share of the layer fetched twice)."""
    rows = [
        "| scenario | layer | served before the cut | kept | served after the cut "
        "| fetched twice | lost at the cut | resume overhead | fetched twice, % | s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows += [
        f"| {o.name} | {o.size:,} | {o.served_before:,} | {o.kept:,} | {o.served_after:,} "
        f"| {o.refetched:,} | {o.lost_at_cut:,} | {o.overhead:,} "
        f"| {o.refetched / o.size:.2%} | {o.seconds:.1f} |"
        for o in outcomes
    ]
    return "\n".join(rows)


def report(outcomes: list[Outcome]) -> None:
    columns = ("layer", "served<cut", "kept", "served>cut", "refetched", "lost@cut", "overhead")
    print(f"{'scenario':<26}" + "".join(f"{c:>13}" for c in columns))
    for o in outcomes:
        values = (
            o.size,
            o.served_before,
            o.kept,
            o.served_after,
            o.refetched,
            o.lost_at_cut,
            o.overhead,
        )
        print(
            f"{o.name:<26}"
            + "".join(f"{v:>13,}" for v in values)
            + f"  ({o.refetched / o.size:.2%} refetched, {o.seconds:.1f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="layer size in MB (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resume-measure-") as temp:
        report(anyio.run(measure, args.mb, Path(temp)))


if __name__ == "__main__":
    main()
