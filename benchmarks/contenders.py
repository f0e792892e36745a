"""The contenders: each turns a pushed image into something on disk, measured.

* ``dockerdrag`` / ``dockerdrag-oci``: ``python -m dockerdrag pull`` (``--format docker``
  is the default; ``--format oci`` only when the CLI has that option), cold: a fresh
  ``--cache-dir`` per run;
* ``dockerdrag-oci-dir``: the same with ``--format oci-dir`` (an OCI layout directory);
* ``dockerdrag-portable``: the docker-format pull under the emulated macOS profile
  (``tests/support/platform_profiles.py macos``: no ``O_TMPFILE``, no ``O_DIRECT``), the
  path every OS without Linux's fast calls takes (``--portable``);
* ``dockerdrag-baseline``: the docker-format pull of another checkout of dockerdrag
  (``--baseline-checkout PATH``), to compare a change with what it changes;
* ``skopeo``: ``skopeo copy docker://... docker-archive:OUT:name:tag`` (the baseline);
* ``docker``: ``docker pull`` then ``docker save`` on a private daemon, every image
  removed after each run; CPU is the daemon tree's, as the CLI does no work;
* ``curl-floor``: every blob (config + layers) fetched at once, one ``curl`` each, to
  disk: the network + disk floor with one connection per blob;
* ``decompress-floor``: every layer inflated at once, one process each (ISA-L), output
  discarded: the decompression floor.
* ``python-floor``: the layers fetched with aiohttp and hashed, nothing written: what a
  CPython client that verifies digests cannot beat (``benchmarks/python_floor.py``);
* ``python-floor-docker``: the same, each layer also inflated as it arrives and its
  diff_id hashed (two threads), nothing written: the floor of a docker-format pull.
* ``python-floor-docker-write``: the same, each inflated layer also written into a file
  (no fsync), aiohttp imported without the CAs of its unused TLS contexts: the floor of
  a docker-format pull that writes its archive of uncompressed layers in CPython;
* ``native-docker-floor``: every layer at once, one process each
  (``python -m benchmarks.floors docker-layer``): received, hashed, inflated, its diff_id
  hashed and written to disk past the page cache, each byte handled once by native
  code: the least work a docker-format pull does, spread over every core.

Every run happens in its own work directory, deleted afterwards; outputs are checked
(untimed) before that.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from tests.support.dockerd import DockerDaemon

from . import REPO_ROOT
from .imagegen import GeneratedImage
from .measure import Usage, run_sequence, tree_cpu_seconds
from .registries import PLAIN, Access


@dataclasses.dataclass(frozen=True)
class Target:
    """An image as reachable over one link (``host`` is the registry's or the proxy's)
    from one registry mode (``access``: plain HTTP, or TLS + token)."""

    image: GeneratedImage
    host: str
    link: str
    access: Access = PLAIN

    @property
    def reference(self) -> str:
        return f"{self.host}/{self.image.spec.repo}:{self.image.spec.tag}"

    def blob_url(self, digest: str) -> str:
        return f"{self.access.scheme}://{self.host}/v2/{self.image.spec.repo}/blobs/{digest}"

    def token_url(self) -> str:
        """The anonymous pull token's URL at the realm (token auth only)."""
        scope = f"repository:{self.image.spec.repo}:pull"
        return f"{self.access.realm}?service={self.access.service}&scope={scope}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    usage: Usage
    rss_measured: bool  # False when the work happens in a daemon
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.usage.ok and self.error is None


def _env(workdir: Path) -> dict[str, str]:
    """The harness's environment minus dockerdrag's own defaults, TMPDIR in ``workdir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKERDRAG_")}
    return {**env, "TMPDIR": str(workdir)}


def read_docker_manifest(path: Path) -> tuple[list[dict[str, Any]], set[str]]:
    """A ``docker load`` archive's ``manifest.json`` items and the names of its members."""
    with tarfile.open(path) as archive:
        names = set(archive.getnames())
        member = archive.extractfile("manifest.json")
        if member is None:
            raise ValueError(f"{path.name}: no manifest.json")
        items: list[dict[str, Any]] = json.load(member)
    return items, names


def check_docker_archive(path: Path, layers: int) -> None:
    """A ``docker load`` archive: manifest.json naming ``layers`` layer members."""
    manifest, names = read_docker_manifest(path)
    found = manifest[0]["Layers"]
    if len(found) != layers or not set(found) <= names:
        raise ValueError(f"{path.name}: {len(found)} layers listed, {layers} expected")


