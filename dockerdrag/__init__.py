"""dockerdrag: pull container images from Docker/OCI registries without a Docker daemon.

The main entry points are :func:`pull_image` for one pull, :func:`pull_images`
for several images in one archive, :class:`Puller` for several pulls sharing
one HTTP session and cache, and :func:`push_archive` to push an archive's images
into a registry::

    from dockerdrag import pull_image
    result = await pull_image("busybox:1.36", platform="linux/amd64", output="busybox.tar")

The API runs on asyncio (``asyncio.run``, or anyio's asyncio backend); called from
another event loop such as trio it raises :class:`UnsupportedEventLoopError`. It
reads no ``DOCKERDRAG_*`` variable: every setting is an argument.

Progress comes as typed events, to a ``progress=`` callback or as an async
iterator (:meth:`Puller.pull_events`); :meth:`Puller.inspect` describes an image
without pulling it; :func:`verify_archive` checks a carried archive offline.
Every error derives from :class:`DockerDragError` (see :mod:`dockerdrag.errors`).
The library logs to the ``dockerdrag`` logger (``DEBUG``: each request, never a secret).

The names below are loaded on first use, so ``import dockerdrag`` stays cheap and
the command can prepare its process before aiohttp is imported
(:mod:`dockerdrag.startup`).
"""

import importlib
import typing

if typing.TYPE_CHECKING:
    from .archive_scan import ArchiveMember as ArchiveMember
    from .credentials import Credentials as Credentials
    from .digest import Digest as Digest
    from .docker_options import DockerArchiveOptions as DockerArchiveOptions
    from .download import TransferOptions as TransferOptions
    from .errors import AuthenticationError as AuthenticationError
    from .errors import BlobUnknownError as BlobUnknownError
    from .errors import CorruptArchiveError as CorruptArchiveError
    from .errors import DiffIDMismatchError as DiffIDMismatchError
    from .errors import DigestMismatchError as DigestMismatchError
    from .errors import DockerDragError as DockerDragError
    from .errors import ImageListError as ImageListError
    from .errors import IntegrityError as IntegrityError
    from .errors import InvalidManifestError as InvalidManifestError
    from .errors import InvalidPlatformError as InvalidPlatformError
    from .errors import InvalidReferenceError as InvalidReferenceError
    from .errors import LockfileError as LockfileError
    from .errors import ManifestUnknownError as ManifestUnknownError
    from .errors import NetworkError as NetworkError
    from .errors import NotFoundError as NotFoundError
    from .errors import OutputError as OutputError
    from .errors import PlatformNotFoundError as PlatformNotFoundError
    from .errors import PlatformRequiredError as PlatformRequiredError
    from .errors import PullAccessDeniedError as PullAccessDeniedError
    from .errors import RegistryError as RegistryError
    from .errors import Remedy as Remedy
    from .errors import Setting as Setting
    from .errors import SizeMismatchError as SizeMismatchError
    from .errors import TLSError as TLSError
    from .errors import UnsupportedEventLoopError as UnsupportedEventLoopError
    from .errors import UnsupportedFormatError as UnsupportedFormatError
    from .errors import UsageError as UsageError
    from .events import ArchiveWriting as ArchiveWriting
    from .events import LayerPhase as LayerPhase
    from .events import LayerProgress as LayerProgress
    from .events import ManifestPushed as ManifestPushed
    from .events import ProgressEvent as ProgressEvent
    from .events import PullStarted as PullStarted
    from .events import PushEvent as PushEvent
    from .events import PushStarted as PushStarted
    from .events import RequestRetry as RequestRetry
    from .events import TagMoved as TagMoved
    from .image_config import ImageConfig as ImageConfig
    from .image_list import ImageListEntry as ImageListEntry
    from .image_list import parse_image_list as parse_image_list
    from .image_list import read_image_list as read_image_list
    from .layers import Compression as Compression
    from .lockfile import LockedImage as LockedImage
    from .lockfile import LockedLayer as LockedLayer
    from .lockfile import LockedManifest as LockedManifest
    from .lockfile import Lockfile as Lockfile
    from .lockfile import default_lock_path as default_lock_path
    from .lockfile import read_lockfile as read_lockfile
    from .lockfile import write_lockfile as write_lockfile
    from .low_speed import LowSpeedLimit as LowSpeedLimit
    from .manifest import Descriptor as Descriptor
    from .manifest import ImageIndex as ImageIndex
    from .manifest import ImageManifest as ImageManifest
    from .platform import Platform as Platform
    from .pull import Puller as Puller
    from .pull import pull_image as pull_image
    from .pull import pull_images as pull_images
    from .pull_results import ImageInspection as ImageInspection
    from .pull_results import LayerResult as LayerResult
    from .pull_results import ListPullResult as ListPullResult
    from .pull_results import PullEvent as PullEvent
    from .pull_results import PullFinished as PullFinished
    from .pull_results import PullResult as PullResult
    from .push import PushedImage as PushedImage
    from .push import PushResult as PushResult
    from .push import push_archive as push_archive
    from .reference import Reference as Reference
    from .retry import RetryPolicy as RetryPolicy
    from .verify import ArchiveImage as ArchiveImage
    from .verify import VerifiedArchive as VerifiedArchive
    from .verify import verify_archive as verify_archive

