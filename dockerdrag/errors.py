"""The exception hierarchy of dockerdrag.

Every error the library raises on purpose derives from :class:`DockerDragError`;
foreign exceptions (aiohttp, OSError, ...) are mapped at the boundary where they
occur. Each class carries an ``exit_code`` that the CLI uses.

::

    DockerDragError                       (exit 1)
    ├── UsageError                        (exit 2)  bad option values
    │   ├── InvalidReferenceError                   malformed image reference
    │   ├── InvalidPlatformError                    malformed platform string
    │   ├── UnsupportedFormatError                  unknown output format
│   ├── ImageListError                          malformed line of an image list (pull -f)
│   └── LockfileError                           malformed lock file, or one the list differs from
    ├── AuthenticationError               (exit 3)  wrong credentials, token refused
    ├── NotFoundError                     (exit 4)
    │   ├── ManifestUnknownError                    tag/digest not in the repository
    │   ├── BlobUnknownError                        blob not in the repository
    │   ├── PullAccessDeniedError                   anonymous pull refused: no such
    │   │                                           repository, or it needs a login
    │   └── PlatformNotFoundError                   index has no matching platform
    │       └── PlatformRequiredError               multi-platform image, none chosen
    ├── RegistryError                     (exit 5)  unexpected HTTP status / protocol
    │   └── NetworkError                            connection refused, reset, timeout
    │       └── TLSError                            certificate verification failed
    ├── IntegrityError                    (exit 6)  the registry's bytes are wrong
    │   ├── DigestMismatchError                     body hash != expected digest
    │   ├── SizeMismatchError                       body size != descriptor size
    │   ├── DiffIDMismatchError                     uncompressed layer != diff_id
    │   ├── InvalidManifestError                    ambiguous/oversized/unsupported document
    │   └── CorruptArchiveError                     an archive is truncated, damaged or
    │                                               misses a member it references
    ├── OutputError                       (exit 7)  cannot write the archive (disk full, ...)
    └── UnsupportedEventLoopError         (exit 1)  called from an event loop other than asyncio
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self


class Setting(enum.Enum):
    """A setting of a pull or push that an error's message may suggest changing, by the
    name of its parameter in the library's API."""

    INSECURE = "insecure"
    CA_CERT = "ca_cert"
    PLATFORM = "platform"
    CREDENTIALS = "credentials"
    TAG = "tags"
    FORMAT = "format"
    INCLUDE_FOREIGN = "include_foreign"
    INCLUDE_ATTESTATIONS = "include_attestations"
    LOCKED = "locked"
    RENAMES = "renames"


@dataclass(frozen=True)
class Remedy:
    """A setting (and the value to give it, when the message knows one) that would let a
    failed operation succeed. ``str()`` words it as the library's parameter
    (``insecure=['HOST']``); the command words it as its option instead."""

    setting: Setting
    value: str = ""

    def __str__(self) -> str:
        name = self.setting.value
        if self.setting is Setting.INSECURE:
            return f"{name}=[{self.value!r}]"
        if self.setting is Setting.CA_CERT:
            return f"{name}=PATH"
        if self.setting is Setting.CREDENTIALS:
            return f"{name}=Credentials(username, password)"
        if self.setting is Setting.RENAMES and self.value:
            image, _, target = self.value.partition("=")
            return f"{name}={{{image!r}: {target or '...'!r}}}"
        if self.setting is Setting.TAG:
            return f"{name}=[{self.value!r}]" if self.value else f"{name}=[...]"
        if self.setting in (Setting.INCLUDE_FOREIGN, Setting.INCLUDE_ATTESTATIONS):
            return f"{name}=True"
        return f"{name}={self.value!r}" if self.value else f"{name}=..."


class DockerDragError(Exception):
    """Base class of every error dockerdrag raises.

    ``remedies`` are the settings the message suggests, each worded in the message as
    ``str(remedy)``; the command replaces that wording by its option's.
    """

    exit_code: int = 1
    remedies: tuple[Remedy, ...] = ()

    def suggesting(self, *remedies: Remedy) -> Self:
        """This error, with ``remedies`` added to those its message words."""
        self.remedies = (*self.remedies, *remedies)
        return self


class UsageError(DockerDragError):
    """An argument or option value is not acceptable."""

    exit_code = 2


class InvalidReferenceError(UsageError):
    """An image reference does not follow the Docker reference grammar."""


class InvalidPlatformError(UsageError):
    """A platform string such as ``linux/arm64/v8`` is malformed."""


class UnsupportedFormatError(UsageError):
    """The requested output format is unknown."""


class ImageListError(UsageError):
    """An image list (``pull -f FILE``) cannot be read or has a malformed line."""


class LockfileError(UsageError):
    """A lock file (``pull --locked FILE``) is malformed or does not match the image list."""


class AuthenticationError(DockerDragError):
    """The registry refused our credentials or token."""

    exit_code = 3


class NotFoundError(DockerDragError):
    """Something asked for does not exist."""

    exit_code = 4


class ManifestUnknownError(NotFoundError):
    """The registry has no manifest for this tag or digest."""


class BlobUnknownError(NotFoundError):
    """The registry has no blob with this digest."""


class PullAccessDeniedError(NotFoundError):
    """The registry refused an anonymous pull of a repository.

    As Docker says: the repository does not exist or may require ``docker login``
    (registries such as Docker Hub answer both alike). Refused credentials are an
    :class:`AuthenticationError` instead.
    """


class PlatformNotFoundError(NotFoundError):
    """A manifest index lists no image for the requested platform.

    ``available`` holds the platforms the index does offer.
    """

    def __init__(self, message: str, available: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.available: tuple[object, ...] = tuple(available)


class PlatformRequiredError(PlatformNotFoundError):
    """The image is multi-platform and no platform was chosen."""


class RegistryError(DockerDragError):
    """The registry answered in a way we cannot use."""

    exit_code = 5

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NetworkError(RegistryError):
    """The registry could not be reached or the connection broke."""


class TLSError(NetworkError):
    """TLS verification of the registry failed."""


class IntegrityError(DockerDragError):
    """Content from the registry failed verification."""

    exit_code = 6


class DigestMismatchError(IntegrityError):
    """A body's sha256 differs from the digest it was asked for by."""


class SizeMismatchError(IntegrityError):
    """A body's length differs from the size in its descriptor."""


class DiffIDMismatchError(IntegrityError):
    """An uncompressed layer does not hash to its ``rootfs.diff_ids`` entry."""


class InvalidManifestError(IntegrityError):
    """A manifest, index or config is malformed, ambiguous or unsupported."""


class CorruptArchiveError(IntegrityError):
    """An image archive is truncated or damaged, or misses a member it references."""


class OutputError(DockerDragError):
    """The archive could not be written."""

    exit_code = 7


class UnsupportedEventLoopError(DockerDragError):
    """The library was called from an event loop other than asyncio (e.g. trio)."""


def leaf_error(error: BaseException) -> BaseException:
    """The most meaningful exception of ``error``, which may be an exception group (from a
    task group): the first DockerDragError among its leaves, else the first Ctrl-C, else
    its first leaf. The public entry points and the command raise or report this one."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending[:0] = current.exceptions
        else:
            leaves.append(current)
    for wanted in (DockerDragError, KeyboardInterrupt):
        for leaf in leaves:
            if isinstance(leaf, wanted):
                return leaf
    return leaves[0]
