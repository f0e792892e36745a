"""How a client reaches each test registry mode (shared by the pull tests)."""

from __future__ import annotations

from typing import Any

from dockerdrag import Credentials
from tests.support.registry_server import RegistryServer


def client_options(server: RegistryServer) -> dict[str, Any]:
    """Keyword arguments for Puller/pull_image that reach ``server`` as a user would."""
    options: dict[str, Any] = {"use_docker_config": False}
    if server.insecure:
        options["insecure"] = [server.host]
    if server.ca_pem_path is not None:
        options["ca_cert"] = server.ca_pem_path
    token_server = server.token_server
    if token_server is not None and token_server.scheme != "https":
        # A plain-HTTP token realm receives credentials only when named insecure.
        realm_host = token_server.url.split("://", 1)[1].split("/", 1)[0]
        options["insecure"] = [*options.get("insecure", []), realm_host]
    if server.username and server.password:
        options["credentials"] = {
            server.host: Credentials(username=server.username, password=server.password)
        }
    return options
