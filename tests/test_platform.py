"""Platform parsing, containerd-style normalisation, matching and preference order."""

from __future__ import annotations

import pytest

from dockerdrag.errors import (
    InvalidManifestError,
    InvalidPlatformError,
    PlatformNotFoundError,
    UsageError,
)
from dockerdrag.platform import (
    Platform,
    check_image_platform,
    host_platform,
    platform_matches,
    platform_preference,
    platform_rank,
)

# text -> normalised str()
NORMALISE = [
    ("linux/amd64", "linux/amd64"),
    ("LINUX/AMD64", "linux/amd64"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/x86-64", "linux/amd64"),
    ("linux/amd64/v1", "linux/amd64"),
    ("linux/amd64/v2", "linux/amd64/v2"),
    ("linux/amd64/3", "linux/amd64/v3"),
    ("linux/arm64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/arm64/8", "linux/arm64"),
    ("linux/aarch64", "linux/arm64"),
    ("linux/aarch64/v8", "linux/arm64"),
    ("linux/arm64/v8.0", "linux/arm64"),
    ("linux/arm64/v9.0", "linux/arm64/v9"),
    ("linux/arm64/v8.2", "linux/arm64/v8.2"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/7", "linux/arm/v7"),
    ("linux/arm/v7", "linux/arm/v7"),
    ("linux/arm/v6", "linux/arm/v6"),
    ("linux/arm/5", "linux/arm/v5"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("linux/i386", "linux/386"),
    ("linux/i686", "linux/386"),
    ("linux/386", "linux/386"),
    ("linux/ppc64le", "linux/ppc64le"),
    ("linux/s390x", "linux/s390x"),
    ("linux/riscv64", "linux/riscv64"),
    ("macos/arm64", "darwin/arm64"),
    ("darwin/amd64", "darwin/amd64"),
    ("windows/amd64", "windows/amd64"),
    ("windows(10.0.17763.1234)/amd64", "windows(10.0.17763.1234)/amd64"),
    (" linux/amd64 ", "linux/amd64"),
    ("linux/futurearch/vx", "linux/futurearch/vx"),  # unknown arches pass through
]


@pytest.mark.parametrize(("text", "expected"), NORMALISE)
def test_parse_normalises(text: str, expected: str) -> None:
    platform = Platform.parse(text)
    assert str(platform) == expected
    assert Platform.parse(str(platform)) == platform
    assert platform.normalized() == platform


def test_arm64_and_arm64_v8_are_equal() -> None:
    assert Platform.parse("linux/arm64") == Platform.parse("linux/arm64/v8")
    assert Platform.parse("linux/aarch64") == Platform.parse("linux/arm64/v8")
    assert platform_matches(Platform.parse("linux/arm64/v8"), Platform("linux", "arm64"))
    assert platform_matches(Platform.parse("linux/arm64"), Platform("linux", "arm64", "v8"))
    assert platform_matches(Platform("linux", "aarch64"), Platform("Linux", "ARM64", "8"))


def test_fields_of_parsed_platform() -> None:
    p = Platform.parse("windows(10.0.20348.2113)/amd64")
    assert (p.os, p.architecture, p.variant, p.os_version) == (
        "windows",
        "amd64",
        None,
        "10.0.20348.2113",
    )
    p = Platform.parse("linux/arm/v7")
    assert (p.os, p.architecture, p.variant, p.os_version, p.os_features) == (
        "linux",
        "arm",
        "v7",
        None,
        (),
    )


def test_architecture_and_variant_completed_with_the_host_os() -> None:
    """``arm/v7`` means ``linux/arm/v7`` (on Linux), as a bare ``arm64`` means ``linux/arm64``."""
    host = host_platform()
    assert Platform.parse("arm/v7") == Platform(host.os, "arm", "v7")
    assert Platform.parse("arm/6") == Platform(host.os, "arm", "v6")
    assert Platform.parse("arm64/v8") == Platform(host.os, "arm64")
    assert Platform.parse("amd64/v3") == Platform(host.os, "amd64", "v3")
    assert Platform.parse("linux/arm") == Platform("linux", "arm", "v7")  # os/arch stays


def test_single_platform_image_checked_against_the_platforms_asked_for() -> None:
    amd64 = Platform.parse("linux/amd64")
    check_image_platform("x", [amd64], amd64)
    check_image_platform("x", [Platform.parse("linux/arm64"), amd64], amd64)
    check_image_platform("x", [Platform.parse("linux/arm/v7")], Platform.parse("linux/arm/v6"))
    check_image_platform("x", [amd64], Platform("", ""))  # a config without a platform
    with pytest.raises(PlatformNotFoundError) as info:
        check_image_platform("reg/x:1", [Platform.parse("linux/arm64")], amd64)
    assert str(info.value).startswith(
        "image reg/x:1 was found but does not match the specified platform: "
        "wanted linux/arm64, actual: linux/amd64"
    )
    assert info.value.available == (amd64,)


def test_single_component_completed_from_host() -> None:
    host = host_platform()
    assert Platform.parse("linux") == Platform("linux", host.architecture, host.variant)
    assert Platform.parse("arm64") == Platform(host.os, "arm64")
    assert Platform.parse("aarch64") == Platform(host.os, "arm64")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected os/arch"),
        ("   ", "expected os/arch"),
        ("linux/", "empty component"),
        ("/amd64", "empty component"),
        ("linux//v7", "empty component"),
        ("linux/amd64/", "empty component"),
        ("linux/amd64/v7/x", "too many components"),
        ("linux amd64", "bad os"),
        ("linux/amd 64", "bad component"),
        ("linux/amd64/v7;rm", "bad component"),
        ("linux/../../etc", "too many components"),
        ("linux/../etc", "'.' or '..'"),
        ("./amd64", "'.' or '..'"),
        ("linux/amd64/.", "'.' or '..'"),
        ("lin*ux/amd64", "bad os"),
        ("windows(10.0/amd64", "bad os"),
        ("notanos", "unknown operating system or architecture"),
        ("linux/" + "a" * 200, "too long"),
    ],
)
def test_parse_invalid(text: str, why: str) -> None:
    with pytest.raises(InvalidPlatformError) as info:
        Platform.parse(text)
    assert why in str(info.value)
    assert isinstance(info.value, UsageError)


def test_parse_rejects_non_string() -> None:
    with pytest.raises(InvalidPlatformError):
        Platform.parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("platform", "described"),
    [
        (Platform("linux", "arm64", "v8"), "os: linux, architecture: arm64, variant: v8"),
        (Platform("linux", "amd64"), "os: linux, architecture: amd64"),
        (
            Platform("windows", "amd64", os_version="10.0.17763.5329"),
            "os: windows, architecture: amd64, os.version: 10.0.17763.5329",
        ),
    ],
)
def test_describe(platform: Platform, described: str) -> None:
    assert platform.describe() == described


