"""dockerdrag: pull container images from Docker/OCI registries without a Docker daemon.

The main entry points are :func:`pull_image` for one pull, :func:`pull_images`
for several images in one archive, and :class:`Puller` for several pulls sharing
one HTTP session and cache::

    from dockerdrag import pull_image
    result = await pull_image("busybox:1.36", platform="linux/amd64", output="busybox.tar")

Progress comes as typed events, to a ``progress=`` callback or as an async
iterator (:meth:`Puller.pull_events`); :meth:`Puller.inspect` describes an image
without pulling it. Every error derives from :class:`DockerDragError` (see
:mod:`dockerdrag.errors`). The library logs to the ``dockerdrag`` logger
(``DEBUG``: each request, never a secret).
"""

from .auth import Credentials
from .digest import Digest
from .errors import (
    AuthenticationError,
    DigestMismatchError,
    DockerDragError,
    IntegrityError,
    InvalidPlatformError,
    InvalidReferenceError,
    ManifestUnknownError,
    NetworkError,
    NotFoundError,
    OutputError,
    PlatformNotFoundError,
    PlatformRequiredError,
    RegistryError,
    TLSError,
    UsageError,
)
from .events import ArchiveWriting, LayerPhase, LayerProgress, ProgressEvent, PullStarted
from .platform import Platform
from .pull import (
    ImageInspection,
    LayerResult,
    Puller,
    PullEvent,
    PullFinished,
    PullResult,
    pull_image,
    pull_images,
)
from .reference import Reference
from .transport import RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "ArchiveWriting",
    "AuthenticationError",
    "Credentials",
    "Digest",
    "DigestMismatchError",
    "DockerDragError",
    "ImageInspection",
    "IntegrityError",
    "InvalidPlatformError",
    "InvalidReferenceError",
    "LayerPhase",
    "LayerProgress",
    "LayerResult",
    "ManifestUnknownError",
    "NetworkError",
    "NotFoundError",
    "OutputError",
    "Platform",
    "PlatformNotFoundError",
    "PlatformRequiredError",
    "ProgressEvent",
    "PullEvent",
    "PullFinished",
    "PullResult",
    "PullStarted",
    "Puller",
    "Reference",
    "RegistryError",
    "RetryPolicy",
    "TLSError",
    "UsageError",
    "__version__",
    "pull_image",
    "pull_images",
]
