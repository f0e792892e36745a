"""The blob store's resume state, byte ranges, and the retry/reconnect arithmetic."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from dockerdrag.blob_body import Reconnects
from dockerdrag.digest import Digest
from dockerdrag.download import TransferOptions
from dockerdrag.errors import NetworkError, SizeMismatchError
from dockerdrag.retry import RetryPolicy, parse_retry_after
from dockerdrag.store import BlobStore, ByteRanges

DIGEST = Digest.of(b"x" * 100)


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    blobs = BlobStore(tmp_path / "cache")
    blobs.ensure()
    return blobs


# -- ByteRanges ------------------------------------------------------------------------


def test_ranges_merge_touching_and_overlapping() -> None:
    ranges = ByteRanges([(10, 20), (0, 5), (20, 30), (4, 8)])
    assert ranges.as_list() == [(0, 8), (10, 30)]
    assert ranges.total() == 28
    assert ranges.prefix() == 8
    ranges.add(8, 10)
    assert ranges.as_list() == [(0, 30)]


def test_ranges_gaps_and_prefix() -> None:
    ranges = ByteRanges([(5, 10), (15, 20)])
    assert ranges.prefix() == 0
    assert ranges.gaps(25) == [(0, 5), (10, 15), (20, 25)]
    assert ByteRanges().gaps(3) == [(0, 3)]
    assert ByteRanges([(0, 3)]).gaps(3) == []
    assert ranges.clipped(17).as_list() == [(5, 10), (15, 17)]


def test_empty_ranges_are_ignored() -> None:
    ranges = ByteRanges([(4, 4), (6, 2)])
    assert ranges.as_list() == []


# -- resume state ----------------------------------------------------------------------


def test_no_partial_means_nothing_to_resume(store: BlobStore) -> None:
    assert store.load_ranges(DIGEST, 100).as_list() == []


def test_partial_without_sidecar_is_a_prefix(store: BlobStore) -> None:
    store.partial_path(DIGEST).write_bytes(b"x" * 40)
    assert store.load_ranges(DIGEST, 100).as_list() == [(0, 40)]


def test_oversized_partial_is_emptied(store: BlobStore) -> None:
    store.partial_path(DIGEST).write_bytes(b"x" * 140)
    assert store.load_ranges(DIGEST, 100).as_list() == []
    assert store.partial_path(DIGEST).stat().st_size == 0


def test_sidecar_ranges_are_clipped_to_the_file(store: BlobStore) -> None:
    store.partial_path(DIGEST).write_bytes(b"x" * 60)
    store.save_ranges(DIGEST, 100, ByteRanges([(0, 10), (50, 80)]))
    assert store.load_ranges(DIGEST, 100).as_list() == [(0, 10), (50, 60)]


@pytest.mark.parametrize(
    "sidecar",
    [
        "{broken",
        json.dumps({"size": 99, "ranges": [[0, 10]]}),
        json.dumps({"size": 100, "ranges": [[0, 120]]}),
        json.dumps({"size": 100, "ranges": [[-1, 10]]}),
        json.dumps({"size": 100}),
        json.dumps({"size": 100, "ranges": [["a", 3]]}),
    ],
)
def test_unusable_sidecar_empties_the_partial(store: BlobStore, sidecar: str) -> None:
    store.partial_path(DIGEST).write_bytes(b"x" * 60)
    store.ranges_path(DIGEST).write_text(sidecar)
    assert store.load_ranges(DIGEST, 100).as_list() == []
    assert store.partial_path(DIGEST).stat().st_size == 0
    assert not store.ranges_path(DIGEST).exists()


def test_sidecar_without_partial_is_dropped(store: BlobStore) -> None:
    store.save_ranges(DIGEST, 100, ByteRanges([(0, 10)]))
    assert store.load_ranges(DIGEST, 100).as_list() == []
    assert not store.ranges_path(DIGEST).exists()


def test_commit_checks_size_and_drops_the_sidecar(store: BlobStore) -> None:
    store.partial_path(DIGEST).write_bytes(b"x" * 100)
    store.save_ranges(DIGEST, 100, ByteRanges([(0, 100)]))
    with pytest.raises(SizeMismatchError):
        store.commit(DIGEST, 101)
    path = store.commit(DIGEST, 100)
    assert path == store.blob_path(DIGEST) and path.read_bytes() == b"x" * 100
    assert not store.partial_path(DIGEST).exists()
    assert not store.ranges_path(DIGEST).exists()
    assert store.has(DIGEST, 100)


# -- retry arithmetic ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), ("0", 0.0), (" 2.5 ", 2.5), ("-1", None), ("nan", None), ("soon", None)],
)
def test_retry_after_seconds(header: str, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = parse_retry_after(when)
    assert seconds is not None and 28 <= seconds <= 31
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00") == 0.0  # no zone: GMT


def test_retry_delay_is_capped() -> None:
    policy = RetryPolicy()
    assert policy.delay(0, 3600.0) == policy.max_retry_after
    assert all(0 <= policy.delay(10, None) <= policy.max_delay for _ in range(50))
    assert all(0 <= policy.delay(0, None) <= policy.base_delay for _ in range(50))


def test_reconnect_after_progress_is_free_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.01, max_reconnects=3)
    budget = Reconnects(policy, 0)
    error = NetworkError("reset")
    step = policy.reconnect_progress_bytes
    assert [budget.delay_after(step * n, error) for n in (1, 2, 3)] == [0.0, 0.0, 0.0]
    with pytest.raises(NetworkError):
        budget.delay_after(step * 4, error)


def test_reconnects_without_progress_back_off_then_give_up() -> None:
    policy = RetryPolicy(base_delay=0.01, attempts=3)
    budget = Reconnects(policy, 0)
    error = NetworkError("reset")
    delays = [budget.delay_after(10 * n, error) for n in (1, 2)]
    assert all(0 <= d <= 0.02 for d in delays)
    step = policy.reconnect_progress_bytes
    assert budget.delay_after(20 + step, error) == 0.0  # progress resets the count
    budget.delay_after(30 + step, error)
    budget.delay_after(40 + step, error)
    with pytest.raises(NetworkError):
        budget.delay_after(50 + step, error)


def test_a_slow_but_long_stream_counts_as_progress() -> None:
    policy = RetryPolicy(reconnect_progress_seconds=0.05, attempts=1)
    budget = Reconnects(policy, 0)
    time.sleep(0.06)
    assert budget.delay_after(1, NetworkError("reset")) == 0.0


def test_transfer_options_are_validated() -> None:
    with pytest.raises(ValueError):
        TransferOptions(chunk_size=0)


def test_atomic_output_is_anonymous_until_complete(tmp_path: Path) -> None:
    """While the archive is written nothing is visible beside it (O_TMPFILE), so not even a
    SIGKILL can leave a partial file behind; the finished file appears atomically."""
    from dockerdrag.store import atomic_output

    output = tmp_path / "out.tar"
    with atomic_output(output) as handle:
        handle.sequential().write(b"x" * 1000)
        assert list(tmp_path.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["out.tar"]
    assert output.read_bytes() == b"x" * 1000
    assert oct(output.stat().st_mode & 0o777) == oct(0o644)


def test_atomic_output_leaves_nothing_on_error(tmp_path: Path) -> None:
    from dockerdrag.store import atomic_output

    with pytest.raises(RuntimeError), atomic_output(tmp_path / "out.tar") as handle:
        handle.sequential().write(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
