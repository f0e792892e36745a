"""The client a command runs with: options merged over the ``DOCKERDRAG_*`` defaults."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .cli_credentials import command_line_credentials
from .config import Settings
from .pull import DEFAULT_CONCURRENCY, Puller


@dataclass(frozen=True)
class Options:
    """Command-line options merged over the environment's defaults."""

    insecure: tuple[str, ...]
    mirrors: tuple[str, ...]
    cache_dir: str | Path | None
    concurrency: int
    platform: str | None


def merge_options(args: argparse.Namespace, settings: Settings) -> Options:
    """``args`` over ``settings``: a given option wins, repeatable ones add to the list."""
    return Options(
        insecure=(*args.insecure, *settings.insecure_registries),
        mirrors=(*getattr(args, "registry_mirror", ()), *settings.registry_mirrors),
        cache_dir=getattr(args, "cache_dir", None) or settings.cache_dir,
        concurrency=getattr(args, "concurrency", None)
        or settings.concurrency
        or DEFAULT_CONCURRENCY,
        platform=getattr(args, "platform", None) or settings.platform,
    )


def make_puller(args: argparse.Namespace, options: Options, image: str) -> Puller:
    """The client for a command about ``image`` (credentials are read here, once)."""
    return Puller(
        insecure=options.insecure,
        ca_cert=args.ca_cert,
        credentials=command_line_credentials(args, image),
        registry_mirrors=options.mirrors,
        cache_dir=options.cache_dir,
        concurrency=options.concurrency,
        include_attestations=getattr(args, "include_attestations", False),
        include_foreign=getattr(args, "include_foreign", False),
    )


__all__ = ["Options", "make_puller", "merge_options"]
