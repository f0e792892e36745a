"""Consume a pull's progress as an async iterator, as a GUI or web app would.

Usage::

    python examples/progress_events.py IMAGE OUTPUT.tar [--platform linux/amd64]
        [--insecure HOST:PORT]

``Puller.pull_events`` runs the pull while you iterate; the last event is
``PullFinished`` with the result, or the iteration raises the pull's error.
Here each event becomes one JSON line, as a server would push it to a browser
(over a WebSocket or server-sent events).
"""

from __future__ import annotations

import argparse
import json

import anyio

from dockerdrag import DockerDragError, LayerProgress, Puller, PullFinished, PullStarted


async def stream(image: str, output: str, platform: str | None, insecure: list[str]) -> None:
    """Print one JSON line per event; the last one carries the archive's path."""
    async with (
        Puller(insecure=insecure) as puller,
        puller.pull_events(image, output=output, platform=platform) as events,
    ):
        async for event in events:
            if isinstance(event, PullStarted):
                message = {"type": "start", "layers": len(event.layers)}
            elif isinstance(event, LayerProgress):
                message = {"type": "layer", "id": event.digest.short, "phase": event.phase}
                message |= {"done": event.done, "total": event.total}
            elif isinstance(event, PullFinished):
                message = {"type": "finished", "output": str(event.result.output)}
            else:
                message = {"type": "writing"}
            print(json.dumps(message), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("output")
    parser.add_argument("--platform", help="e.g. linux/arm64 (needed for a multi-platform image)")
    parser.add_argument("--insecure", action="append", default=[])
    args = parser.parse_args()
    try:
        anyio.run(stream, args.image, args.output, args.platform, args.insecure)
    except DockerDragError as exc:
        print(json.dumps({"type": "error", "message": str(exc), "exit_code": exc.exit_code}))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
