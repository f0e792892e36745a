"""Layers decoded by worker processes, each into its region of the archive file (Linux).

Threads of one interpreter share its lock: while the event loop downloads, decoder
threads wait for it between every inflate and hash call. A worker process
(:mod:`~dockerdrag.decoder_worker`) inflates, hashes and writes a layer with an
interpreter of its own, so the pull and its decoders keep both cores busy.
:class:`DecoderProcesses` starts the workers with the archive file inherited and hands
each job to an idle one; the thread that asked waits for it, answering its questions
about a blob that is still arriving (:class:`LayerSource`) and watching for a stop.

A worker that dies or cannot be started is an :class:`~dockerdrag.errors.OutputError`;
a stop kills the worker of each job in flight; :meth:`DecoderProcesses.close` ends every
worker and waits for it, so no process outlives the archive writer.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from .blob_follow import FollowLost
from .closing import ClosedOnExit
from .digest import Digest
from .errors import IntegrityError, OutputError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ["PROCESSES_MIN_BYTES", "DecoderProcesses", "LayerSource", "processes_available"]

PROCESSES_MIN_BYTES: Final = 64 << 20
"""The least compressed bytes an archive's layers must hold to be decoded by worker
processes: starting an interpreter costs about what inflating a few dozen megabytes
does, so smaller images are decoded by threads."""

_POLL_SECONDS: Final = 0.05
"""How often a thread waiting for its worker looks for a stop."""
_EXIT_SECONDS: Final = 5.0
"""How long an idle worker may take to exit once its socket is closed."""
_BOOT: Final = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from dockerdrag.decoder_worker import main; sys.exit(main(sys.argv[2:]))"
)
_PACKAGE_PARENT: Final = str(Path(__file__).resolve().parent.parent)


def processes_available() -> bool:
    """Whether layers can be decoded by worker processes here (Linux, a Python
    executable to start, not a frozen application)."""
    return sys.platform == "linux" and bool(sys.executable) and not getattr(sys, "frozen", False)


class LayerSource(Protocol):
    """A layer's blob as the pull has it."""

    @property
    def digest(self) -> Digest:
        """The blob's digest (it names the blob in messages)."""

    @property
    def size(self) -> int:
        """The blob's size in bytes."""

    def wait_beyond(self, position: int) -> tuple[Path, int, bool]:
        """Block until the blob's bytes on disk reach past ``position`` (or it started
        over) or it is verified; the file, how far its bytes reach, whether verified."""

    def wait_verified(self) -> Path:
        """Block until the blob is verified; its path."""

    def check_stop(self) -> None:
        """Raise if the pull was stopped."""


class _Worker:
    """One worker process and the socket to it."""

    def __init__(self, archive_fd: int) -> None:
        # Imported here: a pull that decodes no layer in a process never loads it.
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        with ours, theirs:
            fds = [str(theirs.fileno()), str(archive_fd)]
            try:
                self.process = subprocess.Popen(
                    [sys.executable, "-c", _BOOT, _PACKAGE_PARENT, *fds],
                    pass_fds=(theirs.fileno(), archive_fd),
                    stdin=subprocess.DEVNULL,
                )
            except OSError as exc:
                raise OutputError(f"cannot start a decoder process: {exc}") from exc
            self.channel: Connection = Connection(ours.detach())

    def ask(self, message: tuple[Any, ...]) -> None:
        try:
            self.channel.send(message)
        except OSError as exc:
            raise self._died() from exc

    def answer(self) -> tuple[Any, ...]:
        try:
            message: tuple[Any, ...] = self.channel.recv()
        except (EOFError, OSError) as exc:
            raise self._died() from exc
        return message

    def _died(self) -> OutputError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(_EXIT_SECONDS)
        return OutputError(
            f"a decoder process ended unexpectedly (exit status {self.process.returncode})"
        )

    def kill(self) -> None:
        """End the process at once and wait for it."""
        self.channel.close()
        self.process.kill()
        self.process.wait()

    def end(self) -> None:
        """Let the idle process exit (its socket closes), killing it if it does not."""
        self.channel.close()
        try:
            self.process.wait(_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class DecoderProcesses(ClosedOnExit):
    """``count`` worker processes writing layers into the archive file open as ``fd``."""

    def __init__(self, fd: int, count: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._closed = False
        try:
            for _ in range(count):
                self._idle.append(_Worker(fd))
        except BaseException:
            self.close()
            raise

    def decode(
        self,
        start: int,
        size: int,
        source: LayerSource,
        *,
        follow: bool,
        failed: threading.Event,
    ) -> tuple[int, Digest] | None:
        """Decode the layer into ``[start, start + size)`` (padded when it is ``size``
        bytes long): how many bytes it had (``size + 1`` if more) and their sha256, or
        None once ``failed`` is set. ``follow``: read the blob as it arrives (a layer
        the download restarted raises :class:`~dockerdrag.blob_follow.FollowLost`)."""
        worker = self._take()
        try:
            path = None if follow else str(source.wait_verified())
            worker.ask(("job", start, size, path, source.digest.hex))
            while True:
                while not worker.channel.poll(_POLL_SECONDS):
                    source.check_stop()
                    if failed.is_set():
                        self._kill(worker)
                        return None
                message = worker.answer()
                if message[0] == "need":
                    worker.ask(("more", *_arrived(source, message[1], message[2])))
                    continue
                self._give_back(worker)
                return _result(message)
        except BaseException:
            self._kill(worker)
            raise

    def close(self) -> None:
        """End every worker: the busy ones at once, the idle ones by closing their
        sockets; wait for each."""
        with self._lock:
            self._closed = True
            busy, self._busy = self._busy, set()
            idle, self._idle = self._idle, []
        for worker in busy:
            worker.kill()
        for worker in idle:
            worker.end()

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise ValueError("decode on closed DecoderProcesses")
            worker = self._idle.pop() if self._idle else None
        if worker is None:  # one was killed: a new one takes its place
            worker = _Worker(self._fd)
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._busy:
                self._busy.discard(worker)
                self._idle.append(worker)

    def _kill(self, worker: _Worker) -> None:
        with self._lock:
            mine = worker in self._busy
            self._busy.discard(worker)
        if mine:
            worker.kill()


def _arrived(source: LayerSource, position: int, verified_only: bool) -> tuple[str, int, bool]:
    """The answer to a worker's ``need``: the blob's file, how far it reaches, verified."""
    if verified_only:
        return str(source.wait_verified()), -1, True
    path, end, verified = source.wait_beyond(position)
    return str(path), end, verified


def _result(message: tuple[Any, ...]) -> tuple[int, Digest]:
    """A worker's ``done`` as (count, sha256), its ``failed`` as the error it stands for."""
    if message[0] == "done":
        return message[1], Digest(message[2])
    kind = message[1]
    if kind == "lost":
        raise FollowLost(message[2])
    if kind == "corrupt":
        raise IntegrityError(message[2])
    if kind == "os":
        raise OSError(message[2], message[3])
    raise OutputError(f"a decoder process failed: {message[2]}")
