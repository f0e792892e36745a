"""The ``dockerdrag`` command line.

Uses only the public API; prints errors as one line and exits with the error's
``exit_code`` (0 ok, 1 error, 2 usage, 3 auth, 4 not found, 5 network/registry,
6 integrity, 7 output, 130 interrupted).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from . import __version__
from .auth import Credentials
from .errors import DockerDragError, PlatformRequiredError, UsageError
from .events import LayerPhase, LayerProgress, ProgressEvent, PullStarted
from .manifest import Descriptor
from .pull import FORMATS, Puller, PullResult
from .reference import Reference

SUBCOMMANDS = ("pull", "platforms")

EPILOG = """\
examples:
  dockerdrag hello-world --platform linux/amd64
  dockerdrag pull mysql/mysql-server:8.0 -o mysql.tar
  dockerdrag pull alpine:3.20 busybox:1.36 -o bundle.tar --platform linux/amd64
  dockerdrag pull nginx --format oci --platform all -o nginx-oci.tar
  dockerdrag --list-platforms busybox
  dockerdrag pull 127.0.0.1:5000/team/app:1.2 --insecure 127.0.0.1:5000
  echo "$TOKEN" | dockerdrag pull registry.example.com/app --username me --password-stdin

exit codes: 0 ok, 1 error, 2 usage, 3 authentication, 4 not found,
            5 network/registry, 6 integrity (digest mismatch), 7 output, 130 interrupted
