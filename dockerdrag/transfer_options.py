"""How blobs travel (:class:`TransferOptions`): chunking, limits and the tunables of a download."""

from __future__ import annotations

from dataclasses import dataclass, field

from .low_speed import LowSpeedLimit

UPLOAD_CHUNK_SIZE = 32 << 20
"""Bytes per upload request (one PATCH) unless a push asks for another size."""


@dataclass(frozen=True)
class TransferOptions:
    """How blobs travel: when to split a blob into parallel ranged chunks, and how.

    Blobs larger than ``chunk_threshold`` bytes are fetched with ranged requests: whole
    while they come fast (``whole_blobs``), else in chunks of ``chunk_size`` bytes (the
    last may be shorter), at most ``concurrency`` requests at a time across all layers
    and chunks.
    """

    chunk_threshold: int = 32 << 20
    chunk_size: int = 16 << 20
    chunk_ramp: int = 8
    """A blob's first chunks grow to ``chunk_size`` in this many steps: the first is
    ``chunk_size / chunk_ramp`` bytes, each next one that much bigger (1: every chunk is
    ``chunk_size``). A blob read as it arrives can be read only as far as its first chunk
    not yet in: chunks of one size, asked for at once, all come in at the same moment,
    and until then the reader gets the bytes of one connection. Growing chunks come in
    one after the other, so the reader follows them from the start, and the connections
    they free take the next chunks at different moments, which keeps it so."""
    whole_blobs: bool = True
    """Each blob over ``chunk_threshold`` comes with one request, hashed as it is
    written, split into ranged chunks only while it comes slower than
    ``slow_connection_rate`` (:mod:`~dockerdrag.chunked_download`). The oci writers take
    the blob once it is in; the docker writer's decoders follow it from its first byte,
    which one stream brings in order. Over a fast link that costs the client and the
    registry less than ranked chunks, each of which is one more request, and whose bytes
    written ahead of the hashed prefix are read back to be hashed. Over a link that
    proved slow before the blob starts (a far registry, ``far_round_trip``, or
    connections slow enough for their limit to grow) the blob comes in ranked chunks all
    the same. False: such blobs come in ranked chunks always."""
    small_blob: int = 4 << 20
    """Blobs up to this size do their file work on the event loop, not in a worker thread.

    Writing and hashing a block of a small blob takes about as long as the hop to a
    worker thread and back, and the whole blob a few milliseconds at most, so many small
    blobs arrive sooner this way (the figures: benchmarks/README.md, "Measurements behind
    the defaults").
    """

    max_blob_size: int = 1 << 40
    """A descriptor claiming more bytes than this (1 TiB) fails before any request."""
    low_speed: LowSpeedLimit | None = field(default_factory=LowSpeedLimit)
    """A blob body slower than this is reconnected, then fails (None: no limit)."""
    ranges_save_every: int = 8 << 20
    """A chunked blob's ranges sidecar is saved each time this many more bytes are written
    (and always when a body ends, breaks or is cancelled): after a crash, at most this
    much written data is fetched again."""
    slow_connection_rate: float = 16e6
    """Bytes per second per connection below which more connections are worth their memory
    (each holds its buffers): the connection limit grows only while connections are this
    slow, and a whole blob (``whole_blobs``) is split only while it comes this slowly.
    Over loopback a pull that inflates big layers is bound by the CPU, not the link, at
    more than this per connection: more connections would only cost memory there. (One
    of small layers over TLS can come slower than this and still be bound by the CPU:
    ``busy_cpu_share``.)"""
    busy_cpu_share: float | None = 0.75
    """CPU seconds per second (one core: 1.0) this process may use while its connections
    are slow and the connection limit still grows: a process busier than that is what
    held them back, not the link (:mod:`~dockerdrag.connection_growth`; None: the limit
    grows whatever the process used)."""
    growth_check_seconds: float = 0.05
    """How often (seconds) the connection limit looks at the traffic to decide whether to grow.
    It grows after two slow looks in a row (the first may be connection set-up), so a link
    that caps each connection gets twice the connections every two looks: a pull of many
    small layers over a far link, each request a round trip, is mostly this ramp."""
    far_round_trip: float | None = 0.04
    """A registry whose manifest took this many seconds or more to be answered, or whose
    config (a small blob, asked for before the layers) took that long to come, is far:
    every request to it waits that long, so the pull's connections go to ``concurrency``
    at once instead of growing from a few, and (found from the manifest) the connections
    its layers will take are opened while the config comes (None: never)."""
    split_min_bytes: int = 2 << 20
    """The least bytes each half of a split chunk gets: once no chunk of a blob is left to
    start and no other request waits for a connection, an idle connection takes the second
    half of a straggling chunk only if it has at least twice this many left. At least 1 MiB
    (more than a body's block buffer holds, so a split never cuts bytes already received)."""
    split_min_seconds: float = 0.5
    """A straggling chunk is split only if, at the rate its body has come so far, the rest
    would take at least this many seconds: the straggler's connection is closed at the
    split and the bytes in flight on it are lost, which over a fast link costs more than
    the split saves."""

    def __post_init__(self) -> None:
        if self.chunk_size < 1 or self.chunk_threshold < 0:
            raise ValueError("chunk_size must be positive and chunk_threshold non-negative")
        if self.chunk_ramp < 1:
            raise ValueError("chunk_ramp must be at least 1")
        if self.max_blob_size < 0:
            raise ValueError("max_blob_size must be non-negative")
        if self.ranges_save_every < 1 or self.growth_check_seconds <= 0:
            raise ValueError("ranges_save_every and growth_check_seconds must be positive")
        if self.split_min_bytes < 1 << 20:
            raise ValueError("split_min_bytes must be at least 1 MiB")
        if self.busy_cpu_share is not None and self.busy_cpu_share <= 0:
            raise ValueError("busy_cpu_share must be positive")
        if self.far_round_trip is not None and self.far_round_trip < 0:
            raise ValueError("far_round_trip must not be negative")
        if self.split_min_seconds < 0:
            raise ValueError("split_min_seconds must not be negative")
