"""Where each OS keeps what dockerdrag reads and writes, and what it may name a file.

These are conventions of an OS (and of Docker on it), so they are chosen by the
platform's name; what the system can *do* is found out by :mod:`dockerdrag.osfiles`.

* the blob cache: ``$XDG_CACHE_HOME/dockerdrag`` (``~/.cache/dockerdrag``) on Linux,
  ``~/Library/Caches/dockerdrag`` on macOS, ``%LOCALAPPDATA%\\dockerdrag\\Cache`` on
  Windows (``platformdirs``);
* Docker's per-registry CA directories: ``/etc/docker/certs.d`` and
  ``$XDG_CONFIG_HOME/docker/certs.d`` on Linux (the rootless daemon's), also
  ``~/.docker/certs.d`` on macOS (Docker Desktop's), ``%ProgramData%\\docker\\certs.d``
  and ``%USERPROFILE%\\.docker\\certs.d`` on Windows, where a directory cannot be named
  ``host:port``: dockerd looks for ``hostport`` there (it drops the colon), and so
  does dockerdrag;
* the CAs a TLS connection trusts: OpenSSL's on Linux (``SSL_CERT_FILE``,
  ``SSL_CERT_DIR``), the OS store on macOS (Keychain) and Windows (certificate store)
  through ``truststore``, with ``SSL_CERT_FILE``/``SSL_CERT_DIR`` added to it;
* file names: Windows refuses ``<>:"/\\|?*``, control characters, a trailing dot or
  space and the device names (``CON``, ``NUL``, ``COM1``, ...), with any extension.
"""

from __future__ import annotations

import os
import re
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from .errors import UsageError

__all__ = [
    "certs_d_name",
    "check_output_name",
    "default_cache_dir",
    "docker_certs_d_dirs",
    "names_as_on_windows",
    "trusting_context",
    "uses_os_trust_store",
    "windows_name_problem",
]

APP_NAME: Final = "dockerdrag"

_WINDOWS_FORBIDDEN: Final = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_WINDOWS_DEVICES: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")}
)


def default_cache_dir() -> Path:
    """The platform's cache directory for dockerdrag (see the module docstring).

    On Linux this is what ``platformdirs`` gives too, written out here: importing it
    would cost every pull a few milliseconds.
    """
    if sys.platform.startswith("linux"):
        configured = os.environ.get("XDG_CACHE_HOME", "").strip()
        base = configured or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / APP_NAME
    import platformdirs

    return platformdirs.user_cache_path(APP_NAME, appauthor=False)


def docker_certs_d_dirs(
    system: str | None = None, environ: Mapping[str, str] = os.environ
) -> tuple[Path, ...]:
    """The directories whose ``<host>`` subdirectory holds a registry's CAs and client keys.

    ``system`` is a ``sys.platform`` value (default: this one's).
    """
    system = system or sys.platform
    home = Path(os.path.expanduser("~"))
    if system == "win32":
        program_data = environ.get("ProgramData") or environ.get("PROGRAMDATA") or r"C:\ProgramData"
        return (Path(program_data) / "docker" / "certs.d", home / ".docker" / "certs.d")
    config_home = environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    dirs = (Path("/etc/docker/certs.d"), Path(config_home) / "docker" / "certs.d")
    if system == "darwin":
        return (home / ".docker" / "certs.d", *dirs)
    return dirs


def certs_d_name(host: str, system: str | None = None) -> str:
    """The name of ``host``'s directory in a certs.d directory (``host:port`` but on Windows)."""
    return host.replace(":", "") if (system or sys.platform) == "win32" else host


def windows_name_problem(name: str) -> str | None:
    """Why Windows would refuse ``name`` as a file name, or None if it takes it."""
    if not name:
        return "it is empty"
    bad = sorted(set(_WINDOWS_FORBIDDEN.findall(name)))
    if bad:
        shown = " ".join(repr(char) for char in bad)
        return f"it holds characters Windows does not allow in a file name: {shown}"
    if name[-1] in ". ":
        return "Windows does not allow a file name that ends in a dot or a space"
    device = name.split(".", 1)[0].rstrip(" ").upper()
    if device in _WINDOWS_DEVICES:
        return f"{device} is a device name on Windows, with any extension"
    return None


def check_output_name(output: Path, *, windows: bool | None = None) -> None:
    """Refuse (UsageError) an output name the file system will not take, before any I/O.

    Checked on Windows only (``windows`` overrides that): elsewhere such a name is
    valid, and refusing it would break what works today.
    """
    if not (names_as_on_windows() if windows is None else windows):
        return
    problem = windows_name_problem(output.name)
    if problem is not None:
        raise UsageError(f"cannot name the output {output.name!r}: {problem}; choose another -o")


def names_as_on_windows() -> bool:
    """Whether output names must be valid Windows file names (they must on Windows)."""
    return sys.platform == "win32"


def uses_os_trust_store(system: str | None = None) -> bool:
    """Whether TLS trusts the OS's certificate store (macOS, Windows) instead of OpenSSL's.

    On Linux OpenSSL's default paths are the system's store already.
    """
    return (system or sys.platform) in ("darwin", "win32")


def trusting_context(
    os_store: bool | None = None, environ: Mapping[str, str] = os.environ
) -> ssl.SSLContext:
    """A verifying client context that trusts the system's CAs.

    ``os_store`` (default: :func:`uses_os_trust_store`) asks for ``truststore``'s
    context, which verifies with the OS; ``SSL_CERT_FILE``/``SSL_CERT_DIR`` are then
    added to it, as OpenSSL honours them everywhere else.
    """
    if not (uses_os_trust_store() if os_store is None else os_store):
        return ssl.create_default_context()
    import truststore

    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cafile, capath = environ.get("SSL_CERT_FILE"), environ.get("SSL_CERT_DIR")
    if cafile or capath:
        context.load_verify_locations(cafile=cafile or None, capath=capath or None)
    return context