"""


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry connection")
    group.add_argument(
        "--insecure",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="allow plain HTTP or unverified TLS for this registry (repeatable)",
    )
    group.add_argument("--ca-cert", metavar="FILE", help="extra CA certificate (PEM) to trust")
    group.add_argument(
        "--registry-mirror",
        action="append",
        default=[],
        metavar="URL",
        help="Docker Hub mirror tried before the origin, like dockerd's registry-mirrors "
        "(repeatable; an http:// URL is allowed plain HTTP)",
    )
    group.add_argument("--username", "-u", help="registry username")
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password or token from stdin"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="dockerdrag",
        description="Pull a container image from a Docker/OCI registry into a tarball that "
        "`docker load` accepts, without a Docker daemon.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dockerdrag {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    pull = commands.add_parser(
        "pull",
        help="pull an image into an archive (the default command)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pull.add_argument(
        "images",
        metavar="IMAGE",
        nargs="+",
        help="image reference, e.g. busybox:1.36; several go into one archive (needs -o)",
    )
    pull.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="platform to pull from a multi-arch image; with --format oci/oci-dir also a "
        "comma-separated list or 'all'",
    )
    pull.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="archive path (default: <repo_with_underscores>.tar; a directory for oci-dir)",
    )
    pull.add_argument(
        "--format",
        choices=FORMATS,
        default="docker",
        help="docker: legacy `docker save` archive (default); oci: OCI layout + manifest.json "
        "in one tar, layers kept compressed (Docker 25+ shape); oci-dir: OCI layout directory",
    )
    pull.add_argument(
        "--tag",
        action="append",
        metavar="NAME:TAG",
        help="name to write into the archive instead of IMAGE's own (one per IMAGE)",
    )
    pull.add_argument(
        "--include-attestations",
        action="store_true",
        help="keep attestation manifests (SBOM, provenance) in oci formats",
    )
    pull.add_argument(
        "--list-platforms", action="store_true", help="list the platforms of IMAGE and exit"
    )
    pull.add_argument(
        "--concurrency", type=int, default=3, metavar="N", help="parallel downloads (default 3)"
    )
    pull.add_argument("--cache-dir", metavar="DIR", help="blob cache (default ~/.cache/dockerdrag)")
    pull.add_argument("-q", "--quiet", action="store_true", help="print only the output path")
    _add_connection_options(pull)

    platforms = commands.add_parser("platforms", help="list the platforms of a multi-arch image")
    platforms.add_argument("image", metavar="IMAGE")
    _add_connection_options(platforms)
    return parser


def _normalise_argv(argv: Sequence[str]) -> list[str]:
    """``dockerdrag IMAGE ...`` means ``dockerdrag pull IMAGE ...``."""
    args = list(argv)
    if args and (args[0] in SUBCOMMANDS or args[0] in ("-h", "--help", "--version")):
        return args
    return ["pull", *args]


def format_platform_line(entry: Descriptor) -> str:
    """One line of the platform list, in the original docker-drag format."""
    platform = entry.platform
    if platform is None:
        return f"# (no platform)  (digest: {entry.digest})"
    return f"--platform {platform!s:<16}  # {platform.describe()} (digest: {entry.digest})"


def _credentials(args: argparse.Namespace, image: str) -> dict[str, Credentials]:
    if not args.username and not args.password_stdin:
        return {}
    if not args.username or not args.password_stdin:
        raise UsageError("--username and --password-stdin go together")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin: no password on standard input")
    host = Reference.parse(image).registry_host
    return {host: Credentials(username=args.username, password=password)}


class _PlainProgress:
    """One line per layer event on stderr, for non-interactive use."""

    def __init__(self) -> None:
        self._announced: set[tuple[str, str]] = set()

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, PullStarted):
            print(f"Pulling {event.reference} ({event.manifest_digest})", file=sys.stderr)
        elif isinstance(event, LayerProgress):
            messages = {
                LayerPhase.COMPLETE: "Pull complete",
                LayerPhase.EXISTS: "Already exists",
            }
            message = messages.get(event.phase)
            if message and (event.digest.hex, message) not in self._announced:
                self._announced.add((event.digest.hex, message))
                print(f"{event.digest.short}: {message} ({event.total} bytes)", file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    first_image = args.image if args.command == "platforms" else args.images[0]
    credentials = _credentials(args, first_image)
    if args.command == "platforms" or getattr(args, "list_platforms", False):
        async with Puller(
            insecure=args.insecure,
            ca_cert=args.ca_cert,
            credentials=credentials,
            registry_mirrors=args.registry_mirror,
        ) as puller:
            entries = await puller.platforms(first_image)
        if not entries:
            print(f"{first_image} is a single-platform image", file=sys.stderr)
            return 0
        for entry in entries:
            print(format_platform_line(entry))
        return 0
    progress = None if args.quiet else _PlainProgress()
    async with Puller(
        insecure=args.insecure,
        ca_cert=args.ca_cert,
        credentials=credentials,
        registry_mirrors=args.registry_mirror,
        cache_dir=args.cache_dir,
        concurrency=args.concurrency,
        progress=progress,
        include_attestations=args.include_attestations,
    ) as puller:
        try:
            results = await _pull(puller, args)
        except PlatformRequiredError as exc:
            print(f"{exc}. Available platforms:", file=sys.stderr)
            for offered in exc.available:
                if isinstance(offered, Descriptor):
                    print(format_platform_line(offered), file=sys.stderr)
            return exc.exit_code
    if not args.quiet:
        for result in results:
            print(f"{result.reference}: image ID {result.image_id}", file=sys.stderr)
    print(Path(results[0].output))
    return 0


async def _pull(puller: Puller, args: argparse.Namespace) -> list[PullResult]:
    images: list[str] = args.images
    tags: list[str] | None = args.tag
    if tags is not None and len(tags) != len(images):
        raise UsageError("give one --tag per IMAGE")
    if len(images) == 1:
        tag = tags[0] if tags else None
        result = await puller.pull(
            images[0], platform=args.platform, output=args.output, tag=tag, format=args.format
        )
        return [result]
    if args.output is None:
        raise UsageError("several images go into one archive: name it with -o")
    return await puller.pull_many(
        images, output=args.output, platform=args.platform, tags=tags, format=args.format
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dockerdrag`` command."""
    parser = build_parser()
    args = parser.parse_args(_normalise_argv(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_usage(sys.stderr)
        return 2
    if getattr(args, "concurrency", 1) < 1:
        parser.error("--concurrency must be at least 1")
    try:
        return anyio.run(_run, args)
    except DockerDragError as exc:
        print(f"dockerdrag: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dockerdrag: interrupted; downloaded blobs are kept in the cache", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
