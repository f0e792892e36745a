"""A pull's arguments checked before any network I/O: the output format, the references
(each on the registry the credentials were given for), the names written into the archive
and the platforms asked for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

from .client_credentials import ClientCredentials
from .errors import Remedy, Setting, UnsupportedFormatError, UsageError
from .platform import Platform, PlatformSpec, parse_platforms
from .reference import Reference

FORMATS: tuple[str, ...] = ("docker", "oci", "oci-dir")


def check_format(output_format: str) -> None:
    """Raise UnsupportedFormatError unless ``output_format`` is one of :data:`FORMATS`."""
    if output_format not in FORMATS:
        raise UnsupportedFormatError(
            f"unknown format {output_format!r}: choose one of {', '.join(FORMATS)}"
        )


def as_reference(reference: str | Reference) -> Reference:
    """``reference`` parsed (Docker's grammar), unless it is a Reference already."""
    return reference if isinstance(reference, Reference) else Reference.parse(reference)


def references_to_pull(references: Sequence[str | Reference]) -> list[Reference]:
    """The images of one pull, parsed; raise UsageError when there is none."""
    refs = [as_reference(r) for r in references]
    if not refs:
        raise UsageError("no image given")
    return refs


def archive_tags(reference: Reference, tag: str | None) -> tuple[str, ...]:
    """The RepoTags of the archive: ``tag`` if given, else the reference's own tag."""
    if tag is not None:
        named = Reference.parse(tag)
        if named.digest is not None:
            remedy = Remedy(Setting.TAG, tag)
            raise UsageError(
                f"{remedy}: a name written into an archive cannot hold a digest"
            ).suggesting(remedy)
        familiar = named.familiar_tagged()
        return (familiar,) if familiar else ()
    familiar = reference.familiar_tagged()
    return (familiar,) if familiar else ()


class ImagesPlan(NamedTuple):
    """What to write for the images of one pull: the references, each one's archive
    names, and the platforms wanted of every one."""

    references: list[Reference]
    repo_tags: tuple[tuple[str, ...], ...]  # parallel to the references
    wanted: list[Platform] | Literal["all"] | None


def plan_images(
    references: Sequence[str | Reference],
    platform: PlatformSpec,
    tags: Sequence[str | None] | None,
    output_format: str,
    credentials: ClientCredentials,
) -> ImagesPlan:
    """Check a pull of ``references`` into one archive in ``output_format``: the format,
    the references (bound to ``credentials``), their names (``tags``, parallel to the
    references; ``None``: the reference's own) and the platforms (several only in the
    OCI formats)."""
    check_format(output_format)
    refs = references_to_pull(references)
    credentials.bind(*refs)
    overrides = list(tags) if tags is not None else [None] * len(refs)
    if len(overrides) != len(refs):
        raise UsageError(f"tags holds {len(overrides)} names for {len(refs)} images")
    repo_tags = tuple(archive_tags(ref, t) for ref, t in zip(refs, overrides, strict=True))
    wanted = parse_platforms(platform)
    if output_format == "docker" and (wanted == "all" or (wanted is not None and len(wanted) > 1)):
        remedy = Remedy(Setting.FORMAT, "oci")
        raise UsageError(f"several platforms need {remedy} or 'oci-dir'").suggesting(remedy)
    return ImagesPlan(refs, repo_tags, wanted)


__all__ = [
    "FORMATS",
    "ImagesPlan",
    "archive_tags",
    "as_reference",
    "check_format",
    "plan_images",
    "references_to_pull",
]