def check_oci_archive(path: Path, layers: int) -> None:
    """An OCI layout tar (index.json + blobs); also accepted: a docker archive."""
    with tarfile.open(path) as archive:
        names = set(archive.getnames())
    if "manifest.json" in names:
        check_docker_archive(path, layers)
    elif "index.json" not in names or "oci-layout" not in names:
        raise ValueError(f"{path.name}: neither manifest.json nor index.json + oci-layout")


def check_oci_layout(layout: Path, blobs: int) -> None:
    """An OCI layout directory (index.json + oci-layout) holding at least ``blobs`` blobs."""
    found = list((layout / "blobs" / "sha256").iterdir())
    if not (layout / "index.json").is_file() or not (layout / "oci-layout").is_file():
        raise ValueError(f"{layout.name}/: no index.json + oci-layout")
    if len(found) < blobs:
        raise ValueError(f"{layout.name}/: {len(found)} blobs, {blobs} expected")


class Contender:
    """Base: ``command(s)`` run in ``workdir``; ``check`` then looks at the result."""

    name: ClassVar[str]
    description: ClassVar[str]
    cwd: ClassVar[Path | None] = None
    uses_registry: ClassVar[bool] = True  # False: the same work whatever the registry mode

    def run(self, target: Target, workdir: Path, log: Path) -> Outcome:
        usage = run_sequence(
            self.commands(target, workdir),
            log=log,
            env=self.environment(workdir),
            cwd=self.working_directory(),
        )
        error = None
        if usage.ok:
            try:
                self.check(target, workdir)
            except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
                error = f"output check failed: {exc}"
        return Outcome(usage, rss_measured=True, error=error)

    def commands(self, target: Target, workdir: Path) -> list[list[str]]:
        raise NotImplementedError

    def environment(self, workdir: Path) -> dict[str, str]:
        """The environment the commands run in."""
        return _env(workdir)

    def working_directory(self) -> Path | None:
        """Where the commands run (None: the harness's directory)."""
        return self.cwd

    def check(self, target: Target, workdir: Path) -> None:
        check_docker_archive(workdir / "out.tar", len(target.image.layers))

    def reset(self) -> None:
        """Untimed cleanup after each run (beyond deleting the work directory)."""

    def command_line(self, target: Target, workdir: Path) -> str:
        return " && ".join(shlex.join(argv) for argv in self.commands(target, workdir))


class Dockerdrag(Contender):
    name = "dockerdrag"
    description = "`python -m dockerdrag pull` (docker archive), fresh --cache-dir"
    format: ClassVar[str | None] = None

    def __init__(self, extra_args: Sequence[str] = (), checkout: Path = REPO_ROOT) -> None:
        self.extra_args = list(extra_args)
        self.checkout = checkout  # the dockerdrag this runs: its directory leads sys.path

    def environment(self, workdir: Path) -> dict[str, str]:
        return {**_env(workdir), "PYTHONPATH": str(self.checkout)}

    def working_directory(self) -> Path:
        return self.checkout

    def launcher(self) -> list[str]:
        """How the command starts, up to its arguments."""
        return [sys.executable, "-m", "dockerdrag"]

    def output_format(self) -> str:
        """The format the run writes: a ``--format`` among the extra options (the last),
        else the contender's own (``docker`` by default)."""
        chosen = self.format or "docker"
        for option, value in itertools.pairwise([*self.extra_args, ""]):
            if option == "--format":
                chosen = value
            elif option.startswith("--format="):
                chosen = option.partition("=")[2]
        return chosen

    def output(self) -> str:
        """What ``-o`` names in the work directory: a layout directory for ``oci-dir``."""
        return "out" if self.output_format() == "oci-dir" else "out.tar"

    def commands(self, target: Target, workdir: Path) -> list[list[str]]:
        argv = [
            *self.launcher(),
            "pull",
            target.reference,
            "-o",
            str(workdir / self.output()),
            *dockerdrag_trust(target, workdir),
            "--cache-dir",
            str(workdir / "cache"),
            "--quiet",
        ]
        if self.format is not None:
            argv += ["--format", self.format]
        return [argv + self.extra_args]

    def check(self, target: Target, workdir: Path) -> None:
        output = workdir / self.output()
        output_format = self.output_format()
        if output_format == "oci-dir":
            check_oci_layout(output, len(target.image.blob_digests))
        elif output_format == "oci":
            check_oci_archive(output, len(target.image.layers))
        else:
            check_docker_archive(output, len(target.image.layers))


