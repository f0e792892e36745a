"""Defaults for the command line from ``DOCKERDRAG_*`` environment variables.

=================================  ==============================================
``DOCKERDRAG_CONCURRENCY``         parallel downloads (a whole number >= 1)
``DOCKERDRAG_CACHE_DIR``           blob cache directory
``DOCKERDRAG_REGISTRY_MIRRORS``    Docker Hub mirrors, comma-separated URLs
``DOCKERDRAG_INSECURE_REGISTRIES`` registries allowed plain HTTP, comma-separated
``DOCKERDRAG_PLATFORM``            platform to pull, e.g. ``linux/arm64``
``DOCKERDRAG_LOW_SPEED_LIMIT``     bytes a second a download must bring (0: no limit)
``DOCKERDRAG_LOW_SPEED_TIME``      seconds over which that is measured
=================================  ==============================================

An empty variable counts as unset. A command-line option replaces a single
value; the repeatable options (``--insecure``, ``--registry-mirror``) add to
the lists. A number is read as its option reads it (:mod:`dockerdrag.user_numbers`);
a malformed value is a :class:`~dockerdrag.errors.UsageError` naming the variable.
Only the command line reads these: the library takes the same settings only as
arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple, TypeVar

from .errors import DockerDragError, UsageError
from .platform import Platform
from .registry import mirror_host
from .user_numbers import non_negative_whole_number, positive_seconds, positive_whole_number

_Number = TypeVar("_Number", int, float)

VARIABLES: dict[str, str] = {
    "DOCKERDRAG_CONCURRENCY": "parallel downloads (default 16)",
    "DOCKERDRAG_CACHE_DIR": "blob cache directory (default: the platform's cache directory)",
    "DOCKERDRAG_REGISTRY_MIRRORS": "Docker Hub mirrors, comma-separated URLs",
    "DOCKERDRAG_INSECURE_REGISTRIES": "registries allowed plain HTTP, comma-separated",
    "DOCKERDRAG_PLATFORM": "platform to pull when --platform is not given",
    "DOCKERDRAG_LOW_SPEED_LIMIT": "bytes a second below which a download is retried (0: none)",
    "DOCKERDRAG_LOW_SPEED_TIME": "seconds over which the low-speed limit is measured",
}


class Settings(NamedTuple):
    """Defaults read from the environment (``None`` / empty: not set)."""

    concurrency: int | None = None
    cache_dir: Path | None = None
    registry_mirrors: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    platform: str | None = None
    low_speed_limit: int | None = None
    low_speed_time: float | None = None


def _value(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _bad(name: str, value: str, expected: str) -> UsageError:
    return UsageError(f"environment variable {name}={value!r}: expected {expected}")


def _number(
    environ: Mapping[str, str], name: str, read: Callable[[str], _Number], expected: str
) -> _Number | None:
    """Variable ``name`` read by ``read`` (a :mod:`~dockerdrag.user_numbers` reader, as
    its option's); None when it is not set."""
    value = _value(environ, name)
    if value is None:
        return None
    try:
        return read(value)
    except ValueError:
        raise _bad(name, value, expected) from None


def _list(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    value = _value(environ, name)
    if value is None:
        return ()
    items = tuple(item.strip() for item in value.split(","))
    if any(not item or " " in item for item in items):
        raise _bad(name, value, "a comma-separated list without empty entries")
    return items


def _mirrors(environ: Mapping[str, str]) -> tuple[str, ...]:
    name = "DOCKERDRAG_REGISTRY_MIRRORS"
    mirrors = _list(environ, name)
    for mirror in mirrors:
        try:
            mirror_host(mirror)
        except DockerDragError as exc:
            raise _bad(name, mirror, "http(s)://HOST[:PORT] URLs") from exc
    return mirrors


def _insecure(environ: Mapping[str, str]) -> tuple[str, ...]:
    name = "DOCKERDRAG_INSECURE_REGISTRIES"
    hosts = _list(environ, name)
    for host in hosts:
        if "/" in host:
            raise _bad(name, host, "HOST[:PORT] names (no scheme or path)")
    return hosts


def _platform(environ: Mapping[str, str]) -> str | None:
    name = "DOCKERDRAG_PLATFORM"
    value = _value(environ, name)
    if value is None:
        return None
    try:
        Platform.parse(value)
    except DockerDragError as exc:
        raise _bad(name, value, "OS/ARCH[/VARIANT], e.g. linux/arm64") from exc
    return value


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read and check every ``DOCKERDRAG_*`` variable; raise UsageError on a bad value."""
    cache_dir = _value(environ, "DOCKERDRAG_CACHE_DIR")
    return Settings(
        concurrency=_number(
            environ, "DOCKERDRAG_CONCURRENCY", positive_whole_number, "a whole number of at least 1"
        ),
        cache_dir=Path(cache_dir).expanduser() if cache_dir else None,
        registry_mirrors=_mirrors(environ),
        insecure_registries=_insecure(environ),
        platform=_platform(environ),
        low_speed_limit=_number(
            environ,
            "DOCKERDRAG_LOW_SPEED_LIMIT",
            non_negative_whole_number,
            "a whole number of bytes a second (0: no limit)",
        ),
        low_speed_time=_number(
            environ, "DOCKERDRAG_LOW_SPEED_TIME", positive_seconds, "a number of seconds above 0"
        ),
    )


__all__ = ["VARIABLES", "Settings", "load_settings"]
