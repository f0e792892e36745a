"""Image references in Docker's grammar: ``[domain[:port]/]path[:tag][@digest]``.

Rules (as in Docker's ``distribution/reference``, normalised like ``docker pull``):

* The first ``/``-separated component is a *domain* if it contains ``.`` or
  ``:``, is ``localhost``, or contains uppercase letters; otherwise the whole
  name is a Docker Hub path. A domain is DNS labels (letters, digits, inner
  ``-``) joined by ``.``, or a bracketed IPv6 address, with an optional port.
* ``docker.io``, ``index.docker.io`` and no domain all mean Docker Hub; a
  one-component Hub path gets ``library/`` in front.
* Path components are lowercase ``[a-z0-9]+`` runs joined by one ``.``, one or
  two ``_``, or any number of ``-``. So ``..``, ``.x`` or empty components
  (``a//b``) are invalid: a path can never traverse directories.
* The fully qualified name (``docker.io/library/busybox``) is at most 255 characters.
* A tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; a digest is
  ``sha256:<64 lowercase hex>`` (see :class:`~dockerdrag.digest.Digest`).
* No tag and no digest means tag ``latest``. With both, both are kept and the
  digest decides what is fetched.

A :class:`Reference` validates its fields when constructed, so its parts are
always safe to put in a URL or a file name. Parsing and printing are symmetric:
``Reference.parse(str(ref)) == ref``. Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .conventions import windows_name_problem
from .digest import Digest
from .errors import InvalidReferenceError

__all__ = [
    "DEFAULT_TAG",
    "DOCKER_HUB_DOMAIN",
    "DOCKER_HUB_REGISTRY",
    "LEGACY_DOCKER_HUB_DOMAIN",
    "NAME_TOTAL_LENGTH_MAX",
    "OFFICIAL_REPO_PREFIX",
    "Reference",
]

DOCKER_HUB_DOMAIN = "docker.io"
"""The domain under which Docker Hub names are written."""
LEGACY_DOCKER_HUB_DOMAIN = "index.docker.io"
"""An old spelling of the Hub domain; normalised to :data:`DOCKER_HUB_DOMAIN`."""
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
"""The host that serves Docker Hub's registry API."""
OFFICIAL_REPO_PREFIX = "library/"
"""The namespace of Docker Hub's official images."""
DEFAULT_TAG = "latest"
"""The tag used when a reference names neither tag nor digest."""
NAME_TOTAL_LENGTH_MAX = 255
"""The longest fully qualified repository name Docker accepts."""

_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?P<host>{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])(?::(?P<port>[0-9]+))?"
)
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HEX64_RE = re.compile(r"[a-f0-9]{64}")


