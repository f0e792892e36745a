"""Helpers the floor contenders run as child processes.

``python -m benchmarks.floors decompress FILE`` inflates one gzip blob with ISA-L and
throws the bytes away: the decompression floor starts one per layer, all at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from isal import igzip

READ_SIZE = 1 << 20


def decompress(path: str) -> int:
    """Inflate ``path``; returns the uncompressed size."""
    buffer = bytearray(READ_SIZE)
    total = 0
    with igzip.open(path, "rb") as stream:  # type: ignore[no-untyped-call]
        while n := stream.readinto(buffer):
            total += n
    return total


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "decompress":
        print("usage: python -m benchmarks.floors decompress FILE", file=sys.stderr)
        return 2
    decompress(args[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
