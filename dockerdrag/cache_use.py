"""Which cached blobs running pulls use, so that pruning the cache leaves them alone.

A pull holds a blob's lock only while it looks for or downloads the blob; the
archive writer reads it later. So before it fetches anything a pull writes the
digests it will read into a record ``pulls/<pid>-<random>.inuse`` in the cache and
holds a lock on that record until it ends (:class:`BlobsInUse`). Pruning takes a
blob's lock and then reads the records (:func:`blobs_in_use`): a pull that
registered earlier is seen; one that registers later takes the blob's lock after
the prune released it, and so finds the blob gone and fetches it again. A record
whose lock is free belongs to a process that ended: it is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from .digest import Digest
from .osfiles import ProcessLock, replace

log = logging.getLogger("dockerdrag")

RECORDS = "pulls"
_SUFFIX = ".inuse"


class BlobsInUse:
    """A pull's record of the blobs it uses, held from ``with`` to its end.

    A cache that cannot be written (read-only) keeps no record: nobody prunes it.
    """

    def __init__(self, cache: Path, digests: Iterable[Digest], *, read_only: bool) -> None:
        self._cache = cache
        self._digests = sorted({digest.hex for digest in digests})
        self._read_only = read_only
        self._record: Path | None = None
        self._lock: ProcessLock | None = None

    def __enter__(self) -> BlobsInUse:
        if self._read_only:
            return self
        directory = self._cache / RECORDS
        name = f"{os.getpid()}-{os.urandom(4).hex()}"
        record, unlisted = directory / f"{name}{_SUFFIX}", directory / f".{name}.tmp"
        lock: ProcessLock | None = None
        try:
            directory.mkdir(exist_ok=True)
            # Locked and written under a name a prune does not look at, then renamed:
            # a prune never sees the record unlocked.
            lock = ProcessLock(unlisted)
            lock.try_acquire()
            lock.note_holder("".join(f"{hex_digest}\n" for hex_digest in self._digests))
            replace(unlisted, record)
        except OSError as exc:  # the pull goes on; only a prune could miss it
            log.debug("cannot record the blobs this pull uses: %s", exc)
            if lock is not None:
                lock.close()
            with contextlib.suppress(OSError):
                unlisted.unlink()
            return self
        self._record, self._lock = record, lock
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._record is not None and self._lock is not None:
            with contextlib.suppress(OSError):
                self._record.unlink()
            self._lock.close()
            self._record = self._lock = None


class InUseUnknown(Exception):
    """A running pull's record could not be read: treat every blob as in use."""


def blobs_in_use(cache: Path) -> set[str]:
    """The blob digests (hex) running pulls have recorded; ended pulls' records are removed.

    Raises :class:`InUseUnknown` if a running pull's record cannot be read.
    """
    in_use: set[str] = set()
    try:
        records = sorted((cache / RECORDS).glob(f"*{_SUFFIX}"))
    except OSError:
        return in_use
    for record in records:
        try:
            lock = ProcessLock(record)
        except FileNotFoundError:
            continue  # its pull ended meanwhile
        try:
            if lock.try_acquire():  # nobody holds it: its pull ended without cleaning up
                record.unlink(missing_ok=True)
                continue
            try:
                text = record.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise InUseUnknown(f"cannot read {record}: {exc}") from exc
            in_use.update(line for line in text.split() if line)
        finally:
            lock.close()
    return in_use
