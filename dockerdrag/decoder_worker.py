"""A decoder process: layer blobs inflated, hashed and written into regions of the archive.

:mod:`~dockerdrag.decoder_processes` starts a Python that calls :func:`main` with two
inherited descriptors: a socket to the pull (a
:class:`multiprocessing.connection.Connection`) and the archive file being written. It
imports only what decoding needs (no network code, no event loop), and it runs until
the socket closes: when the pull ends, or dies, the worker ends too. It ignores Ctrl-C,
which the pull handles by ending its workers.

Messages (tuples) from the pull: ``("job", start, size, path, name)`` decodes the blob
at ``path`` (``name`` in messages) into the region ``[start, start + size)``; with
``path`` None the blob is read as it arrives: the worker asks ``("need", position,
verified_only)`` whenever it has read every byte it was told of (``verified_only`` once
the partial file it was told of is gone), and the pull answers ``("more", path, end,
verified)`` (the file, how far its bytes reach, whether it is the verified blob, read to
its end). Each job ends with ``("done", count, sha256_hex)`` (``count`` is ``size + 1``
if the layer is longer) or ``("failed", kind, ...)``, kind being ``"corrupt"`` (the
bytes do not inflate), ``"lost"`` (the download started the blob over under the
reader), ``"os"`` (with the errno: writing the archive or reading the blob failed) or
``"error"`` (anything else), each with its message.
"""

from __future__ import annotations

import hashlib
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

from .arriving_blob import ArrivingBlobReader, FollowLost, read_head
from .direct_io import Readable
from .direct_regions import DirectRegionFile
from .errors import IntegrityError
from .layers import Compression, decompressing, sniff_compression
from .tarwriter import padding_for

__all__ = ["main"]

_SNIFF_LENGTH: Final = 6


class _PullAnswers:
    """How far the blob of the job has arrived, as the pull answers over ``channel``."""

    def __init__(self, channel: Connection) -> None:
        self._channel = channel

    def wait_beyond(self, position: int) -> tuple[Path, int, bool]:
        return self._ask(position, verified_only=False)

    def wait_verified(self) -> Path:
        return self._ask(0, verified_only=True)[0]

    def _ask(self, position: int, *, verified_only: bool) -> tuple[Path, int, bool]:
        self._channel.send(("need", position, verified_only))
        _, path, end, verified = self._channel.recv()
        return Path(path), end, verified


def _open_layer(channel: Connection, path: str | None, name: str) -> BinaryIO:
    """The uncompressed bytes of the blob at ``path``, or of the blob arriving; corrupt
    data is an IntegrityError naming ``name``."""
    if path is not None:
        source: BinaryIO = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the stream
    else:
        source = cast(BinaryIO, ArrivingBlobReader(_PullAnswers(channel), name))
    try:
        if isinstance(source, ArrivingBlobReader):
            head = read_head(source, _SNIFF_LENGTH)
        else:
            head = source.read(_SNIFF_LENGTH) or b""
            source.seek(0)
        compression = sniff_compression(head)
        if compression is Compression.NONE:
            return source
        return decompressing(source, compression, name)
    except BaseException:
        source.close()
        raise


def _decode(channel: Connection, archive: DirectRegionFile, job: tuple[Any, ...]) -> None:
    """Decode one layer into its region, padded; answer ``done`` or ``failed``."""
    _, start, size, path, name = job
    hasher = hashlib.sha256()
    written = 0
    try:
        with archive.region(start) as region, _open_layer(channel, path, name) as opened:
            stream = cast(Readable, opened)  # binary files have readinto; typing.IO lacks it
            while count := region.fill_from(stream, size + 1 - written, hasher):
                written += count
                if written > size:
                    break
            if written == size:
                region.zero_fill(padding_for(size))
                region.finish()
    except FollowLost as exc:
        channel.send(("failed", "lost", str(exc)))
        return
    except IntegrityError as exc:
        channel.send(("failed", "corrupt", str(exc)))
        return
    except OSError as exc:
        channel.send(("failed", "os", exc.errno, str(exc)))
        return
    except Exception as exc:  # a bug: the pull fails with what it was
        channel.send(("failed", "error", f"{type(exc).__name__}: {exc}"))
        return
    channel.send(("done", written, hasher.hexdigest()))


def main(argv: list[str]) -> int:
    """Serve jobs until the pull closes the socket."""
    # Ctrl-C reaches every process of the terminal's group: the pull ends its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = Connection(int(argv[0]))
    with DirectRegionFile(int(argv[1]), writers=1) as archive:
        try:
            while True:
                _decode(channel, archive, channel.recv())
        except (EOFError, OSError):  # the pull closed the socket, or ended
            return 0
