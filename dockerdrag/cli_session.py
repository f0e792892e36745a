"""The client a command runs with: options merged over the ``DOCKERDRAG_*`` defaults."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

from .cli_credentials import command_line_credentials
from .config import Settings
from .download import TransferOptions
from .low_speed import LowSpeedLimit
from .pull import DEFAULT_CONCURRENCY, Puller


class Options(NamedTuple):
    """Command-line options merged over the environment's defaults."""

    insecure: tuple[str, ...]
    mirrors: tuple[str, ...]
    cache_dir: str | Path | None
    concurrency: int
    platform: str | None
    low_speed: LowSpeedLimit | None


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
        low_speed=_low_speed(args, settings),
    )


def _low_speed(args: argparse.Namespace, settings: Settings) -> LowSpeedLimit | None:
    """The low-speed limit: options over the environment over the library's default."""
    default = LowSpeedLimit()
    limit = getattr(args, "low_speed_limit", None)
    if limit is None:
        limit = settings.low_speed_limit
    seconds = getattr(args, "low_speed_time", None) or settings.low_speed_time
    if limit == 0:
        return None
    return LowSpeedLimit(
        default.bytes_per_second if limit is None else limit, seconds or default.seconds
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
        transfer=TransferOptions(low_speed=options.low_speed),
        include_attestations=getattr(args, "include_attestations", False),
        include_foreign=getattr(args, "include_foreign", False),
    )


__all__ = ["Options", "make_puller", "merge_options"]
