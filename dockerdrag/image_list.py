"""Image lists: the file ``dockerdrag pull -f FILE`` reads, one image per line.

::

    # base images
    alpine:3.20
    busybox:1.36   --platform linux/arm64     # a line's own platform
    mirror.example.com/library/nginx:1.27 --tag nginx:1.27
    nginx:1.27 --platform=linux/amd64,linux/arm64   # several: oci formats only

Each line holds an image reference, then optionally ``--platform P`` (the
platform(s) to pull for that line, as the command's ``--platform`` takes them;
it replaces the command's default for that line) and ``--tag NAME:TAG`` (the
name written into the archive for that image, as the command's ``--tag``).
Options may be written ``--platform P`` or ``--platform=P``. ``#`` starts a
comment, on its own line or after a line's words; blank lines are ignored.

Every line is checked here, before any network I/O: a malformed one raises
:class:`~dockerdrag.errors.ImageListError` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DockerDragError, ImageListError
from .platform import parse_platforms
from .reference import Reference

LINE_OPTIONS = ("--platform", "--tag")

__all__ = ["ImageListEntry", "parse_image_list", "read_image_list"]


@dataclass(frozen=True)
class ImageListEntry:
    """One image of a list: the reference as written and the line's own options.

    ``platform`` is ``None`` when the line names none (the pull's default
    applies); ``tag`` is the name to write into the archive (``None``: the
    reference's own). ``location`` (``images.txt:3``) names the line in messages.
    """

    reference: str
    platform: str | None = None
    tag: str | None = None
    location: str = ""

    def __post_init__(self) -> None:
        """Check the fields as a list line would be checked (raises ImageListError)."""
        where = self.location or self.reference
        try:
            Reference.parse(self.reference)
            if self.platform is not None:
                parse_platforms(self.platform)
            if self.tag is not None and Reference.parse(self.tag).digest is not None:
                raise ImageListError(
                    f"the tag {self.tag!r} cannot hold a digest: it is the name written "
                    "into the archive (NAME:TAG)"
                )
        except DockerDragError as exc:
            raise ImageListError(f"{where}: {exc}") from None


def parse_image_list(text: str, source: str = "<list>") -> list[ImageListEntry]:
    """The entries of an image list's ``text``; ``source`` names it in messages."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if words:
            entries.append(_parse_line(words, f"{source}:{number}"))
    if not entries:
        raise ImageListError(f"{source} lists no image")
    return entries


def read_image_list(path: str | Path) -> list[ImageListEntry]:
    """Read and parse the image list at ``path`` (UTF-8)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ImageListError(f"cannot read image list {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ImageListError(f"image list {path} is not UTF-8 text: {exc.reason}") from None
    return parse_image_list(text, str(path))


def _parse_line(words: list[str], location: str) -> ImageListEntry:
    reference, *rest = words
    if reference.startswith("-"):
        raise ImageListError(
            f"{location}: a line starts with an image reference, not {reference!r}"
        )
    options: dict[str, str] = {}
    while rest:
        word = rest.pop(0)
        name, equals, value = word.partition("=")
        if name not in LINE_OPTIONS:
            raise ImageListError(
                f"{location}: unexpected {word!r} (after the image a line takes "
                "--platform P and --tag NAME:TAG)"
            )
        if not equals:
            if not rest:
                raise ImageListError(f"{location}: {name} needs a value")
            value = rest.pop(0)
        if name in options:
            raise ImageListError(f"{location}: {name} given twice")
        options[name] = value
    return ImageListEntry(
        reference, options.get("--platform"), options.get("--tag"), location=location
    )