class DockerdragOci(Dockerdrag):
    name = "dockerdrag-oci"
    description = "`python -m dockerdrag pull --format oci`, fresh --cache-dir"
    format = "oci"


class DockerdragPortable(Dockerdrag):
    name = "dockerdrag-portable"
    description = (
        "`python -m dockerdrag pull` (docker archive) under the emulated macOS profile "
        "(`tests/support/platform_profiles.py macos`: no O_TMPFILE, no O_DIRECT), "
        "fresh --cache-dir"
    )

    def launcher(self) -> list[str]:
        return [sys.executable, str(self.checkout / "tests/support/platform_profiles.py"), "macos"]


class DockerdragBaseline(Dockerdrag):
    name = "dockerdrag-baseline"
    description = (
        "`python -m dockerdrag pull` (docker archive) of the checkout given with "
        "--baseline-checkout (see the notes), fresh --cache-dir"
    )

    def __init__(self, checkout: Path, extra_args: Sequence[str] = ()) -> None:
        super().__init__(extra_args, checkout)


class DockerdragOciDir(Dockerdrag):
    name = "dockerdrag-oci-dir"
    description = (
        "`python -m dockerdrag pull --format oci-dir` (a layout directory), fresh --cache-dir"
    )
    format = "oci-dir"


class Skopeo(Contender):
    name = "skopeo"
    description = "`skopeo copy docker://... docker-archive:OUT:name:tag`"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def commands(self, target: Target, workdir: Path) -> list[list[str]]:
        spec = target.image.spec
        return [
            [
                self.binary,
                "--insecure-policy",
                "copy",
                "--quiet",
                *self.trust(target),
                f"docker://{target.reference}",
                f"docker-archive:{workdir / 'out.tar'}:{spec.repo}:{spec.tag}",
            ]
        ]

    @staticmethod
    def trust(target: Target) -> list[str]:
        """Plain HTTP: no TLS; TLS: the CA's directory, and no credentials (anonymous)."""
        if target.access.cert_dir is None:
            return ["--src-tls-verify=false"]
        return [f"--src-cert-dir={target.access.cert_dir}", "--src-no-creds"]


class Docker(Contender):
    name = "docker"
    description = "`docker pull` + `docker save` (private dockerd; CPU = daemon tree + CLI)"

    def __init__(self, daemon: DockerDaemon) -> None:
        self.daemon = daemon

    def _cli(self, *args: str) -> list[str]:
        return [self.daemon.cli, "-H", self.daemon.host, *args]

    def commands(self, target: Target, workdir: Path) -> list[list[str]]:
        return [
            self._cli("pull", "--quiet", target.reference),
            self._cli("save", "-o", str(workdir / "out.tar"), target.reference),
        ]

    def run(self, target: Target, workdir: Path, log: Path) -> Outcome:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "DOCKER_CONFIG": str(self.daemon.directory / "cli-config"),
        }
        before = tree_cpu_seconds(self.daemon.process.pid)
        usage = run_sequence(self.commands(target, workdir), log=log, env=env)
        daemon_cpu = tree_cpu_seconds(self.daemon.process.pid) - before
        usage = dataclasses.replace(usage, cpu=usage.cpu + daemon_cpu)
        error = None
        if usage.ok:
            try:
                self.check(target, workdir)
            except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
                error = f"output check failed: {exc}"
        return Outcome(usage, rss_measured=False, error=error)

    def reset(self) -> None:
        self.daemon.remove_all_images()


