"""Show your own progress with a callback: one line per layer when it finishes.

Usage::

    python examples/progress_callback.py IMAGE OUTPUT.tar [--platform linux/amd64]
        [--insecure HOST:PORT]

The callback receives typed events (``PullStarted``, ``LayerProgress``,
``ArchiveWriting``); it runs in the event loop, so it must be quick.
"""

from __future__ import annotations

import argparse

import anyio

from dockerdrag import (
    ArchiveWriting,
    DockerDragError,
    LayerPhase,
    LayerProgress,
    ProgressEvent,
    PullResult,
    PullStarted,
    pull_image,
)


class Reporter:
    """Prints a line per image, per finished layer, and a percentage every 25%."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}  # a layer repeated in an image is fetched once
        self.done: dict[str, int] = {}
        self.next_mark = 25

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, PullStarted):
            self.sizes.update((str(digest), size) for digest, size in event.layers)
            total = sum(self.sizes.values())
            print(f"pulling {event.reference}: {len(event.layers)} layers, {total} bytes")
        elif isinstance(event, LayerProgress):
            self.done[str(event.digest)] = event.done
            if event.phase in (LayerPhase.COMPLETE, LayerPhase.EXISTS):
                print(f"layer {event.digest.short}: {event.phase} ({event.total} bytes)")
            self.report_percentage()
        elif isinstance(event, ArchiveWriting):
            print(f"writing {event.output}")

    def report_percentage(self) -> None:
        percent = 100 * sum(self.done.values()) // max(1, sum(self.sizes.values()))
        while percent >= self.next_mark <= 100:
            print(f"{self.next_mark}%")
            self.next_mark += 25


async def pull(image: str, output: str, platform: str | None, insecure: list[str]) -> PullResult:
    """Pull ``image`` into ``output`` with a :class:`Reporter` as the progress callback."""
    return await pull_image(
        image, output=output, platform=platform, insecure=insecure, progress=Reporter()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("output")
    parser.add_argument("--platform", help="e.g. linux/arm64 (needed for a multi-platform image)")
    parser.add_argument("--insecure", action="append", default=[])
    args = parser.parse_args()
    try:
        result = anyio.run(pull, args.image, args.output, args.platform, args.insecure)
    except DockerDragError as exc:
        print(f"error: {exc}")
        return exc.exit_code
    print(f"done: {result.output} ({result.image_id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
