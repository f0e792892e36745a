"""The pull API's parameters, each documented once.

:class:`~dockerdrag.pull.Puller`, its methods, :func:`~dockerdrag.pull.pull_image` and
:func:`~dockerdrag.pull.pull_images` share most of their parameters; :data:`PARAMETERS`
holds the one text of each, and :func:`documented` writes a ``Parameters:`` section
into the docstring of every function that takes them, so ``help()`` shows each
parameter in full wherever it is taken. A parameter that means something else in one
function gets that function's own text (an override). Under ``python -OO`` there are
no docstrings to complete.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import TypeVar

PARAMETERS: dict[str, str] = {
    # What one call pulls, and where to.
    "reference": (
        "the image: ``busybox``, ``busybox:1.36``, ``ghcr.io/org/app:1``, "
        "``app@sha256:…`` (Docker's grammar), or a :class:`Reference`."
    ),
    "references": "the images, in the order ``manifest.json`` lists them.",
    "platform": (
        "which image of a multi-platform index to pull (the same for every image of a "
        'bundle): a :class:`Platform` or ``"os/arch[/variant]"`` (``"linux/arm64"``; '
        '``"arm64"`` or ``"arm/v7"`` alone mean ``linux/arm64``, ``linux/arm/v7``). With '
        '``format="oci"``/``"oci-dir"`` also several (a sequence or a comma-separated '
        'string) or ``"all"``. ``None``: an index offering several platforms raises '
        ":class:`PlatformRequiredError` (listing them); a single-platform image is pulled "
        "whatever its platform. Given, a single-platform image for another platform raises "
        ":class:`PlatformNotFoundError` before any layer is fetched."
    ),
    "output": (
        "the archive's path; default: the repository with ``/`` turned into ``_`` in the "
        "current directory (``library_busybox.tar``; without ``.tar`` for ``oci-dir``); an "
        "existing directory gets the archive inside it under that name (not for ``oci-dir``)."
    ),
    "tag": (
        "the ``name:tag`` written into the archive (default: the reference's own tag; none "
        "for a digest-only reference, which then loads untagged, as "
        "``docker save IMAGE@DIGEST`` does)."
    ),
    "tags": (
        "the ``name:tag`` written for each image (parallel to ``references``; ``None`` in "
        "it, or no ``tags``: the reference's own)."
    ),
    "format": (
        '``"docker"`` (the legacy ``docker save`` archive, layers decompressed), ``"oci"`` '
        "(an OCI layout and ``manifest.json`` in one tar, layers as pulled) or "
        '``"oci-dir"`` (the OCI layout as a directory, which must not exist or be empty).'
    ),
    "progress": (
        "a callback receiving every pull's events (:class:`PullStarted`, "
        ":class:`LayerProgress`, :class:`ArchiveWriting`), on the event loop."
    ),
    # An image list's pull.
    "entries": (
        "the lines, from :func:`~dockerdrag.image_list.read_image_list` or built by hand; "
        "with ``locked`` also ``None``: the lock file's own list."
    ),
    "locked": (
        "a lock file (:func:`~dockerdrag.lockfile.read_lockfile`) whose digests are pulled, "
        "without resolving any tag; ``entries`` must then name the same images with the "
        "same platforms and tags."
    ),
    "lock_output": (
        "where the result's ``lock`` is written, atomically, once the archive is complete "
        "(e.g. ``default_lock_path(output)``)."
    ),
    # How the client reaches registries and keeps blobs.
    "insecure": (
        "registries (``host[:port]``) that may be reached over plain HTTP or with "
        "unverified TLS; never implied for any other host."
    ),
    "ca_cert": (
        "a PEM file of extra CA certificates to trust (besides the system store and "
        "Docker's ``certs.d``)."
    ),
    "credentials": (
        "a mapping of registry hosts (``ghcr.io``, ``host:port``, ``registry-1.docker.io`` "
        "for Docker Hub) to :class:`Credentials`, or one :class:`Credentials` for the "
        "registry of the images pulled (bound to the first image's registry; an image from "
        "another registry is then a :class:`UsageError`). Hosts without explicit "
        "credentials use the Docker config, as ``docker pull`` does."
    ),
    "use_docker_config": (
        "whether to look credentials up in ``$DOCKER_CONFIG/config.json`` (credential "
        "helpers included)."
    ),
    "registry_mirrors": (
        "Docker Hub mirror URLs (``https://mirror:5000``; an ``http://`` URL allows that "
        "mirror plain HTTP), tried in order before Docker Hub for Docker Hub images, as "
        "dockerd's ``registry-mirrors``."
    ),
    "cache_dir": "the blob cache directory (default ``$XDG_CACHE_HOME/dockerdrag``).",
    "concurrency": "the most connections open at once, layers and chunks together.",
    "retry": "how transient failures are retried (:class:`RetryPolicy`).",
    "archive_options": (
        "how the docker format's bytes vary between Docker versions "
        "(:class:`DockerArchiveOptions`; the default is Docker 20.10's)."
    ),
    "include_attestations": ("keep attestation manifests (SBOM, provenance) in the OCI formats."),
    "include_foreign": (
        "fetch foreign (non-distributable) layers from the URLs their descriptors name, "
        "without credentials; the docker format needs it for images that have such layers."
    ),
    "transfer": ("when blobs are split into parallel ranged chunks (:class:`TransferOptions`)."),
}

BUNDLE_OUTPUT = "the archive's path (required: a bundle has no default name)."
"""``output`` of a call that writes several images into one archive."""

CALL_PROGRESS = "a callback receiving this call's events (besides the client's ``progress``)."
"""``progress`` of one call of a client."""

LIST_PLATFORM = "the platform of the lines that name none (as :meth:`pull` takes it)."
"""``platform`` of an image list's pull."""

INSPECT_PLATFORM = (
    "for a multi-platform image, the platform whose manifest and config are read (as for "
    ":meth:`pull`); without it only the index is described (unless it offers exactly one "
    "platform)."
)
"""``platform`` of an inspection."""

_Documented = TypeVar("_Documented", bound=Callable[..., object])


def documented(**overrides: str) -> Callable[[_Documented], _Documented]:
    """Append a ``Parameters:`` section to the docstring of the decorated function (of a
    class: its constructor's), one entry per parameter in signature order: its text in
    ``overrides``, else in :data:`PARAMETERS`. A parameter with neither is a TypeError."""

    def document(function: _Documented) -> _Documented:
        if function.__doc__ is None:  # python -OO
            return function
        names = [name for name in inspect.signature(function).parameters if name != "self"]
        unknown = [name for name in names if name not in overrides and name not in PARAMETERS]
        if unknown:
            raise TypeError(f"{function.__qualname__}: no text for the parameters {unknown}")
        entries = [
            textwrap.fill(
                f"``{name}``: {overrides.get(name) or PARAMETERS[name]}",
                width=80,
                initial_indent="    ",
                subsequent_indent="        ",
                break_on_hyphens=False,
            )
            for name in names
        ]
        function.__doc__ = "\n".join([inspect.cleandoc(function.__doc__), "", "Parameters:"])
        function.__doc__ += "\n" + "\n".join(entries)
        return function

    return document


__all__ = [
    "BUNDLE_OUTPUT",
    "CALL_PROGRESS",
    "INSPECT_PLATFORM",
    "LIST_PLATFORM",
    "PARAMETERS",
    "documented",
]
