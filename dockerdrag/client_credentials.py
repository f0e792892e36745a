"""The credentials a client is given, in either form the API takes.

``credentials=`` of :func:`~dockerdrag.pull_image`, :func:`~dockerdrag.pull_images`
and :class:`~dockerdrag.Puller` is a mapping of registry hosts (``ghcr.io``,
``host:port``; ``registry-1.docker.io`` for Docker Hub) to :class:`Credentials`,
or one :class:`Credentials` for the registry of the images pulled. One set of
credentials belongs to one registry: the first image a client handles binds it to
that image's registry, and an image from another registry is refused
(:class:`~dockerdrag.errors.UsageError`) before any request, so a password never
reaches a host it was not given for.
"""

from __future__ import annotations

from collections.abc import Mapping

from .credentials import Credentials
from .errors import UsageError
from .reference import Reference

CredentialsSpec = Credentials | Mapping[str, Credentials] | None


class ClientCredentials:
    """Explicit credentials by registry host, with one unbound set bound on first use."""

    def __init__(self, spec: CredentialsSpec) -> None:
        self.by_host: dict[str, Credentials] = {}
        """Host -> credentials; the transport reads it when it first meets a host."""
        self._unbound: Credentials | None = None
        self._bound_host: str | None = None
        if isinstance(spec, Credentials):
            self._unbound = spec
        elif spec is not None:
            self.by_host.update(spec)

    def bind(self, *references: Reference) -> None:
        """Before any request for ``references``: one set of credentials given without a
        host becomes the first one's registry's; raise UsageError for a second registry."""
        if self._unbound is None:
            return
        for reference in references:
            host = reference.registry_host
            if self._bound_host is None:
                self._bound_host = host
                self.by_host[host] = self._unbound
            elif host != self._bound_host:
                raise UsageError(
                    f"the credentials were given for one registry ({self._bound_host}), and "
                    f"{reference} is on {host}: pass credentials={{host: Credentials(...)}} "
                    "to pull from several registries"
                )


__all__ = ["ClientCredentials", "CredentialsSpec"]