class _Problem(Exception):
    """Internal: what is wrong, to be worded with the text the user gave."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _fail(text: str, why: str) -> InvalidReferenceError:
    return InvalidReferenceError(f"invalid reference {text!r}: {why}")


def _check_domain(domain: str) -> None:
    match = _DOMAIN_RE.fullmatch(domain)
    if match is None:
        raise _Problem(
            f"invalid registry domain {domain!r} (expected host[:port], "
            "host made of letters, digits, '-' and '.')",
        )
    port = match.group("port")
    if port is not None and not 0 < int(port) <= 65535:
        raise _Problem(f"invalid registry port {port!r} (expected 1-65535)")


def _check_path(path: str) -> None:
    if not path:
        raise _Problem("repository name is empty")
    if path != path.lower():
        raise _Problem(f"repository name must be lowercase (got {path!r})")
    for component in path.split("/"):
        if not component:
            raise _Problem("repository name has an empty path component")
        if not _PATH_COMPONENT_RE.fullmatch(component):
            raise _Problem(
                f"invalid repository name component {component!r} (expected lowercase "
                "letters and digits, separated by '.', '_', '__' or '-')",
            )


def _check_tag(tag: str) -> None:
    if not tag:
        raise _Problem("':' without a tag")
    if len(tag) > 128:
        raise _Problem(f"tag is longer than 128 characters ({len(tag)})")
    if not _TAG_RE.fullmatch(tag):
        raise _Problem(
            f"invalid tag {tag!r} (expected letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-')",
        )


def _parse_digest(digest_text: str) -> Digest:
    if not digest_text:
        raise _Problem("'@' without a digest")
    try:
        return Digest.parse(digest_text)
    except InvalidReferenceError as exc:
        raise _Problem(str(exc)) from None


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DOCKER_HUB_DOMAIN, name


def _validated(domain: str, path: str, tag: object, digest: object) -> tuple[str, str]:
    """Check every field of a reference; return the normalised (domain, path)."""
    if domain == LEGACY_DOCKER_HUB_DOMAIN:
        domain = DOCKER_HUB_DOMAIN
    _check_domain(domain)
    _check_path(path)
    if domain == DOCKER_HUB_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    name = f"{domain}/{path}"
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise _Problem(
            f"repository name must not be longer than {NAME_TOTAL_LENGTH_MAX} "
            f"characters (got {len(name)})"
        )
    if tag is not None:
        if not isinstance(tag, str):
            raise _Problem("tag must be a string")
        _check_tag(tag)
    if digest is not None and not isinstance(digest, Digest):
        raise _Problem("digest must be a Digest")
    return domain, path


@dataclass(frozen=True)
class Reference:
    """A validated, normalised image reference.

    ``domain`` is ``docker.io`` for Docker Hub, else ``host[:port]``; ``path`` is
    the repository path inside it (``library/busybox``). At least one of ``tag``
    and ``digest`` is set: constructing with neither sets the tag ``latest``.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.domain, str) or not isinstance(self.path, str):
            raise InvalidReferenceError("reference domain and path must be strings")
        try:
            domain, path = _validated(self.domain, self.path, self.tag, self.digest)
        except _Problem as problem:
            raise _fail(f"{self.domain}/{self.path}", problem.why) from None
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "path", path)
        if self.tag is None and self.digest is None:
            object.__setattr__(self, "tag", DEFAULT_TAG)

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse a reference such as ``busybox``, ``ghcr.io/a/b:1.0`` or ``x@sha256:…``.

        Raises InvalidReferenceError saying what is wrong.
        """
        if not isinstance(text, str):
            raise InvalidReferenceError(f"invalid reference {text!r}: expected a string")
        try:
            return cls._parse(text)
        except _Problem as problem:
            raise _fail(text, problem.why) from None

    @classmethod
    def _parse(cls, text: str) -> Reference:
        if not text:
            raise _Problem("empty image name")
        if any(c.isspace() or not c.isprintable() for c in text):
            raise _Problem("contains whitespace or control characters")
        if not text.isascii():
            raise _Problem("contains non-ASCII characters")

        name_tag, at, digest_text = text.partition("@")
        digest = _parse_digest(digest_text) if at else None

        name, tag = name_tag, None
        slash = name_tag.rfind("/")
        colon = name_tag.rfind(":")
        if colon > slash:
            name, tag = name_tag[:colon], name_tag[colon + 1 :]
            _check_tag(tag)
        if not name:
            raise _Problem("repository name is empty")
        if _HEX64_RE.fullmatch(name):
            raise _Problem(
                "a 64-character hexadecimal string is an image ID, not a repository name"
            )
        domain, path = _split_domain(name)
        domain, path = _validated(domain, path, tag, digest)
        return cls(domain, path, tag, digest)

    @property
    def is_docker_hub(self) -> bool:
        """Whether this reference names a Docker Hub repository."""
        return self.domain == DOCKER_HUB_DOMAIN

    @property
    def registry_host(self) -> str:
        """The host (and port) to talk to: ``registry-1.docker.io`` for Hub."""
        return DOCKER_HUB_REGISTRY if self.is_docker_hub else self.domain

    @property
    def name(self) -> str:
        """The fully qualified repository name: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The short name Docker shows: ``busybox``, ``foo/bar``, ``localhost:5000/a/b``."""
        if not self.is_docker_hub:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX):
            rest = self.path[len(OFFICIAL_REPO_PREFIX) :]
            if "/" not in rest:
                return rest
        return self.path

    @property
    def fetch_ref(self) -> str:
        """What goes in ``/v2/<path>/manifests/<ref>``: the digest if any, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def with_tag(self, tag: str | None) -> Reference:
        """This reference with ``tag`` (validated) instead of its tag; the digest stays."""
        return replace(self, tag=tag)

    def with_digest(self, digest: Digest | str | None) -> Reference:
        """This reference with ``digest`` instead of its digest; the tag stays."""
        if isinstance(digest, str):
            try:
                digest = _parse_digest(digest)
            except _Problem as problem:
                raise _fail(f"{self.name}@{digest}", problem.why) from None
        return replace(self, digest=digest)

    def familiar_tagged(self) -> str | None:
        """``familiar_name:tag`` (``busybox:latest``), or None for a digest-only reference."""
        if self.tag is None:
            return None
        return f"{self.familiar_name}:{self.tag}"

    def default_output_name(self) -> str:
        """The archive name the original docker-drag used: ``library_busybox.tar``.

        A repository named like a Windows device (``reg:5000/nul``) gets a ``_`` after
        its name (``nul_.tar``): the name is valid on every OS.
        """
        name = self.path.replace("/", "_")
        if windows_name_problem(f"{name}.tar") is not None:
            name += "_"
        return f"{name}.tar"

    def __str__(self) -> str:
        """The canonical form: ``docker.io/library/busybox:latest[@sha256:…]``."""
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text
