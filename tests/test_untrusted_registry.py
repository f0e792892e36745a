"""A registry is untrusted input: lying or malformed answers become typed errors.

A fault proxy sits between the client and the real registry and serves the bad
documents (the real registry refuses to store them). Every case checks: the
error type, nothing at the output path, no temp file left beside it.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import (
    DigestMismatchError,
    DockerDragError,
    IntegrityError,
    Puller,
    RegistryError,
    RetryPolicy,
    TransferOptions,
)
from dockerdrag.errors import DiffIDMismatchError, InvalidManifestError
from tests.support import pusher
from tests.support.fault_proxy import FaultProxy, flip_byte, replace_body
from tests.support.images import (
    build_image,
    make_config,
    make_manifest,
    push_built,
    push_image,
    text_layer,
)
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


async def pull_through(proxy: FaultProxy, reference: str, tmp_path: Path) -> Any:
    async with Puller(
        insecure=[proxy.host],
        cache_dir=tmp_path / "cache",
        use_docker_config=False,
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    ) as puller:
        return await puller.pull(f"{proxy.host}/{reference}", output=tmp_path / "out" / "x.tar")


def assert_nothing_written(tmp_path: Path) -> None:
    assert list((tmp_path / "out").iterdir()) == []


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


async def expect_failure(
    proxy: FaultProxy, reference: str, tmp_path: Path, error: type[DockerDragError]
) -> DockerDragError:
    with pytest.raises(error) as info:
        await pull_through(proxy, reference, tmp_path)
    assert_nothing_written(tmp_path)
    return info.value


async def test_manifest_by_digest_with_other_body(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, out_dir: Path
) -> None:
    wanted = push_image(registry, "bad/bydigest", "a", [text_layer("a", "a")])
    other = push_image(registry, "bad/bydigest", "b", [text_layer("b", "b")])
    proxy.add(
        replace_body(other.manifest, DOCKER_MANIFEST),
        path=f"/manifests/{wanted.manifest_digest}",
        times=None,
    )
    error = await expect_failure(
        proxy, f"bad/bydigest@{wanted.manifest_digest}", tmp_path, DigestMismatchError
    )
    assert wanted.manifest_digest in str(error)


async def test_docker_content_digest_header_that_lies(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, out_dir: Path
) -> None:
    pushed = push_image(registry, "bad/header", "latest", [text_layer("a", "a")])
    liar = "sha256:" + "0" * 64
    proxy.add(
        replace_body(pushed.manifest, DOCKER_MANIFEST, {"Docker-Content-Digest": liar}),
        path="/manifests/latest",
        times=None,
    )
    await expect_failure(proxy, "bad/header:latest", tmp_path, DigestMismatchError)


@pytest.mark.parametrize(
    ("document", "media_type", "message"),
    [
        (
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "manifests": [], "layers": []},
            OCI_MANIFEST,
            "ambiguous",
        ),
        (
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "config": {}},
            OCI_INDEX,
            "",
        ),
        (
            {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []},
            "application/json",
            "schema 1",
        ),
        ("not json at all", DOCKER_MANIFEST, ""),
    ],
    ids=["manifest-with-manifests", "index-with-config", "schema1", "garbage"],
)
async def test_malformed_manifests_are_rejected(
    registry: RegistryServer,
    proxy: FaultProxy,
    tmp_path: Path,
    out_dir: Path,
    document: object,
    media_type: str,
    message: str,
) -> None:
    body = document.encode() if isinstance(document, str) else json.dumps(document).encode()
    proxy.add(replace_body(body, media_type), path="/manifests/", times=None)
    error = await expect_failure(proxy, "bad/doc:latest", tmp_path, InvalidManifestError)
    assert message.lower() in str(error).lower()


async def test_content_type_disagreeing_with_body(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, out_dir: Path
) -> None:
    pushed = push_image(registry, "bad/ctype", "latest", [text_layer("a", "a")])
    proxy.add(replace_body(pushed.manifest, OCI_INDEX), path="/manifests/latest", times=None)
    await expect_failure(proxy, "bad/ctype:latest", tmp_path, InvalidManifestError)


async def test_oversized_manifest_is_refused_without_reading_it_all(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, out_dir: Path
) -> None:
    huge = b'{"schemaVersion":2,"pad":"' + b"x" * (5 << 20) + b'"}'
    proxy.add(replace_body(huge, OCI_MANIFEST), path="/manifests/", times=None)
    error = await expect_failure(proxy, "bad/huge:latest", tmp_path, RegistryError)
    assert "limit" in str(error)


async def test_config_blob_that_lies(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, out_dir: Path
) -> None:
    pushed = push_image(registry, "bad/config", "latest", [text_layer("a", "a")])
    proxy.add(flip_byte(3), path=f"/blobs/{pushed.config_digest}", times=None)
    await expect_failure(proxy, "bad/config:latest", tmp_path, IntegrityError)


async def test_layer_blob_that_lies_every_time(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, out_dir: Path
) -> None:
    pushed = push_image(registry, "bad/layer", "latest", [text_layer("a", "a" * 5000)])
    digest = pushed.layer_digests[0]
    proxy.add(flip_byte(10), path=f"/blobs/{digest}", times=None)
    error = await expect_failure(proxy, "bad/layer:latest", tmp_path, DigestMismatchError)
    assert digest in str(error)
    blob_dir = tmp_path / "cache" / "blobs" / "sha256"
    assert not (blob_dir / digest.split(":")[1]).exists()
    # Fetched twice: once, then one fresh refetch after the mismatch; never more.
    assert len(proxy.requests_for(f"/blobs/{digest}")) == 2


async def test_config_diff_ids_that_do_not_match_the_layers(
    registry: RegistryServer, tmp_path: Path, out_dir: Path
) -> None:
    real = text_layer("a", "a")
    decoy = text_layer("b", "b")
    config = make_config([decoy.diff_id])
    body = make_manifest(config, [real], media_types="docker")
    pusher.push_blob(registry, "bad/diffid", config)
    pusher.push_blob(registry, "bad/diffid", real.blob)
    pusher.push_manifest(registry, "bad/diffid", "latest", body, DOCKER_MANIFEST)
    async with Puller(
        insecure=[registry.host], cache_dir=tmp_path / "c", use_docker_config=False
    ) as puller:
        with pytest.raises(DiffIDMismatchError):
            await puller.pull(f"{registry.host}/bad/diffid:latest", output=out_dir / "x.tar")
    assert list(out_dir.iterdir()) == []
    # The layer itself was verified against its digest and stays cached.
    assert (tmp_path / "c" / "blobs" / "sha256" / real.digest.split(":")[1]).exists()


async def test_layer_count_differs_from_diff_ids(
    registry: RegistryServer, tmp_path: Path, out_dir: Path
) -> None:
    layers = [text_layer("a", "a"), text_layer("b", "b")]
    config = make_config([layers[0].diff_id])
    body = make_manifest(config, layers, media_types="docker")
    pusher.push_blob(registry, "bad/count", config)
    for built in layers:
        pusher.push_blob(registry, "bad/count", built.blob)
    pusher.push_manifest(registry, "bad/count", "latest", body, DOCKER_MANIFEST)
    async with Puller(
        insecure=[registry.host], cache_dir=tmp_path / "c", use_docker_config=False
    ) as puller:
        with pytest.raises(InvalidManifestError, match="diff_ids"):
            await puller.pull(f"{registry.host}/bad/count:latest", output=out_dir / "x.tar")
    assert list(out_dir.iterdir()) == []


async def test_push_built_helper_roundtrip_sanity(registry: RegistryServer) -> None:
    # Guards the helpers used above: a normal image pushed the same way is served intact.
    image = build_image([text_layer("ok", "ok")])
    pushed = push_built(registry, "bad/sanity", "latest", image)
    assert pusher.get_manifest(registry, "bad/sanity", "latest").digest == pushed.manifest_digest


# A pull in a child process (so its peak memory is its own), through the fault proxy. The
# child reports its own peak RSS (VmHWM): a child's rusage also counts the test process's
# memory it was forked from.
_PULL_SCRIPT = """
import sys
import anyio
from dockerdrag import DockerDragError, Puller, RetryPolicy, TransferOptions

