"""The growth of a pull's connection limit: more blob connections only while they are slow.

A pull starts with a few connections (``download.INITIAL_CONNECTIONS``).
:class:`ConnectionGrowth` counts the body bytes as they arrive and, every
``TransferOptions.growth_check_seconds``, looks at the traffic since its last look: when
requests wait for a connection and the busy ones are slow (:func:`next_connection_limit`)
while this process had CPU to spare, at two looks in a row (the first may be connection
set-up), the limit doubles, towards the pull's ``concurrency``. A process that kept a
core busy set the pace itself (small layers over TLS on loopback come slowly because the
client decrypts, hashes and inflates them): more connections would not bring the bytes
sooner, and each would cost a TLS handshake on both ends. (The CPU counted is this
process's: a docker-format pull's decoder processes are not in it.) A fast link keeps few
buffers in memory; a link that caps each connection gets as many as it takes within a few
looks. The limit is never lowered. Once it grew, or the registry was found far (below),
the link counts as slow (:attr:`ConnectionGrowth.link_slow`): a big blob that starts then
comes in chunks.

A registry whose manifest took ``TransferOptions.far_round_trip`` or more to be answered,
or whose config took that long to come (:meth:`ConnectionGrowth.start_far`, before the
layers) gets the ceiling at once: every request to it waits that long, so its layers go
faster on every connection the ceiling allows, and a pull of many small layers over such
a link would otherwise spend most of its time in the ramp.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from .connection_limit import ConnectionLimit
from .transfer_options import TransferOptions

log = logging.getLogger("dockerdrag")

GROWTH_FACTOR = 2


def next_connection_limit(
    limit: int,
    ceiling: int,
    *,
    waiting: int,
    received: int,
    seconds: float,
    slow_rate: float,
    cpu_seconds: float = 0.0,
    busy_share: float | None = None,
) -> int:
    """The connection limit after one look at the traffic of the last ``seconds``, in
    which this process used ``cpu_seconds`` of CPU time.

    It doubles (``GROWTH_FACTOR``, to at most ``ceiling``) when requests are waiting
    for a connection and the busy ones carried less than ``slow_rate`` bytes per
    second each: a far registry, or a CDN or proxy that caps each connection, where
    each more connection adds its share. On a fast link a few connections already
    carry what the client can take, and each more one only costs memory. Nor does it
    grow when the process used ``busy_share`` CPU seconds per second or more (None: not
    looked at): the client, not the link, held the connections back.
    """
    if limit >= ceiling or waiting <= 0 or seconds <= 0:
        return min(limit, ceiling)
    if received / seconds / limit >= slow_rate:
        return limit
    if busy_share is not None and cpu_seconds >= busy_share * seconds:
        return limit
    return min(ceiling, limit * GROWTH_FACTOR)


class ConnectionGrowth:
    """Raises a :class:`ConnectionLimit` towards a ceiling while its connections are slow."""

    def __init__(
        self, options: TransferOptions, cpu_clock: Callable[[], float] = time.process_time
    ) -> None:
        self.options = options
        self._cpu_clock = cpu_clock  # the CPU seconds this process used (all its threads)
        self.received = 0
        """Body bytes received so far, by every connection."""
        self.link_slow = False
        """Whether the link proved slow: a far registry (:meth:`start_far`), or a limit
        grown because the connections were slow."""

    def note_received(self, size: int) -> None:
        """Count body bytes as they arrive."""
        self.received += size

    def start_far(self, limiter: ConnectionLimit, ceiling: int, seconds: float) -> None:
        """A request before the layers (the manifest's answer, the config) took
        ``seconds``: if that is ``TransferOptions.far_round_trip`` or more, raise
        ``limiter`` to ``ceiling`` now."""
        far = self.options.far_round_trip
        if far is None or seconds < far:
            return
        self.link_slow = True
        if limiter.total_tokens >= ceiling:
            return
        log.debug(
            "blob connections: %d -> %d (a blob took %.0f ms: a far registry)",
            limiter.total_tokens,
            ceiling,
            seconds * 1000,
        )
        limiter.total_tokens = ceiling

    async def watch(self, limiter: ConnectionLimit, ceiling: int) -> None:
        """Raise ``limiter`` towards ``ceiling`` while every connection is busy, work
        waits and they are slow; return once it reaches ``ceiling`` (cancel it before)."""
        mark_bytes, mark_time, mark_cpu = self.received, time.monotonic(), self._cpu_clock()
        slow_before = False  # two slow looks in a row: the first may be connection set-up
        while limiter.total_tokens < ceiling:
            await anyio.sleep(self.options.growth_check_seconds)
            now, cpu = time.monotonic(), self._cpu_clock()
            limit = int(limiter.total_tokens)
            grown = next_connection_limit(
                limit,
                ceiling,
                waiting=limiter.waiting,
                received=self.received - mark_bytes,
                seconds=now - mark_time,
                slow_rate=self.options.slow_connection_rate,
                cpu_seconds=cpu - mark_cpu,
                busy_share=self.options.busy_cpu_share,
            )
            slow = grown > limit
            if slow and slow_before:
                log.debug("blob connections: %d -> %d (slow connections)", limit, grown)
                limiter.total_tokens = grown
                self.link_slow = True
                slow = False
            slow_before = slow
            mark_bytes, mark_time, mark_cpu = self.received, now, cpu


__all__ = ["GROWTH_FACTOR", "ConnectionGrowth", "next_connection_limit"]