__version__ = "0.1.0"

# Each public name and the module that defines it.
_HOMES = {
    "ArchiveImage": "verify",
    "ArchiveMember": "archive_scan",
    "ArchiveWriting": "events",
    "AuthenticationError": "errors",
    "BlobUnknownError": "errors",
    "Compression": "layers",
    "CorruptArchiveError": "errors",
    "Credentials": "credentials",
    "Descriptor": "manifest",
    "DiffIDMismatchError": "errors",
    "Digest": "digest",
    "DigestMismatchError": "errors",
    "DockerArchiveOptions": "docker_options",
    "DockerDragError": "errors",
    "ImageConfig": "image_config",
    "ImageIndex": "manifest",
    "ImageInspection": "pull_results",
    "ImageListEntry": "image_list",
    "ImageListError": "errors",
    "ImageManifest": "manifest",
    "IntegrityError": "errors",
    "InvalidManifestError": "errors",
    "InvalidPlatformError": "errors",
    "InvalidReferenceError": "errors",
    "LayerPhase": "events",
    "LayerProgress": "events",
    "LayerResult": "pull_results",
    "ListPullResult": "pull_results",
    "LockedImage": "lockfile",
    "LockedLayer": "lockfile",
    "LockedManifest": "lockfile",
    "Lockfile": "lockfile",
    "LockfileError": "errors",
    "LowSpeedLimit": "low_speed",
    "ManifestPushed": "events",
    "ManifestUnknownError": "errors",
    "NetworkError": "errors",
    "NotFoundError": "errors",
    "OutputError": "errors",
    "Platform": "platform",
    "PlatformNotFoundError": "errors",
    "PlatformRequiredError": "errors",
    "ProgressEvent": "events",
    "PullAccessDeniedError": "errors",
    "PullEvent": "pull_results",
    "PullFinished": "pull_results",
    "PullResult": "pull_results",
    "PullStarted": "events",
    "Puller": "pull",
    "PushEvent": "events",
    "PushResult": "push",
    "PushStarted": "events",
    "PushedImage": "push",
    "Reference": "reference",
    "RegistryError": "errors",
    "Remedy": "errors",
    "RequestRetry": "events",
    "RetryPolicy": "retry",
    "Setting": "errors",
    "SizeMismatchError": "errors",
    "TLSError": "errors",
    "TagMoved": "events",
    "TransferOptions": "download",
    "UnsupportedEventLoopError": "errors",
    "UnsupportedFormatError": "errors",
    "UsageError": "errors",
    "VerifiedArchive": "verify",
    "default_lock_path": "lockfile",
    "parse_image_list": "image_list",
    "pull_image": "pull",
    "pull_images": "pull",
    "push_archive": "push",
    "read_image_list": "image_list",
    "read_lockfile": "lockfile",
    "verify_archive": "verify",
    "write_lockfile": "lockfile",
}

__all__ = [*sorted(_HOMES), "__version__"]


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dockerdrag' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
