"""The writer thread waits for blobs on the BlobGate, woken by readiness or cancellation."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dockerdrag.blob_gate import BlobGate, WriterCancelled
from dockerdrag.digest import Digest
from dockerdrag.store import BlobStore

DIGEST = Digest.of(b"blob")


def _gate(tmp_path: Path) -> BlobGate:
    gate = BlobGate(BlobStore(tmp_path), [])
    gate.paths[DIGEST] = tmp_path / "pending"
    return gate


def _wait_in_thread(gate: BlobGate) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def wait() -> None:
        try:
            outcome.append(gate.wait(DIGEST))
        except WriterCancelled as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, outcome


def test_a_waiting_writer_wakes_when_the_blob_is_ready(tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    thread, outcome = _wait_in_thread(gate)
    gate.mark_ready(DIGEST, tmp_path / "blob", downloaded=True)
    thread.join(timeout=10)
    assert outcome == [tmp_path / "blob"]
    assert gate.hashed_in_this_pull(DIGEST)


def test_a_blob_is_ready_once_marked_so(tmp_path: Path) -> None:
    """What the parallel docker writer asks before it takes a larger layer still arriving."""
    gate = _gate(tmp_path)
    gate.note_prefix(DIGEST, tmp_path / "pending", 100)
    assert not gate.is_ready(DIGEST)
    gate.mark_ready(DIGEST, tmp_path / "blob")
    assert gate.is_ready(DIGEST)


def test_a_waiting_writer_wakes_when_the_pull_is_cancelled(tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    thread, outcome = _wait_in_thread(gate)
    gate.cancel()
    thread.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], WriterCancelled)
    with pytest.raises(WriterCancelled):
        gate.wait(DIGEST)
