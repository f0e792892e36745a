"""``--format oci-dir`` links the cache's blob files into the layout where that is safe:
the same tree as a copy (bytes, modes, mtimes), a copy wherever a link would not be
safe, and a layout file edited in place is caught by the next pull that reads the cache."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import blob_copy, os_copies, pull_image
from dockerdrag.digest import Digest
from dockerdrag.oci_archive import write_oci_dir
from dockerdrag.store import BlobStore
from tests.support.archive_check import read_docker_archive
from tests.support.command import cli_command, cli_env
from tests.support.registry_server import RegistryServer
from tests.test_oci_archive import single, two_layer_image

pytestmark = pytest.mark.anyio

SeededRegistry = tuple[RegistryServer, dict[str, Any]]


def tree(root: Path) -> list[tuple[str, bytes, int, int]]:
    """Every file below ``root``: name, bytes, mode, mtime."""
    return sorted(
        (str(p.relative_to(root)), p.read_bytes(), p.stat().st_mode, int(p.stat().st_mtime))
        for p in root.rglob("*")
        if p.is_file()
    )


def layer_files(layout: Path, cache: Path, pushed: Any) -> list[tuple[Path, Path]]:
    """(layout file, cache file) of each layer."""
    hexes = {digest.split(":")[1] for digest in pushed.layer_digests}
    return [
        (layout / "blobs" / "sha256" / hex_digest, cache / "blobs" / "sha256" / hex_digest)
        for hex_digest in sorted(hexes)
    ]


async def test_the_layout_links_the_cache_files_and_matches_a_copy(
    seeded_registry: SeededRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, images = seeded_registry
    pushed = images["multilayer"]
    for name in ("linked", "copied"):
        if name == "copied":
            monkeypatch.setattr(os_copies, "_link", None)
        await pull_image(
            pushed.reference,
            output=tmp_path / name,
            format="oci-dir",
            insecure=[server.host],
            cache_dir=tmp_path / f"cache-{name}",
        )
    linked = layer_files(tmp_path / "linked", tmp_path / "cache-linked", pushed)
    assert linked
    for in_layout, in_cache in linked:
        assert os.path.samefile(in_layout, in_cache)
    for in_layout, _ in layer_files(tmp_path / "copied", tmp_path / "cache-copied", pushed):
        assert in_layout.stat().st_nlink == 1
    assert tree(tmp_path / "linked") == tree(tmp_path / "copied")


def _pull_with_umask(args: list[str], cwd: Path, umask: int) -> None:
    def set_umask() -> None:
        os.umask(umask)

    completed = subprocess.run(
        cli_command(*args, "-q"),
        cwd=cwd,
        env=cli_env(cwd),
        preexec_fn=set_umask,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def test_a_cache_written_under_another_umask_is_copied(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    """Layout files get the mode of the pull's umask: a cache file of another mode is
    copied, not linked (a link would carry the cache's mode)."""
    server, images = seeded_registry
    pushed = images["multilayer"]
    common = [pushed.reference, "--insecure", server.host]
    _pull_with_umask([*common, "-o", "first.tar"], tmp_path, 0o022)
    _pull_with_umask([*common, "-o", "layout", "--format", "oci-dir"], tmp_path, 0o077)
    cache = tmp_path / ".xdg-cache" / "dockerdrag"
    files = layer_files(tmp_path / "layout", cache, pushed)
    assert files
    for in_layout, in_cache in files:
        assert stat.S_IMODE(in_cache.stat().st_mode) == 0o644
        assert stat.S_IMODE(in_layout.stat().st_mode) == 0o600
        assert in_layout.stat().st_nlink == 1
        assert in_layout.read_bytes() == in_cache.read_bytes()


async def test_a_layout_file_edited_in_place_is_fetched_again_by_the_next_pull(
    seeded_registry: SeededRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, images = seeded_registry
    pushed = images["multilayer"]
    cache = tmp_path / "cache"
    await pull_image(
        pushed.reference,
        output=tmp_path / "layout",
        format="oci-dir",
        insecure=[server.host],
        cache_dir=cache,
    )
    in_layout, in_cache = layer_files(tmp_path / "layout", cache, pushed)[0]
    with open(in_layout, "r+b") as edited:  # in place: the cache's name sees it too
        edited.seek(in_layout.stat().st_size // 2)
        byte = edited.read(1)
        edited.seek(-1, os.SEEK_CUR)
        edited.write(bytes([byte[0] ^ 0xFF]))
    assert hashlib.sha256(in_cache.read_bytes()).hexdigest() != in_cache.name
    caplog.set_level(logging.WARNING, logger="dockerdrag")
    await pull_image(
        pushed.reference,
        output=tmp_path / "again.tar",
        format="oci",
        insecure=[server.host],
        cache_dir=cache,
    )
    read_docker_archive(tmp_path / "again.tar")  # every layer checked against its diff_id
    assert f"cached blob {in_cache} is corrupt" in caplog.text
    assert hashlib.sha256(in_cache.read_bytes()).hexdigest() == in_cache.name
    assert not os.path.samefile(in_layout, in_cache)


def test_a_file_linked_elsewhere_with_another_mtime_is_copied(tmp_path: Path) -> None:
    """A second layout that links a blob file with its own mtime would change the first
    layout's: such a file is copied; one with no other name is linked, with the mtime."""
    image = single(tmp_path / "cache", two_layer_image(), "two:1")
    paths = sorted(image.manifests[0].blob_paths.values())
    shared, alone = paths[0], paths[1]
    os.link(shared, tmp_path / "elsewhere")
    os.utime(shared, (12345, 12345))
    write_oci_dir(tmp_path / "layout", [image], link_blob_files=True)
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    assert (blobs / shared.name).stat().st_nlink == 1
    assert (blobs / shared.name).read_bytes() == shared.read_bytes()
    assert os.path.samefile(blobs / alone.name, alone)
    assert (blobs / shared.name).stat().st_mtime == (blobs / alone.name).stat().st_mtime
    assert shared.stat().st_mtime == 12345  # the other layout's mtime stays


def test_a_use_of_a_cached_blob_keeps_its_mtime(tmp_path: Path) -> None:
    """A use is noted in the access time: the mtime a layout gave a linked file stays."""
    store = BlobStore(tmp_path / "cache")
    data = b"blob"
    digest = Digest.of(data)
    path = store.blob_path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (1000, 2000))
    store.note_use(digest)
    assert path.stat().st_mtime == 2000
    assert path.stat().st_atime > 2000


def test_a_linked_blob_file_is_flushed_to_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache writes blobs without fsync: a layout that links one flushes it, as it
    flushes a copy, before the layout is in place."""
    image = single(tmp_path / "cache", two_layer_image(), "two:1")
    paths = sorted(image.manifests[0].blob_paths.values())
    flushed: set[tuple[int, int]] = set()
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        found = os.fstat(fd)
        flushed.add((found.st_dev, found.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(blob_copy.os, "fsync", recording_fsync)
    write_oci_dir(tmp_path / "layout", [image], link_blob_files=True)
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    for path in paths:
        assert os.path.samefile(blobs / path.name, path)
        found = path.stat()
        assert (found.st_dev, found.st_ino) in flushed
