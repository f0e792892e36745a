"""The order the docker writer's decoders read the layer blobs in, byte by byte.

The parallel docker writer (:mod:`~dockerdrag.docker_parallel`) runs ``DECODERS``
decoders; each, when free, takes the largest blob not taken yet (the longest to read
starts soonest) and reads it front to back, as it arrives. While that blob is still
arriving, one that is in whole already goes first (:func:`next_to_decode`): the decoder
reads it instead of waiting for bytes, rather than at the end of the pull (over a slow
link the small blobs, each asked for whole at the start, are in long before a decoder
would reach them). The downloads serve the bytes the decoders will read first before
the others (a connection's rank, :mod:`~dockerdrag.connection_limit`):
:func:`decoder_ranks` plays the decoders' choices on the blob sizes, each decoder
reading its blobs one after the other at the same pace, and ranks each blob by where
its first byte falls in its decoder's run. A chunk's rank adds its offset in the blob,
so the chunks of the blobs the decoders read side by side are fetched side by side,
each decoder's front first.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

__all__ = ["DECODERS", "decoder_ranks", "largest_first", "next_to_decode"]

DECODERS = 2
"""Layers decompressed at once (by threads or worker processes): as many as the cores
of the machine this was tuned on (2). Each decoder holds its blocks and inflate state in
memory; a third gained nothing in the benchmark (big/direct, alternating runs) and raised
the peak RSS."""

K = TypeVar("K", bound=Hashable)


def largest_first(blob_size: int, place: int) -> tuple[int, int]:
    """The key a decoder takes blobs by (the least first): the largest blob, then the
    first placed in the archive."""
    return -blob_size, place


def next_to_decode(keys: Sequence[tuple[int, int]], arrived: Callable[[int], bool]) -> int:
    """Which of the blobs not taken yet (their :func:`largest_first` keys) a free decoder
    takes: the index of the least key, unless ``arrived`` (of an index: whether that blob
    is in whole) says it is still arriving while another is in: then the least key of
    those that are in."""
    first = min(range(len(keys)), key=keys.__getitem__)
    if arrived(first):
        return first
    whole = [index for index in range(len(keys)) if arrived(index)]
    return min(whole, key=keys.__getitem__) if whole else first


def decoder_ranks(sizes: Sequence[tuple[K, int]], decoders: int = DECODERS) -> dict[K, int]:
    """The rank of each blob of ``sizes`` (``(key, blob size)`` in the archive's order):
    the position of its first byte in the run of the decoder that will read it, when
    ``decoders`` decoders take blobs by :func:`largest_first` and read at the same pace."""
    taken = sorted(range(len(sizes)), key=lambda place: largest_first(sizes[place][1], place))
    free: list[tuple[int, int]] = [(0, decoder) for decoder in range(max(1, decoders))]
    ranks: dict[K, int] = {}
    for place in taken:
        key, size = sizes[place]
        read, decoder = heapq.heappop(free)  # the decoder done first takes the next blob
        ranks[key] = read
        heapq.heappush(free, (read + size, decoder))
    return ranks
