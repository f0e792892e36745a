"""Library errors word the settings they suggest as API parameters; the command words the
same remedies as its options (``cli_report.error_message``)."""

from __future__ import annotations

import pytest

from dockerdrag.cli_report import error_message, option_text
from dockerdrag.errors import (
    ImageListError,
    PlatformNotFoundError,
    Remedy,
    Setting,
    TLSError,
    UsageError,
)
from dockerdrag.platform import Platform, check_image_platform
from dockerdrag.pull import archive_tags
from dockerdrag.push import plan_targets
from dockerdrag.reference import Reference
from tests.support.command import assert_names_no_option

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("setting", list(Setting))
def test_each_remedy_is_a_parameter_for_the_library_and_an_option_for_the_command(
    setting: Setting,
) -> None:
    remedy = Remedy(setting, "127.0.0.1:5000")
    assert_names_no_option(str(remedy))
    assert str(remedy).startswith(setting.value)
    assert option_text(remedy).startswith("--")


def test_the_command_rewords_each_remedy_of_a_message() -> None:
    ca_cert, insecure = Remedy(Setting.CA_CERT), Remedy(Setting.INSECURE, "reg:5000")
    error = TLSError(f"not verified; trust it with {ca_cert} or pass {insecure}").suggesting(
        ca_cert, insecure
    )
    assert str(error) == "not verified; trust it with ca_cert=PATH or pass insecure=['reg:5000']"
    assert (
        error_message(error)
        == "not verified; trust it with --ca-cert FILE or pass --insecure reg:5000"
    )


def test_a_wrapping_error_keeps_the_remedies_it_quotes() -> None:
    remedy = Remedy(Setting.FORMAT, "oci")
    inner = UsageError(f"several platforms need {remedy}").suggesting(remedy)
    outer = ImageListError(f"l.txt:2: {inner}").suggesting(*inner.remedies)
    assert error_message(outer) == "l.txt:2: several platforms need --format oci"


def test_a_digest_in_a_tag_names_the_parameter_or_the_option() -> None:
    with pytest.raises(UsageError) as info:
        archive_tags(Reference.parse("busybox"), f"web@{DIGEST}")
    assert_names_no_option(str(info.value))
    assert str(info.value).startswith(f"tags=['web@{DIGEST}']: ")
    assert error_message(info.value).startswith(f"--tag 'web@{DIGEST}': ")


def test_a_platform_mismatch_names_the_parameter_or_the_option() -> None:
    with pytest.raises(PlatformNotFoundError) as info:
        check_image_platform(
            "busybox", [Platform.parse("linux/arm64")], Platform.parse("linux/amd64")
        )
    assert_names_no_option(str(info.value))
    assert "platform='linux/amd64' pulls it" in str(info.value)
    assert "--platform linux/amd64 pulls it" in error_message(info.value)


def test_a_push_without_destination_names_the_parameter_or_the_option() -> None:
    with pytest.raises(UsageError) as info:
        plan_targets([], None, {})
    assert_names_no_option(str(info.value))
    assert str(info.value) == "give a destination repository or renames={'NAME': 'DEST:TAG'}"
    assert error_message(info.value) == "give a destination repository or --image NAME=DEST:TAG"