class CurlFloor(Contender):
    name = "curl-floor"
    description = "every blob at once, one `curl -s -o` each, to disk"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def startup_commands(self, target: Target) -> list[list[str]]:
        """The same processes doing nothing (``curl --version``): what starting them costs."""
        lines = [
            f"{shlex.quote(self.binary)} --version >/dev/null &" for _ in target.image.blob_digests
        ]
        return [["sh", "-c", "\n".join([*lines, "wait"])]]

    def commands(self, target: Target, workdir: Path) -> list[list[str]]:
        lines = ["rc=0", f"mkdir -p {shlex.quote(str(workdir / 'blobs'))}"]
        trust = [] if target.access.ca_pem is None else ["--cacert", str(target.access.ca_pem)]
        bearer = ""
        if target.access.realm is not None:
            # One anonymous token first (the JWT holds no quote), then every blob with it.
            get_token = shlex.join([self.binary, "-sf", *trust, target.token_url()])
            lines.append(f"""token=$({get_token} | sed -E 's/.*"token": *"([^"]+)".*/\\1/')""")
            bearer = ' -H "Authorization: Bearer $token"'
        for number, digest in enumerate(target.image.blob_digests):
            out = workdir / "blobs" / digest.removeprefix("sha256:")
            curl = [self.binary, "-sf", *trust, "-o", str(out), target.blob_url(digest)]
            lines.append(f"{shlex.join(curl)}{bearer} & p{number}=$!")
        lines += [f"wait $p{n} || rc=1" for n in range(len(target.image.blob_digests))]
        lines.append("exit $rc")
        return [["sh", "-c", "\n".join(lines)]]

    def command_line(self, target: Target, workdir: Path) -> str:
        line = f"{self.binary} -sf -o BLOB URL & (one per blob, all at once); wait"
        if target.access.realm is not None:
            line = f"token=$({self.binary} --cacert CA REALM?scope=...); {line}"
            line = line.replace("-sf -o", '-sf --cacert CA -H "Authorization: Bearer $token" -o')
        return line

    def check(self, target: Target, workdir: Path) -> None:
        for digest in target.image.blob_digests:
            got = (workdir / "blobs" / digest.removeprefix("sha256:")).stat().st_size
            want = target.image.blob_path(digest).stat().st_size
            if got != want:
                raise ValueError(f"{digest[:19]}: {got} bytes, {want} expected")


class DecompressFloor(Contender):
    name = "decompress-floor"
    description = "every layer inflated at once (ISA-L, one process each), output discarded"
    cwd = REPO_ROOT
    uses_registry = False

    def commands(self, target: Target, workdir: Path) -> list[list[str]]:
        lines = ["rc=0"]
        for number, layer in enumerate(target.image.layers):
            argv = [sys.executable, "-m", "benchmarks.floors", "decompress"]
            argv.append(str(target.image.blob_path(layer.digest)))
            lines.append(f"{shlex.join(argv)} & p{number}=$!")
        lines += [f"wait $p{n} || rc=1" for n in range(len(target.image.layers))]
        lines.append("exit $rc")
        return [["sh", "-c", "\n".join(lines)]]

    def command_line(self, target: Target, workdir: Path) -> str:
        return "python -m benchmarks.floors decompress LAYER & (one per layer, all at once); wait"

    def check(self, target: Target, workdir: Path) -> None:
        pass  # the output is discarded; a failed inflate fails the exit status


class PythonFloor(Contender):
    name = "python-floor"
    description = "aiohttp GETs of every layer (8 at a time) hashed with sha256, nothing written"
    cwd = REPO_ROOT

    def commands(self, target: Target, workdir: Path) -> list[list[str]]:
        spec = target.image.spec
        argv = [sys.executable, "-m", "benchmarks.python_floor", target.host, spec.repo, spec.tag]
        if target.access.ca_pem is not None:
            argv += ["--ca-cert", str(target.access.ca_pem)]
        return [argv]

    def command_line(self, target: Target, workdir: Path) -> str:
        return "python -m benchmarks.python_floor HOST REPO TAG [--ca-cert CA]"

    def check(self, target: Target, workdir: Path) -> None:
        pass  # nothing is written; a digest mismatch fails the exit status


class PythonDockerFloor(PythonFloor):
    name = "python-floor-docker"
    description = (
        "the Python floor, each layer also inflated (ISA-L) and its diff_id hashed, "
        "two threads, nothing written"
    )

    def commands(self, target: Target, workdir: Path) -> list[list[str]]:
        return [[*command, "--decompress"] for command in super().commands(target, workdir)]

    def command_line(self, target: Target, workdir: Path) -> str:
        return "python -m benchmarks.python_floor HOST REPO TAG [--ca-cert CA] --decompress"


