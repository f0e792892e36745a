"""How long a bundle of small images takes from a far registry: several images, one list.

Run from the repository root::

    python -m benchmarks.bundle_measure                            # 10 images, 50 ms, 10 MB/s
    python -m benchmarks.bundle_measure --images 20 --rtt-ms 200 --rate-mbps 5
    python -m benchmarks.bundle_measure --baseline-checkout ../dockerdrag-before --runs 5

A local ``docker-registry`` (``tests/support``) holds ``--images`` images, each in a
repository of its own with two gzip layers of random bytes (200 and 300 kB) of its own. The
benchmark's link shaper (``python -m benchmarks.shaper``, as for its ``shaped`` link) sits in
front of it. Each run pulls the list of them into one archive from an empty cache, with the
command line a user types (``python -m dockerdrag pull -f LIST -o bundle.tar --insecure
HOST``), and checks that the archive holds every image. With ``--baseline-checkout`` each run
also pulls with that checkout's ``dockerdrag``, the two in random order. It prints each run's
wall times, then the medians.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import REPO_ROOT
from benchmarks.contenders import read_docker_manifest
from benchmarks.endpoints import ShaperProcess
from benchmarks.links import LinkProfile
from tests.support.images import PushedImage, layer, push_image
from tests.support.registry_server import RegistryServer, start_registry

LAYER_SIZES = (200_000, 300_000)


def push_images(registry: RegistryServer, count: int) -> list[PushedImage]:
    """``count`` images of two random layers each, one repository each."""
    chance = random.Random(16)
    return [
        push_image(
            registry,
            f"bundle/image{number}",
            "v1",
            [layer({"data.bin": chance.randbytes(size)}) for size in LAYER_SIZES],
        )
        for number in range(count)
    ]


def pull_seconds(checkout: Path, host: str, images: list[PushedImage], work: Path) -> float:
    """One pull of the list with ``checkout``'s ``dockerdrag``, from an empty cache: its wall
    time (the whole command, interpreter start-up included)."""
    work.mkdir()
    listing = work / "images.txt"
    listing.write_text("".join(f"{host}/{image.repo}:v1\n" for image in images))
    output = work / "bundle.tar"
    argv = [sys.executable, "-m", "dockerdrag", "pull", "-f", str(listing), "-o", str(output)]
    argv += ["--insecure", host, "--cache-dir", str(work / "cache"), "--quiet"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKERDRAG_")}
    started = time.perf_counter()
    subprocess.run(
        argv,
        check=True,
        cwd=checkout,
        env={**environment, "PYTHONPATH": str(checkout)},
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    check_bundle(output, host, images)
    return seconds


def check_bundle(path: Path, host: str, images: list[PushedImage]) -> None:
    """A ``docker load`` archive holding every image, in the list's order, with its layers."""
    items, names = read_docker_manifest(path)
    tags = [item["RepoTags"] for item in items]
    if tags != [[f"{host}/{image.repo}:v1"] for image in images]:
        raise ValueError(f"{path.name}: the images are {tags}")
    for item in items:
        if len(item["Layers"]) != len(LAYER_SIZES) or not set(item["Layers"]) <= names:
            raise ValueError(f"{path.name}: {item['RepoTags']} lacks layers")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10, help="images in the list (10)")
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="the link's round trip (50)")
    parser.add_argument(
        "--rate-mbps", type=float, default=10.0, help="each connection's cap, MB/s (10)"
    )
    parser.add_argument("--runs", type=int, default=3, help="pulls of each checkout (3)")
    parser.add_argument(
        "--baseline-checkout",
        type=Path,
        help="another dockerdrag checkout, pulled with alternately (random order each run)",
    )
    args = parser.parse_args()
    checkouts = {"dockerdrag": REPO_ROOT}
    if args.baseline_checkout is not None:
        checkouts["baseline"] = args.baseline_checkout.resolve()
    link = LinkProfile("bundle", "bundle (proxy)", args.rtt_ms, args.rate_mbps)
    times: dict[str, list[float]] = {name: [] for name in checkouts}
    with (
        tempfile.TemporaryDirectory(prefix="dockerdrag-bundle-") as temp,
        contextlib.ExitStack() as stack,
    ):
        root = Path(temp)
        registry = start_registry(root / "registry", auth="none")
        stack.callback(registry.stop)
        images = push_images(registry, args.images)
        shaper = ShaperProcess(registry.host, link, root / "shaper.log")
        stack.callback(shaper.stop)
        print(
            f"{args.images} images of {len(LAYER_SIZES)} layers ({sum(LAYER_SIZES) // 1000} kB "
            f"each image) through {args.rtt_ms:g} ms, {args.rate_mbps:g} MB/s per connection"
        )
        order = list(checkouts)
        for run in range(args.runs):
            random.shuffle(order)
            for name in order:
                seconds = pull_seconds(checkouts[name], shaper.host, images, root / f"{name}-{run}")
                times[name].append(seconds)
                print(f"run {run + 1}: {name} {seconds:.2f} s", flush=True)
    for name, runs in times.items():
        print(f"{name}: median {statistics.median(runs):.2f} s ({checkouts[name]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