def test_str_unnormalised() -> None:
    assert str(Platform("linux", "arm64", "v8")) == "linux/arm64/v8"
    assert str(Platform("linux", "arm64", "v8").normalized()) == "linux/arm64"


# --- from_json -------------------------------------------------------------------------


def test_from_json() -> None:
    p = Platform.from_json(
        {
            "architecture": "arm",
            "os": "linux",
            "variant": "7",
            "os.features": ["a", "b"],
        }
    )
    assert p == Platform("linux", "arm", "7", None, ("a", "b"))  # kept as written
    assert p.normalized() == Platform("linux", "arm", "v7", None, ("a", "b"))
    w = Platform.from_json(
        {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.5329"}
    )
    assert w.os_version == "10.0.17763.5329"
    assert "os.version: 10.0.17763.5329" in w.describe()
    assert Platform.from_json(
        {"architecture": "arm64", "os": "linux", "variant": "v8"}
    ).normalized() == (Platform("linux", "arm64"))
    assert Platform.from_json({"architecture": "unknown", "os": "unknown"}) == Platform(
        "unknown", "unknown"
    )


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "linux/amd64",
        {},
        {"os": "linux"},
        {"architecture": "amd64"},
        {"os": 1, "architecture": "amd64"},
        {"os": "linux", "architecture": None},
        {"os": "linux", "architecture": "arm", "variant": 7},
        {"os": "windows", "architecture": "amd64", "os.version": 10},
        {"os": "linux", "architecture": "amd64", "os.features": "x"},
        {"os": "linux", "architecture": "amd64", "os.features": [1]},
    ],
)
def test_from_json_rejects_wrong_types(obj: object) -> None:
    with pytest.raises(InvalidManifestError):
        Platform.from_json(obj)


def test_to_json_round_trip() -> None:
    for p in [
        Platform("linux", "arm", "v7"),
        Platform("windows", "amd64", None, "10.0.17763.1", ("win32k",)),
        Platform("linux", "amd64"),
    ]:
        assert Platform.from_json(p.to_json()) == p