class PythonDockerWriteFloor(PythonDockerFloor):
    name = "python-floor-docker-write"
    description = (
        "the Python docker floor, each inflated layer also written into a file of its own "
        "(no fsync), aiohttp imported without the system CAs (as dockerdrag does)"
    )

    def commands(self, target: Target, workdir: Path) -> list[list[str]]:
        extra = ["--write", str(workdir / "layers"), "--lean-import"]
        return [[*command, *extra] for command in super().commands(target, workdir)]

    def command_line(self, target: Target, workdir: Path) -> str:
        return (
            "python -m benchmarks.python_floor HOST REPO TAG [--ca-cert CA] --decompress "
            "--write WORK/layers --lean-import"
        )

    def check(self, target: Target, workdir: Path) -> None:
        """Every layer written whole: one file each, its uncompressed size."""
        for layer in target.image.layers:
            path = workdir / "layers" / f"{layer.digest.removeprefix('sha256:')}.tar"
            if path.stat().st_size != layer.uncompressed_size:
                raise ValueError(
                    f"{path.name}: {path.stat().st_size} bytes written, "
                    f"expected {layer.uncompressed_size}"
                )


class NativeDockerFloor(Contender):
    name = "native-docker-floor"
    description = (
        "every layer at once, one process each: GET, sha256, ISA-L inflate, sha256 of the "
        "result, O_DIRECT write to a file per layer; every byte handled once by native code"
    )
    cwd = REPO_ROOT

    def __init__(self, curl: str) -> None:
        self.curl = curl  # fetches the token of a token registry

    def commands(self, target: Target, workdir: Path) -> list[list[str]]:
        lines = ["rc=0", f"mkdir -p {shlex.quote(str(workdir / 'layers'))}"]
        options: list[str] = []
        curl_trust: list[str] = []
        if target.access.ca_pem is not None:
            options += ["--ca-cert", str(target.access.ca_pem)]
            curl_trust += ["--cacert", str(target.access.ca_pem)]
        token = ""
        if target.access.realm is not None:
            # One anonymous token first (the JWT holds no quote), as the curl floor does.
            get_token = shlex.join([self.curl, "-sf", *curl_trust, target.token_url()])
            lines.append(f"""token=$({get_token} | sed -E 's/.*"token": *"([^"]+)".*/\\1/')""")
            token = ' --token "$token"'
        for number, layer in enumerate(target.image.layers):
            out = workdir / "layers" / f"{number}.tar"
            argv = [sys.executable, "-m", "benchmarks.floors", "docker-layer"]
            argv += [target.blob_url(layer.digest), str(out), layer.digest, layer.diff_id]
            lines.append(f"{shlex.join([*argv, *options])}{token} & p{number}=$!")
        lines += [f"wait $p{n} || rc=1" for n in range(len(target.image.layers))]
        lines.append("exit $rc")
        return [["sh", "-c", "\n".join(lines)]]

    def command_line(self, target: Target, workdir: Path) -> str:
        return (
            "python -m benchmarks.floors docker-layer URL OUT DIGEST DIFF_ID "
            "& (one per layer, all at once); wait"
        )

    def check(self, target: Target, workdir: Path) -> None:
        for number, layer in enumerate(target.image.layers):
            got = (workdir / "layers" / f"{number}.tar").stat().st_size
            if got != layer.uncompressed_size:
                raise ValueError(f"layer {number}: {got} bytes, {layer.uncompressed_size} expected")


def dockerdrag_trust(target: Target, workdir: Path) -> list[str]:
    """How dockerdrag reaches the registry: ``--insecure`` for plain HTTP, else the CA
    with ``--ca-cert`` (a token registry's challenge is answered as for any user)."""
    if target.access.ca_pem is None:
        return ["--insecure", target.host]
    return ["--ca-cert", str(target.access.ca_pem)]


def dockerdrag_formats() -> list[str]:
    """The ``--format`` choices of the installed CLI ([] when it has no such option)."""
    result = subprocess.run(
        [sys.executable, "-m", "dockerdrag", "pull", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    if "--format" not in result.stdout:
        return []
    # argparse prints choices as {docker,oci}
    start = result.stdout.find("--format")
    brace = result.stdout.find("{", start)
    if brace == -1 or brace - start > 20:
        return ["docker", "oci"]  # an option without listed choices: assume both
    return result.stdout[brace + 1 : result.stdout.find("}", brace)].split(",")


def find_binary(name: str) -> str | None:
    return shutil.which(name)
