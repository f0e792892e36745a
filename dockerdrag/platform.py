"""Image platforms (``os/architecture[/variant]``): parsing, normalisation, matching.

Platforms follow containerd's conventions:

* Everything is lowercased; ``macos`` becomes ``darwin``.
* Architecture aliases are folded: ``x86_64``/``x86-64`` -> ``amd64``,
  ``aarch64`` -> ``arm64``, ``i386``/``i686`` -> ``386``, ``armhf`` -> ``arm/v7``,
  ``armel`` -> ``arm/v6``.
* Variant numbers get a ``v`` prefix (``7`` -> ``v7``). ``arm`` without a variant
  means ``arm/v7``. Default variants are dropped: ``arm64/v8`` is ``arm64`` and
  ``amd64/v1`` is ``amd64``, so both spellings compare equal.

Matching is by *preference order* (:func:`platform_preference`): a wanted
``linux/arm/v7`` accepts ``v7`` images first, then ``v6``, then ``v5``;
``linux/amd64/v3`` accepts ``v3``, ``v2``, then plain ``amd64``. The order never
crosses architectures (``amd64`` does not fall back to ``386``): an explicit
``--platform`` is taken at its word.

For Windows images ``os.version`` is part of the identity: when the wanted
platform names one, only images with the same ``major.minor.build`` match.

Everything here is pure: no I/O.
"""

from __future__ import annotations

import platform as _stdlib_platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from .errors import (
    InvalidManifestError,
    InvalidPlatformError,
    PlatformNotFoundError,
    Remedy,
    Setting,
)

__all__ = [
    "Platform",
    "PlatformSpec",
    "check_image_platform",
    "host_platform",
    "parse_platforms",
    "platform_matches",
    "platform_preference",
    "platform_rank",
]

# One ``/``-separated component of a platform string (containerd's specifier rule).
_COMPONENT_RE = re.compile(r"[a-z0-9_.-]+")
# The OS component may carry a version in parentheses: ``windows(10.0.17763)``.
_OS_RE = re.compile(r"(?P<os>[a-z0-9_.-]+)(?:\((?P<version>[a-z0-9_.-]*)\))?")

_KNOWN_OS = frozenset(
    {
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "wasip1",
        "windows",
        "zos",
    }
)

_KNOWN_ARCH = frozenset(
    {
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "ppc64",
        "ppc64le",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
        # aliases folded by normalisation
        "i386",
        "i686",
        "x86_64",
        "x86-64",
        "aarch64",
        "armhf",
        "armel",
    }
)

_MAX_COMPONENT = 128