# --- host ------------------------------------------------------------------------------


def test_host_platform() -> None:
    host = host_platform()
    assert host == host.normalized()
    import platform as stdlib_platform

    if stdlib_platform.machine().lower() in ("x86_64", "amd64"):
        assert str(host) == "linux/amd64"


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("win32", "AMD64", "linux/amd64"),
        ("win32", "ARM64", "linux/arm64"),
        ("darwin", "arm64", "linux/arm64"),
        ("darwin", "x86_64", "linux/amd64"),
    ],
)
def test_every_host_means_linux_images(
    monkeypatch: pytest.MonkeyPatch, system: str, machine: str, expected: str
) -> None:
    """Docker Desktop runs Linux containers on Windows and macOS: the default and a bare
    architecture mean Linux there too."""
    import platform as stdlib_platform
    import sys

    monkeypatch.setattr(sys, "platform", system)
    monkeypatch.setattr(stdlib_platform, "machine", lambda: machine)
    assert str(host_platform()) == expected
    assert Platform.parse("arm64") == Platform("linux", "arm64")


# --- matching and preference -----------------------------------------------------------


def _p(text: str) -> Platform:
    return Platform.parse(text)


@pytest.mark.parametrize(
    ("wanted", "order"),
    [
        ("linux/arm/v7", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v8", ["linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v6", ["linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v5", ["linux/arm/v5"]),
        ("linux/amd64", ["linux/amd64"]),
        ("linux/amd64/v3", ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64"]),
        ("linux/amd64/v2", ["linux/amd64/v2", "linux/amd64"]),
        ("linux/arm64", ["linux/arm64"]),
        ("linux/arm64/v8", ["linux/arm64"]),
        ("linux/arm64/v9", ["linux/arm64/v9", "linux/arm64"]),
        ("linux/386", ["linux/386"]),
        ("windows/amd64", ["windows/amd64"]),
    ],
)
def test_preference_order(wanted: str, order: list[str]) -> None:
    assert [str(p) for p in platform_preference(_p(wanted))] == order


@pytest.mark.parametrize(
    ("wanted", "offered", "matches"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/x86_64", True),
        ("linux/amd64", "linux/amd64/v2", False),  # needs a newer CPU level
        ("linux/amd64/v2", "linux/amd64", True),
        ("linux/amd64", "linux/386", False),  # never crosses architectures
        ("linux/amd64", "windows/amd64", False),
        ("linux/amd64", "linux/arm64", False),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64", "linux/aarch64", True),
        ("linux/arm64", "linux/arm/v7", False),
        ("linux/arm64/v8.2", "linux/arm64", True),
        ("linux/arm64", "linux/arm64/v8.2", False),
        ("linux/arm/v7", "linux/arm/v7", True),
        ("linux/arm/v7", "linux/armhf", True),
        ("linux/arm/v7", "linux/arm/v6", True),
        ("linux/arm/v7", "linux/arm/v5", True),
        ("linux/arm/v7", "linux/arm/v8", False),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm/v6", "linux/armel", True),
        ("linux/arm", "linux/arm/v7", True),
        ("linux/386", "linux/i386", True),
        ("darwin/arm64", "macos/arm64", True),
        ("windows/amd64", "windows(10.0.17763.5329)/amd64", True),
        ("windows(10.0.17763)/amd64", "windows(10.0.17763.5329)/amd64", True),
        ("windows(10.0.17763.1)/amd64", "windows(10.0.17763.5329)/amd64", True),
        ("windows(10.0.20348)/amd64", "windows(10.0.17763.5329)/amd64", False),
        ("windows(10.0.20348)/amd64", "windows/amd64", False),
    ],
)
def test_platform_matches(wanted: str, offered: str, matches: bool) -> None:
    assert platform_matches(_p(wanted), _p(offered)) is matches


def test_matching_normalises_unnormalised_inputs() -> None:
    assert platform_matches(Platform("Linux", "x86_64"), Platform("linux", "amd64", "v1"))
    assert platform_matches(Platform("linux", "arm"), Platform("linux", "arm", "6"))
    assert platform_rank(Platform("linux", "arm"), Platform("linux", "armel")) == 1
    assert platform_rank(Platform("linux", "arm", "v7"), Platform("linux", "arm", "v5")) == 2
    assert platform_rank(Platform("linux", "arm", "v7"), Platform("linux", "s390x")) is None
