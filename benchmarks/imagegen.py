"""The benchmark images: generated once, deterministically, cached on disk, pushed on demand.

* **big**: 8 gzip layers, ~1.07 GB compressed (one ~400 MB, five 100-160 MB, two small);
* **many**: 40 small gzip layers, ~26 MB compressed in all.

``--quick`` uses tiny stand-ins with the same shapes (3 layers of ~1 MB; 5 tiny layers).

Layer content is a tar of ``.bin`` files made of 32 KiB blocks: a run of random bytes
(``random.Random(seed).randbytes``) followed by a slice of a word-salad text corpus.
The random share of each block is calibrated once (bisection on a sample) so that the
compressor gives ~2.5x, like real image layers. Layers are compressed with ISA-L
(``isal_zlib``, level 1, gzip wrapper, mtime 0) in parallel worker processes and
streamed to disk; nothing holds a whole layer in memory.

The result lives in ``CACHE/images/<key>/`` (``blobs/<hex>``, ``image.json``); the key
hashes the spec and :data:`GENERATOR_VERSION`, so changing either regenerates.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import random
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from isal import isal_zlib

from tests.support import pusher
from tests.support.images import (
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    FIXED_MTIME,
    Descriptor,
    make_config,
    make_manifest,
)

GENERATOR_VERSION = 1
TARGET_RATIO = 2.5
BLOCK_SIZE = 32 << 10  # content is made of blocks of this size (the gzip window)
FILE_SIZE = 64 << 20  # largest file inside a layer tar
CORPUS_SIZE = 1 << 20
COMPRESS_LEVEL = 1
MB = 1_000_000


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """What to generate: ``layer_sizes`` are compressed-size targets in bytes."""

    name: str
    repo: str
    tag: str
    seed: int
    layer_sizes: tuple[int, ...]

    def key(self) -> str:
        blob = json.dumps([GENERATOR_VERSION, dataclasses.asdict(self)], sort_keys=True)
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def _many_sizes(count: int, total: int, seed: int) -> tuple[int, ...]:
    rng = random.Random(seed)
    weights = [rng.uniform(0.3, 1.7) for _ in range(count)]
    scale = total / sum(weights)
    return tuple(max(4096, round(w * scale)) for w in weights)


def image_specs(quick: bool) -> dict[str, ImageSpec]:
    """The two benchmark images, full size or the ``--quick`` stand-ins."""
    if quick:
        return {
            "big": ImageSpec("big", "bench/quick-big", "v1", 101, (1_200_000, 1_000_000, 800_000)),
            "many": ImageSpec("many", "bench/quick-many", "v1", 202, _many_sizes(5, 150_000, 2)),
        }
    big_mb = (400, 160, 140, 120, 100, 100, 30, 20)  # 1070 MB
    return {
        "big": ImageSpec("big", "bench/big", "v1", 101, tuple(s * MB for s in big_mb)),
        "many": ImageSpec("many", "bench/many", "v1", 202, _many_sizes(40, 26 * MB, 2)),
    }


# ---------------------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------------------


@functools.cache
def _corpus(seed: int) -> bytes:
    """Word salad over a Zipf-weighted vocabulary: compresses ~3.5x at level 1."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(400)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    words = rng.choices(vocabulary, weights, k=CORPUS_SIZE // 4)
    lines = (" ".join(words[i : i + 12]) for i in range(0, len(words), 12))
    return "\n".join(lines).encode()[:CORPUS_SIZE]


def _blocks(seed: int, corpus: bytes, random_bytes: int, total: int) -> Iterator[bytes]:
    """``total`` bytes of content: blocks of ``random_bytes`` random bytes + text."""
    rng = random.Random(seed)
    text = BLOCK_SIZE - random_bytes
    left = total
    while left > 0:
        offset = rng.randrange(0, len(corpus) - text + 1)
        block = rng.randbytes(random_bytes) + corpus[offset : offset + text]
        yield block[:left]
        left -= len(block)


