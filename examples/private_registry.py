"""Pull from a private registry with a login and its own CA certificate.

Usage::

    REGISTRY_PASSWORD=... python examples/private_registry.py IMAGE OUTPUT.tar \
        --username USER [--ca-cert ca.pem] [--platform linux/amd64]

The password comes from the ``REGISTRY_PASSWORD`` environment variable (never
from the command line, where other users could read it). Credentials are given
per registry host, and are sent only to that host, over HTTPS.
"""

from __future__ import annotations

import argparse
import os

import anyio

from dockerdrag import Credentials, DockerDragError, Puller, PullResult, Reference


async def pull(
    image: str, output: str, username: str, ca_cert: str | None, platform: str | None
) -> PullResult:
    """Log in to ``image``'s registry as ``username`` and pull it (``platform`` of it)."""
    host = Reference.parse(image).registry_host
    credentials = {host: Credentials(username=username, password=os.environ["REGISTRY_PASSWORD"])}
    async with Puller(credentials=credentials, ca_cert=ca_cert, use_docker_config=False) as puller:
        found = await puller.inspect(image, platform=platform)
        print(f"{image}: {found.digest}, {found.size} bytes of layers")
        return await puller.pull(image, output=output, platform=platform)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("output")
    parser.add_argument("--username", required=True)
    parser.add_argument("--ca-cert", help="PEM file of the CA that signed the registry's cert")
    parser.add_argument("--platform", help="e.g. linux/arm64 (needed for a multi-platform image)")
    args = parser.parse_args()
    if "REGISTRY_PASSWORD" not in os.environ:
        parser.error("set REGISTRY_PASSWORD")
    try:
        result = anyio.run(
            pull, args.image, args.output, args.username, args.ca_cert, args.platform
        )
    except DockerDragError as exc:
        print(f"error: {exc}")
        return exc.exit_code
    print(f"wrote {result.output} ({result.image_id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
