"""``dockerdrag verify`` as a user runs it: output, exit codes, escaping, flat memory."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

from tests.support.command import run_cli

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "docker-save-20.10"
MULTI = FIXTURES / "multi" / "docker-save.tar"


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def verify(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("verify", *args, cwd=cwd, env=environment())


def with_members(source: Path, target: Path, replace: dict[str, bytes]) -> None:
    """``source`` with the members ``replace`` names holding other bytes."""
    with tarfile.open(source) as old, tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as new:
        for member in old.getmembers():
            if member.name in replace:
                member.size = len(replace[member.name])
                new.addfile(member, io.BytesIO(replace[member.name]))
            else:
                new.addfile(member, old.extractfile(member) if member.isfile() else None)


def test_a_good_archive_prints_a_summary_and_exits_0(tmp_path: Path) -> None:
    done = verify(str(MULTI), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first, image = done.stdout.splitlines()
    assert first.startswith(f"{MULTI}: OK (docker archive; 1 image(s), 12 files")
    assert image.split() == [
        "127.0.0.1:5101/fid/multi:latest",
        "linux/amd64",
        "sha256:ffa30e79f59355cf43cb47f64ecbb5600ab615b2f4177f8df5d67032ae3f4f60",
        "3",
        "layer(s)",
    ]
    assert verify("-q", str(MULTI), cwd=tmp_path).stdout == ""


def test_json_summary(tmp_path: Path) -> None:
    done = verify("--json", str(MULTI), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["layout"] == "docker" and summary["complete"] is True
    (image,) = summary["images"]
    assert image["repo_tags"] == ["127.0.0.1:5101/fid/multi:latest"]
    assert len(image["layers"]) == 3


def test_a_damaged_archive_exits_6_naming_the_member(tmp_path: Path) -> None:
    with tarfile.open(MULTI) as tar:
        layer = next(m for m in tar.getmembers() if m.name.endswith("/layer.tar"))
    data = bytearray(MULTI.read_bytes())
    data[layer.offset_data + 700] ^= 0x20
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(data))
    done = verify(str(damaged), cwd=tmp_path)
    assert done.returncode == 6
    started, error = done.stderr.splitlines()
    assert started == f"Verifying {damaged} (46.1 kB)"
    assert error.startswith(f"dockerdrag: error: {layer.name}: uncompressed content")
    assert "Traceback" not in done.stderr
    as_json = verify("--json", str(damaged), cwd=tmp_path)
    assert as_json.returncode == 6 and layer.name in json.loads(as_json.stdout)["message"]


def test_missing_archive_exits_4(tmp_path: Path) -> None:
    done = verify(str(tmp_path / "nothing.tar"), cwd=tmp_path)
    assert done.returncode == 4
    assert "no such archive" in done.stderr


def test_names_from_the_archive_are_escaped(tmp_path: Path) -> None:
    with tarfile.open(MULTI) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    evil = "evil\x1b]0;owned\x07/x:latest"
    manifest[0]["RepoTags"] = [evil]
    damaged = tmp_path / "evil.tar"
    with_members(MULTI, damaged, {"manifest.json": json.dumps(manifest).encode()})
    done = verify(str(damaged), cwd=tmp_path)
    assert done.returncode == 6
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr
    assert "\\x1b]0;owned\\x07" in done.stderr


def _sparse_layer_archive(path: Path, layer_size: int) -> None:
    """A legacy docker archive of one image whose two layers are ``layer_size`` bytes of
    zeros: one uncompressed (written as a hole in a sparse file), one gzip."""
    zeros = hashlib.sha256()
    block = bytes(1 << 20)
    for _ in range(layer_size // len(block)):
        zeros.update(block)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    gzipped = b"".join(compressor.compress(block) for _ in range(layer_size // len(block)))
    gzipped += compressor.flush()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{zeros.hexdigest()}"] * 2},
        }
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": ["big:1"], "Layers": ["a/layer.tar", "b/layer.gz"]}]
    ).encode()
    repositories = json.dumps({"big": {"1": zeros.hexdigest()}}).encode()
    with open(path, "wb") as out:
        info = tarfile.TarInfo("a/layer.tar")
        info.size = layer_size
        out.write(info.tobuf(tarfile.USTAR_FORMAT))
        out.seek(layer_size, os.SEEK_CUR)  # a hole: zeros that take no disk space
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            tar.offset = out.tell()
            for name, data in [
                ("b/layer.gz", gzipped),
                (config_name, config),
                ("manifest.json", manifest),
                ("repositories", repositories),
            ]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_memory_stays_flat_on_a_large_archive(tmp_path: Path) -> None:
    """Two 384 MiB layers (one stored, one gzip): the verifier's peak RSS stays far below."""
    layer_size = 384 << 20
    archive = tmp_path / "big.tar"
    _sparse_layer_archive(archive, layer_size)
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'dockerdrag', 'verify', sys.argv[1]])\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, str(archive)],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=300,
        check=True,
    )
    returncode, max_rss_kib = map(int, done.stdout.split()[-2:])
    assert returncode == 0, done.stderr
    assert done.stdout.startswith(f"{archive}: OK (docker archive; 1 image(s), 5 files")
    assert max_rss_kib < 150 * 1024, max_rss_kib  # the layers are 768 MiB


def test_the_summary_escapes_what_the_archive_says(tmp_path: Path) -> None:
    with tarfile.open(MULTI) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = json.loads(tar.extractfile(manifest[0]["Config"]).read())  # type: ignore[union-attr]
    config["architecture"] = "amd64\x1b]0;owned\x07\u202e"
    raw = json.dumps(config).encode()
    old_name, new_name = manifest[0]["Config"], f"{hashlib.sha256(raw).hexdigest()}.json"
    manifest[0]["Config"] = new_name
    with tarfile.open(MULTI) as old, tarfile.open(tmp_path / "odd.tar", "w") as new:
        for member in old.getmembers():
            if member.name == "manifest.json":
                data = json.dumps(manifest).encode()
                member.size = len(data)
                new.addfile(member, io.BytesIO(data))
            elif member.name == old_name:
                member.name, member.size = new_name, len(raw)
                new.addfile(member, io.BytesIO(raw))
            else:
                new.addfile(member, old.extractfile(member) if member.isfile() else None)
    done = verify(str(tmp_path / "odd.tar"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "\u202e" not in done.stdout
    assert "amd64\\x1b]0;owned\\x07\\u202e" in done.stdout


def test_progress_on_stderr(tmp_path: Path) -> None:
    redrawn = verify("--progress", "tty", str(MULTI), cwd=tmp_path)
    assert redrawn.returncode == 0, redrawn.stderr
    # (text mode reads each "\r" as a newline)
    assert redrawn.stderr.startswith(f"\n\x1b[2KVerifying {MULTI}: ")
    assert redrawn.stderr.endswith("\n\x1b[2K")  # the line is gone once done
    assert "34.8 of 46.1 kB" in redrawn.stderr  # every member byte read, the last report
    plain = verify("--progress", "plain", str(MULTI), cwd=tmp_path)
    assert plain.stderr == f"Verifying {MULTI} (46.1 kB)\n"
    assert plain.stdout == redrawn.stdout
    assert verify(str(MULTI), cwd=tmp_path).stderr == plain.stderr  # auto, not a terminal
    assert verify("-q", "--progress", "tty", str(MULTI), cwd=tmp_path).stderr == ""
    assert verify("--json", "--progress", "tty", str(MULTI), cwd=tmp_path).stderr == ""