def _compressor() -> Any:
    return isal_zlib.compressobj(COMPRESS_LEVEL, isal_zlib.DEFLATED, 31)  # 31: gzip wrapper


def _ratio(seed: int, corpus: bytes, random_bytes: int, sample: int) -> float:
    comp = _compressor()
    out = 0
    for block in _blocks(seed, corpus, random_bytes, sample):
        out += len(comp.compress(block))
    out += len(comp.flush())
    return sample / out


@functools.cache
def calibrate(corpus: bytes, target: float = TARGET_RATIO, sample: int = 8 << 20) -> int:
    """The random bytes per block that make the content compress ``target``-fold."""
    low, high = 0, BLOCK_SIZE // 2
    for _ in range(11):
        mid = (low + high) // 2
        if _ratio(7, corpus, mid, sample) > target:
            low = mid
        else:
            high = mid
    return (low + high) // 2


# ---------------------------------------------------------------------------------------
# One layer (runs in a worker process)
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerJob:
    image: str
    index: int
    seed: int
    corpus_seed: int
    random_bytes: int
    uncompressed_content: int
    path: Path


@dataclasses.dataclass(frozen=True)
class LayerResult:
    index: int
    digest: str
    diff_id: str
    size: int
    uncompressed_size: int


class _Sink:
    """Compress, hash both sides and write to ``out`` as the tar streams through."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.comp = _compressor()
        self.tar_hash = hashlib.sha256()
        self.blob_hash = hashlib.sha256()
        self.tar_size = 0
        self.blob_size = 0

    def write(self, data: bytes) -> None:
        self.tar_hash.update(data)
        self.tar_size += len(data)
        self._emit(self.comp.compress(data))

    def close(self) -> None:
        self._emit(self.comp.flush())

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob_hash.update(data)
            self.blob_size += len(data)
            self.out.write(data)


def _header(name: str, size: int = 0, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def generate_layer(job: LayerJob) -> LayerResult:
    """Write one gzip layer blob to ``job.path``; returns its digests and sizes."""
    corpus = _corpus(job.corpus_seed)
    directory = f"opt/bench/{job.image}/layer{job.index:02d}"
    with open(job.path, "wb") as out:
        sink = _Sink(out)
        parts = directory.split("/")
        for depth in range(1, len(parts) + 1):
            sink.write(_header("/".join(parts[:depth]) + "/", directory=True))
        blocks = _blocks(job.seed, corpus, job.random_bytes, job.uncompressed_content)
        pending = b""
        left = job.uncompressed_content
        for number in range(math.ceil(job.uncompressed_content / FILE_SIZE)):
            size = min(FILE_SIZE, left)
            sink.write(_header(f"{directory}/f{number:04d}.bin", size))
            need = size
            while need:
                if not pending:
                    pending = next(blocks)
                piece, pending = pending[:need], pending[need:]
                sink.write(piece)
                need -= len(piece)
            if size % 512:
                sink.write(b"\0" * (512 - size % 512))
            left -= size
        sink.write(b"\0" * 1024)  # end-of-archive blocks
        sink.close()
    return LayerResult(
        job.index,
        "sha256:" + sink.blob_hash.hexdigest(),
        "sha256:" + sink.tar_hash.hexdigest(),
        sink.blob_size,
        sink.tar_size,
    )


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GeneratedLayer:
    digest: str
    diff_id: str
    size: int
    uncompressed_size: int


@dataclasses.dataclass(frozen=True)
class GeneratedImage:
    """An image on disk: ``blob_path(digest)`` for layers and config."""

    spec: ImageSpec
    directory: Path
    layers: tuple[GeneratedLayer, ...]
    config_digest: str
    manifest_digest: str

    def blob_path(self, digest: str) -> Path:
        return self.directory / "blobs" / digest.removeprefix("sha256:")

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def compressed_size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def uncompressed_size(self) -> int:
        return sum(layer.uncompressed_size for layer in self.layers)

    @property
    def blob_digests(self) -> list[str]:
        """Config first, then the layers: what a pull downloads."""
        return [self.config_digest, *(layer.digest for layer in self.layers)]

    def describe(self) -> str:
        return (
            f"{len(self.layers)} layers, {self.compressed_size / MB:.1f} MB compressed, "
            f"{self.uncompressed_size / MB:.1f} MB uncompressed "
            f"(ratio {self.uncompressed_size / self.compressed_size:.2f}), "
            f"largest layer {max(ly.size for ly in self.layers) / MB:.1f} MB"
        )


def _load(spec: ImageSpec, directory: Path) -> GeneratedImage | None:
    meta_path = directory / "image.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    return GeneratedImage(
        spec,
        directory,
        tuple(GeneratedLayer(**layer) for layer in meta["layers"]),
        meta["config_digest"],
        meta["manifest_digest"],
    )


def ensure_image(
    spec: ImageSpec, cache_dir: Path, *, log: Callable[[str], None] = print
) -> GeneratedImage:
    """The image from the cache, generated first if it is not there."""
    directory = cache_dir / "images" / spec.key()
    cached = _load(spec, directory)
    if cached is not None:
        return cached
    started = time.monotonic()
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "blobs").mkdir(parents=True)
    corpus_seed = spec.seed * 1000
    random_bytes = calibrate(_corpus(corpus_seed))
    jobs = []
    for index, target in enumerate(spec.layer_sizes):
        content = max(1, round(target * TARGET_RATIO))
        path = directory / f"layer{index:02d}.tmp"
        jobs.append(
            LayerJob(spec.name, index, spec.seed + index, corpus_seed, random_bytes, content, path)
        )
    jobs.sort(key=lambda job: -job.uncompressed_content)  # longest first: better packing
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = sorted(pool.map(generate_layer, jobs), key=lambda r: r.index)
    for result in results:
        tmp = directory / f"layer{result.index:02d}.tmp"
        tmp.rename(directory / "blobs" / result.digest.removeprefix("sha256:"))
    layers = tuple(
        GeneratedLayer(r.digest, r.diff_id, r.size, r.uncompressed_size) for r in results
    )
    config = make_config([layer.diff_id for layer in layers], cmd=["/bin/sh"])
    manifest = make_manifest(
        config,
        [Descriptor(DOCKER_LAYER_GZIP, layer.digest, layer.size) for layer in layers],
        media_types="docker",
    )
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    (directory / "blobs" / config_digest.removeprefix("sha256:")).write_bytes(config)
    (directory / "manifest.json").write_bytes(manifest)
    meta = {
        "spec": dataclasses.asdict(spec),
        "random_bytes_per_block": random_bytes,
        "layers": [dataclasses.asdict(layer) for layer in layers],
        "config_digest": config_digest,
        "manifest_digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
    }
    (directory / "image.json").write_text(json.dumps(meta, indent=2))  # written last
    image = _load(spec, directory)
    assert image is not None
    log(f"generated {spec.name}: {image.describe()} in {time.monotonic() - started:.1f} s")
    return image


def push(registry: pusher.RegistryLike, image: GeneratedImage) -> None:
    """Push the blobs the registry lacks, then the manifest under the spec's tag."""
    repo = image.spec.repo
    for digest in image.blob_digests:
        if not pusher.blob_exists(registry, repo, digest):
            pusher.push_blob(registry, repo, image.blob_path(digest).read_bytes())
    pusher.push_manifest(
        registry, repo, image.spec.tag, image.manifest_path.read_bytes(), DOCKER_MANIFEST
    )


def ensure_images(
    specs: Sequence[ImageSpec], cache_dir: Path, *, log: Callable[[str], None] = print
) -> dict[str, GeneratedImage]:
    return {spec.name: ensure_image(spec, cache_dir, log=log) for spec in specs}