async def main(reference, cache, output, max_blob_size):
    options = TransferOptions(max_blob_size=int(max_blob_size))
    retry = RetryPolicy(attempts=2, base_delay=0.01)
    host = reference.split("/", 1)[0]
    async with Puller(
        insecure=[host], cache_dir=cache, use_docker_config=False, retry=retry, transfer=options
    ) as puller:
        await puller.pull(reference, output=output)

def peak_rss():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

try:
    anyio.run(main, *sys.argv[1:])
except DockerDragError as exc:
    print(type(exc).__name__, exc)
    print(peak_rss())
    sys.exit(exc.exit_code)
print("pulled")
print(peak_rss())
"""
_CHILD_ADDRESS_SPACE = 3 << 30  # a regression fails with MemoryError here, not the machine


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_CHILD_ADDRESS_SPACE, _CHILD_ADDRESS_SPACE))


def pull_in_child(reference: str, tmp_path: Path, max_blob_size: int) -> tuple[int, str, int]:
    """Pull ``reference`` in a child process: its exit status, output and peak RSS (bytes)."""
    arguments = [reference, str(tmp_path / "cache"), str(tmp_path / "out" / "x.tar")]
    child = subprocess.run(
        [sys.executable, "-c", _PULL_SCRIPT, *arguments, str(max_blob_size)],
        capture_output=True,
        text=True,
        timeout=120,  # only for "it did not hang"
        preexec_fn=_limit_address_space,
        check=False,
    )
    output, _, peak = child.stdout.rstrip("\n").rpartition("\n")
    assert peak.isdigit(), child.stdout + child.stderr
    return child.returncode, output, int(peak)


@pytest.mark.parametrize("claimed", [10**15, 10**13], ids=["1e15", "1e13"])
@pytest.mark.parametrize("max_blob_size", ["default", "unbounded"])
def test_a_descriptor_claiming_an_absurd_size_fails_fast_in_little_memory(
    registry: RegistryServer,
    proxy: FaultProxy,
    tmp_path: Path,
    out_dir: Path,
    claimed: int,
    max_blob_size: str,
) -> None:
    pushed = push_image(registry, "bad/size", "latest", [text_layer("a", "a" * 5000)])
    manifest = json.loads(pushed.manifest)
    manifest["layers"][0]["size"] = claimed
    proxy.add(
        replace_body(json.dumps(manifest).encode(), DOCKER_MANIFEST),
        path="/manifests/latest",
        times=None,
    )
    # Unbounded: no size limit, so only the registry's answer can tell the size is a lie
    # (and the chunk plan for the claimed size must cost nothing).
    limit = TransferOptions().max_blob_size if max_blob_size == "default" else 1 << 62
    status, output, peak_rss = pull_in_child(f"{proxy.host}/bad/size:latest", tmp_path, limit)
    assert status == IntegrityError.exit_code, output
    assert pushed.layer_digests[0] in output and str(claimed) in output
    if max_blob_size == "default":
        assert output.startswith("InvalidManifestError") and "claims" in output
        assert proxy.requests_for(f"/blobs/{pushed.layer_digests[0]}") == []
    else:
        assert output.startswith("SizeMismatchError"), output
    assert peak_rss < 100 << 20, f"peak RSS {peak_rss >> 20} MB"
    assert_nothing_written(tmp_path)
