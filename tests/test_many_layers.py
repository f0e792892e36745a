"""An image of 1,000 layers pulls under a 256 open-file limit, in every format.

Files are opened when a layer starts transferring (a bounded number at once), not
when it is queued, and no writer holds a descriptor per layer. A slow test (about
15 s, most of it pushing 1,000 blobs): the limit is only crossed with hundreds of layers.
"""

from __future__ import annotations

import resource
import subprocess
import tarfile
from pathlib import Path

from tests.support.command import cli_command, cli_env
from tests.support.many_layers import push_many_layer_image
from tests.support.registry_server import RegistryServer

LAYERS = 1000
OPEN_FILES = 256


def _limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


def _pull(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = cli_env(cwd, XDG_CACHE_HOME=str(cwd / "cache"))
    return subprocess.run(
        cli_command(*args, "-q"),
        cwd=cwd,
        env=env,
        preexec_fn=_limit_open_files,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_many_layers_under_a_low_open_file_limit(registry: RegistryServer, tmp_path: Path) -> None:
    pushed = push_many_layer_image(registry, "test/many-layers", LAYERS)
    base = [pushed.reference, "--insecure", registry.host]
    # The first pull downloads every layer; the others find them in the cache.
    for output, output_format in (("d.tar", "docker"), ("o.tar", "oci"), ("dir", "oci-dir")):
        completed = _pull([*base, "-o", output, "--format", output_format], tmp_path)
        assert completed.returncode == 0, completed.stderr[-2000:]
        assert completed.stdout.strip() == output
    with tarfile.open(tmp_path / "d.tar") as archive:
        layer_tars = [name for name in archive.getnames() if name.endswith("/layer.tar")]
    assert len(layer_tars) == LAYERS
    blobs = list((tmp_path / "dir" / "blobs" / "sha256").iterdir())
    assert len(blobs) == LAYERS + 2  # the layers, the config and the manifest
    with tarfile.open(tmp_path / "o.tar") as archive:
        assert len([n for n in archive.getnames() if n.startswith("blobs/sha256/")]) == LAYERS + 2