@dataclass(frozen=True)
class Platform:
    """An image platform, as in an OCI descriptor's ``platform`` object.

    Instances built by :meth:`parse`, :meth:`from_json` and :func:`host_platform`
    are normalised; a directly constructed one can be normalised with
    :meth:`normalized`. :func:`platform_matches` normalises both sides itself.
    """

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` (e.g. ``linux/arm64/v8``) and normalise it.

        A lone OS (``linux``), a lone known architecture (``arm64``) or a known
        architecture with its variant (``arm/v7``) is completed from
        :func:`host_platform` (``linux/arm/v7`` on Linux). The OS may carry a version, as in
        ``windows(10.0.17763)/amd64``. Raises InvalidPlatformError otherwise.
        """
        if not isinstance(text, str):
            raise InvalidPlatformError(f"invalid platform {text!r}: expected a string")
        original = text
        text = text.strip().lower()
        if not text:
            raise InvalidPlatformError("invalid platform '': expected os/arch[/variant]")
        parts = text.split("/")
        if len(parts) > 3:
            raise InvalidPlatformError(
                f"invalid platform {original!r}: too many components, expected os/arch[/variant]"
            )
        for part in parts:
            if not part:
                raise InvalidPlatformError(
                    f"invalid platform {original!r}: empty component, expected os/arch[/variant]"
                )
        os_match = _OS_RE.fullmatch(parts[0])
        if os_match is None:
            raise InvalidPlatformError(
                f"invalid platform {original!r}: bad os {parts[0]!r} "
                "(allowed: letters, digits, '_', '.', '-')"
            )
        for part in parts[1:]:
            if not _COMPONENT_RE.fullmatch(part):
                raise InvalidPlatformError(
                    f"invalid platform {original!r}: bad component {part!r} "
                    "(allowed: letters, digits, '_', '.', '-')"
                )
        if any(set(p) <= {"."} for p in (os_match.group("os"), *parts[1:])):
            raise InvalidPlatformError(f"invalid platform {original!r}: '.' or '..' as a component")
        if any(len(p) > _MAX_COMPONENT for p in parts):
            raise InvalidPlatformError(f"invalid platform {original!r}: component too long")
        os_name = os_match.group("os")
        os_version = os_match.group("version") or None

        if len(parts) == 1:
            host = host_platform()
            if os_name in _KNOWN_OS or os_name == "macos":
                return cls(os_name, host.architecture, host.variant, os_version).normalized()
            if os_version is None and os_name in _KNOWN_ARCH:
                return cls(host.os, os_name).normalized()
            raise InvalidPlatformError(
                f"invalid platform {original!r}: unknown operating system or architecture, "
                "expected os/arch[/variant] such as linux/amd64"
            )
        if len(parts) == 2 and _is_architecture(os_name, os_version):
            # ``arm/v7``: an architecture and its variant, on host_platform()'s OS (linux).
            return cls(host_platform().os, os_name, parts[1]).normalized()
        variant = parts[2] if len(parts) == 3 else None
        return cls(os_name, parts[1], variant, os_version).normalized()

    @classmethod
    def from_json(cls, obj: object) -> Platform:
        """A platform from an OCI ``platform`` object, as written (matching normalises).

        ``os`` and ``architecture`` are required strings; ``variant`` and
        ``os.version`` optional strings; ``os.features`` an optional list of
        strings. Wrong types raise InvalidManifestError.
        """
        if not isinstance(obj, Mapping):
            raise InvalidManifestError(
                f"descriptor platform must be a JSON object, got {type(obj).__name__}"
            )
        os_name = obj.get("os")
        arch = obj.get("architecture")
        if not isinstance(os_name, str):
            raise InvalidManifestError("descriptor platform: 'os' must be a string")
        if not isinstance(arch, str):
            raise InvalidManifestError("descriptor platform: 'architecture' must be a string")
        variant = _optional_str(obj, "variant")
        os_version = _optional_str(obj, "os.version")
        features_obj = obj.get("os.features")
        features: tuple[str, ...] = ()
        if features_obj is not None:
            if not isinstance(features_obj, list) or not all(
                isinstance(f, str) for f in features_obj
            ):
                raise InvalidManifestError(
                    "descriptor platform: 'os.features' must be a list of strings"
                )
            features = tuple(features_obj)
        return cls(os_name, arch, variant, os_version, features)

    def normalized(self) -> Platform:
        """This platform in containerd's normal form (see the module docstring)."""
        os_name = self.os.lower()
        if os_name == "macos":
            os_name = "darwin"
        arch, variant = _normalize_arch(self.architecture, self.variant)
        return Platform(os_name, arch, variant, self.os_version or None, self.os_features)

    def __str__(self) -> str:
        """``os[(os.version)]/arch[/variant]``: the form :meth:`parse` reads back."""
        os_part = f"{self.os}({self.os_version})" if self.os_version else self.os
        text = f"{os_part}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    def describe(self) -> str:
        """A human description: ``os: linux, architecture: arm64, variant: v8``."""
        text = f"os: {self.os}, architecture: {self.architecture}"
        if self.variant:
            text += f", variant: {self.variant}"
        if self.os_version:
            text += f", os.version: {self.os_version}"
        return text

    def to_json(self) -> dict[str, object]:
        """The OCI ``platform`` object for this platform (empty fields omitted)."""
        obj: dict[str, object] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            obj["os.version"] = self.os_version
        if self.os_features:
            obj["os.features"] = list(self.os_features)
        if self.variant:
            obj["variant"] = self.variant
        return obj


def _is_architecture(name: str, os_version: str | None) -> bool:
    """Whether the first component of a platform string names an architecture, not an OS."""
    return os_version is None and name in _KNOWN_ARCH and name not in _KNOWN_OS


def check_image_platform(image: str, wanted: Sequence[Platform], actual: Platform) -> None:
    """Refuse a single-platform image for ``actual`` when it matches none of ``wanted``.

    As Docker does for ``docker pull --platform``: raises PlatformNotFoundError in
    its words. An image whose config names no OS or architecture is accepted.
    """
    if not actual.os or not actual.architecture:
        return
    if any(platform_matches(platform, actual) for platform in wanted):
        return
    asked = ", ".join(str(platform) for platform in wanted)
    remedy = Remedy(Setting.PLATFORM, str(actual))
    raise PlatformNotFoundError(
        f"image {image} was found but does not match the specified platform: wanted {asked}, "
        f"actual: {actual} (a single-platform image; {remedy} pulls it)",
        available=(actual,),
    ).suggesting(remedy)


def _optional_str(obj: Mapping[str, object], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidManifestError(f"descriptor platform: {key!r} must be a string")
    return value or None


def _normalize_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    arch = arch.lower()
    var = (variant or "").lower()
    if var.isdigit():
        var = "v" + var
    if arch in ("i386", "i686"):
        return "386", None
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", (None if var in ("", "v1") else var)
    if arch in ("aarch64", "arm64"):
        if var in ("", "v8", "v8.0", "8.0"):
            return "arm64", None
        if var in ("9.0", "v9.0"):
            return "arm64", "v9"
        if var[:1].isdigit():
            var = "v" + var
        return "arm64", var
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        return "arm", (var or "v7")
    return arch, (var or None)


def host_platform() -> Platform:
    """The platform images for this machine should have, normalised.

    The OS is ``linux`` on every host: Docker Desktop on Windows and macOS runs
    Linux containers in a VM (Windows containers are asked for by name, as in
    ``--platform windows/amd64``). The architecture comes from the machine
    (``uname -m``, ``AMD64``/``ARM64`` on Windows); 32-bit ARM defaults to ``v7``.
    """
    os_name = "linux"
    machine = _stdlib_platform.machine() or "amd64"
    arch = machine.lower()
    variant: str | None = None
    if arch.startswith("armv") and len(arch) >= 5 and arch[4].isdigit():
        variant = "v" + arch[4]
        arch = "arm"
    elif arch in ("arm64", "aarch64_be"):
        arch = "arm64"
    return Platform(os_name, arch, variant).normalized()


def _variant_number(variant: str | None, default: int) -> int | None:
    if variant is None:
        return default
    if variant.startswith("v") and variant[1:].isdigit():
        return int(variant[1:])
    return None


def platform_preference(wanted: Platform) -> tuple[Platform, ...]:
    """The platforms acceptable for ``wanted``, best first.

    ``linux/arm/v7`` -> ``(arm/v7, arm/v6, arm/v5)``; ``linux/arm/v8`` also
    starts at ``v8``; ``linux/amd64/v3`` -> ``(amd64/v3, amd64/v2, amd64)``;
    ``linux/arm64/<other>`` -> ``(arm64/<other>, arm64)``. Any other platform
    accepts only itself. ``os.version`` and ``os.features`` are carried along.
    """
    wanted = wanted.normalized()
    arch, variant = wanted.architecture, wanted.variant
    variants: list[str | None] = [variant]
    if arch == "arm":
        number = _variant_number(variant, 7)
        if number is not None:
            variants += [f"v{n}" for n in range(min(number, 8) - 1, 4, -1)]
    elif arch == "amd64":
        number = _variant_number(variant, 1)
        if number is not None and number > 1:
            variants += [f"v{n}" for n in range(number - 1, 1, -1)]
            variants.append(None)
    elif arch == "arm64" and variant is not None:
        variants.append(None)
    return tuple(replace(wanted, variant=v) for v in variants)


def _os_version_matches(wanted: str | None, offered: str | None) -> bool:
    if not wanted:
        return True
    if not offered:
        return False
    # Windows compatibility is decided by major.minor.build; the revision varies.
    return wanted.split(".")[:3] == offered.split(".")[:3]


def platform_rank(wanted: Platform, offered: Platform) -> int | None:
    """Position of ``offered`` in ``platform_preference(wanted)`` (0 = best), or None."""
    offered = offered.normalized()
    for rank, candidate in enumerate(platform_preference(wanted)):
        if (
            candidate.os == offered.os
            and candidate.architecture == offered.architecture
            and candidate.variant == offered.variant
            and _os_version_matches(candidate.os_version, offered.os_version)
        ):
            return rank
    return None


def platform_matches(wanted: Platform, offered: Platform) -> bool:
    """Whether an image for ``offered`` is acceptable when ``wanted`` was asked for."""
    return platform_rank(wanted, offered) is not None


PlatformSpec = Platform | str | Sequence[Platform | str] | None
"""What a pull accepts as ``platform=``: see :func:`parse_platforms`."""


def parse_platforms(spec: PlatformSpec) -> list[Platform] | Literal["all"] | None:
    """``None``, ``"all"``, one platform, or a comma-separated list / sequence of them."""
    if spec is None or isinstance(spec, Platform):
        return None if spec is None else [spec]
    if isinstance(spec, str):
        if spec.strip() == "all":
            return "all"
        parts: Sequence[Platform | str] = [p for p in spec.split(",") if p.strip()]
    else:
        parts = spec
    platforms = [p if isinstance(p, Platform) else Platform.parse(p.strip()) for p in parts]
    if not platforms:
        raise InvalidPlatformError("empty platform list")
    return platforms
