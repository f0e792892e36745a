"""The command line as a user sees it: the live display in a terminal, plain lines and
JSON events in a pipe, inspect, environment defaults, logging, exit codes.

Terminal runs happen in a real pseudo-terminal (pexpect) and what was drawn is replayed
through a terminal emulator (pyte), frame by frame, so the assertions are about the
screen a person would see. Layers travel through a throttling proxy so that several are
on screen downloading at once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pyte
import pytest

import dockerdrag
from dockerdrag import errors
from dockerdrag.human_units import format_bytes
from tests.support.archive_check import read_docker_archive
from tests.support.command import cli_command, cli_env, run_cli
from tests.support.fault_proxy import FaultProxy, flip_byte, throttle
from tests.support.images import PushedImage, layer, push_image, text_layer
from tests.support.registry_server import RegistryServer

SeededRegistry = tuple[RegistryServer, dict[str, Any]]
ROWS, COLS = 40, 120
ROOT = Path(__file__).resolve().parent.parent
LAYER_LINE = re.compile(
    r"^([0-9a-f]{12}): (Waiting|Downloading|Verifying|Pull complete|Already exists)\b"
)
SUMMARY = re.compile(r"Downloaded (\d+(?:\.\d)? k?M?G?B) in \d+\.\d s(?: \((.*)\))?$", re.MULTILINE)


# --------------------------------------------------------------------------- helpers


def spawn_in_terminal(*args: str, cwd: Path, env: dict[str, str] | None = None) -> pexpect.spawn:  # type: ignore[type-arg]
    """The command in a pseudo-terminal of ROWS x COLS (no echo of what is typed)."""
    return pexpect.spawn(
        sys.executable,
        ["-m", "dockerdrag", *args],
        cwd=str(cwd),
        env=env if env is not None else cli_env(cwd),
        dimensions=(ROWS, COLS),
        encoding="utf-8",
        codec_errors="replace",
        echo=False,
        timeout=120,
        preexec_fn=default_sigint,
    )


def default_sigint() -> None:
    """Children of a shell's background job inherit an ignored SIGINT: a user's Ctrl-C
    reaches a foreground process, so give the child the default handling back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_in_terminal(
    *args: str, cwd: Path, env: dict[str, str] | None = None, typed: str | None = None
) -> tuple[int, str]:
    child = spawn_in_terminal(*args, cwd=cwd, env=env)
    if typed is not None:
        child.sendline(typed)
    child.expect(pexpect.EOF)
    output: str = child.before
    child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return child.exitstatus, output


def screens(output: str) -> Iterator[list[str]]:
    """The screen after each redraw of the live display (lines, trailing blanks cut)."""
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.Stream(screen)
    for number, piece in enumerate(output.split("\r\x1b[2K")):
        stream.feed(("\r\x1b[2K" if number else "") + piece)
        yield [line.rstrip() for line in screen.display]


def final_screen(output: str) -> list[str]:
    *_, last = screens(output)
    return [line for line in last if line]


def layer_sizes(pushed: PushedImage) -> dict[str, int]:
    """Short digest -> blob size, from the manifest as pushed."""
    manifest = json.loads(pushed.manifest)
    return {entry["digest"][7:19]: entry["size"] for entry in manifest["layers"]}


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------- fixtures

_progress_images: dict[str, PushedImage] = {}


@pytest.fixture
def progress_image(registry: RegistryServer) -> PushedImage:
    """Four incompressible layers of 150-600 kB (pushed once per registry)."""
    if registry.url not in _progress_images:
        layers = [layer({f"data{i}": os.urandom(150_000 * (i + 1))}) for i in range(4)]
        _progress_images[registry.url] = push_image(
            registry, "test/progress", "latest", layers, cmd=["/bin/sh"]
        )
    return _progress_images[registry.url]


@pytest.fixture
def slow_proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    """The plain registry behind a proxy that sends each blob at ~500 kB/s."""
    with FaultProxy(registry.url) as proxy:
        proxy.add(throttle(500_000), path="/blobs/", times=None)
        yield proxy


def through(proxy: FaultProxy, pushed: PushedImage) -> str:
    return f"{proxy.host}/{pushed.repo}:{pushed.tag}"


# --------------------------------------------------------------------------- terminal


def test_terminal_display_is_drawn_in_place_until_every_layer_is_complete(
    progress_image: PushedImage, slow_proxy: FaultProxy, tmp_path: Path
) -> None:
    code, output = run_in_terminal(
        through(slow_proxy, progress_image),
        "--insecure",
        slow_proxy.host,
        "-o",
        "p.tar",
        cwd=tmp_path,
    )
    assert code == 0, output
    sizes = layer_sizes(progress_image)
    most_downloading = 0
    for screen in screens(output):
        layer_lines = [line for line in screen if LAYER_LINE.match(line)]
        shown = [LAYER_LINE.match(line)[1] for line in layer_lines]  # type: ignore[index]
        assert len(shown) == len(set(shown)), "a layer drawn twice:\n" + "\n".join(screen)
        assert set(shown) <= set(sizes)
        assert sum(line.startswith("Total:") for line in screen) <= 1, "\n".join(screen)
        downloading = [line for line in layer_lines if ": Downloading" in line]
        for line in downloading:
            assert re.search(r"━.* \d+(\.\d+)?/\d+(\.\d+)? (kB|MB|bytes)", line), line
        most_downloading = max(most_downloading, len(downloading))
    assert most_downloading >= 2, "never saw two layers downloading at once"

    final = final_screen(output)
    for short in sizes:
        assert f"{short}: Pull complete" in final, "\n".join(final)
    (total_line,) = [line for line in final if line.startswith("Total:")]
    amounts = re.search(r"(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?) (kB|MB)", total_line)
    assert amounts and amounts[1] == amounts[2], total_line
    summary = SUMMARY.search("\n".join(final))
    assert summary, final
    assert summary[1] == format_bytes(sum(sizes.values())) and summary[2] is None, summary[0]
    assert final[-1] == "p.tar"
    (image,) = read_docker_archive(tmp_path / "p.tar")
    assert image.config == progress_image.config


def test_terminal_second_pull_shows_already_exists(
    progress_image: PushedImage, registry: RegistryServer, tmp_path: Path
) -> None:
    args = (progress_image.reference, "--insecure", registry.host, "-o", "p.tar")
    assert run_in_terminal(*args, cwd=tmp_path)[0] == 0
    code, output = run_in_terminal(*args, cwd=tmp_path)
    assert code == 0, output
    final = final_screen(output)
    for short in layer_sizes(progress_image):
        assert f"{short}: Already exists" in final
    summary = SUMMARY.search("\n".join(final))
    assert summary and summary.groups() == ("0 B", "4 layers cached"), final


def test_terminal_ctrl_c_exits_130_and_writes_nothing(
    progress_image: PushedImage, registry: RegistryServer, tmp_path: Path
) -> None:
    with FaultProxy(registry.url) as proxy:
        proxy.add(throttle(50_000), path="/blobs/", times=None)
        child = spawn_in_terminal(
            through(proxy, progress_image), "--insecure", proxy.host, "-o", "p.tar", cwd=tmp_path
        )
        child.expect("Downloading")
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 130, child.before
    assert "interrupted" in child.before and "Traceback" not in child.before
    assert not (tmp_path / "p.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tar")] == []


def test_terminal_credentials_are_never_shown(
    basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry
    assert server.username and server.password and server.ca_pem_path
    pushed = push_image(server, "test/secret", "latest", [text_layer("s.txt", "s\n")])
    code, output = run_in_terminal(
        pushed.reference,
        "--ca-cert",
        str(server.ca_pem_path),
        "--username",
        server.username,
        "--password-stdin",
        "--debug",
        "-o",
        "s.tar",
        cwd=tmp_path,
        typed=server.password,
    )
    assert code == 0, output
    assert server.password not in output
    assert "Pull complete" in output
    assert (tmp_path / "s.tar").exists()


# --------------------------------------------------------------------------- pipes


def test_plain_lines_when_not_a_terminal(progress_image: PushedImage, tmp_path: Path) -> None:
    host = progress_image.host
    completed = run_cli(progress_image.reference, "--insecure", host, "-o", "p.tar", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "p.tar\n"
    assert "\x1b" not in completed.stderr
    sizes = layer_sizes(progress_image)
    for short, size in sizes.items():
        assert f"{short}: Pull complete ({format_bytes(size)})" in completed.stderr.splitlines()
    summary = SUMMARY.search(completed.stderr)
    assert summary and summary[1] == format_bytes(sum(sizes.values())), completed.stderr


def test_json_events_in_a_pipe(
    progress_image: PushedImage, slow_proxy: FaultProxy, tmp_path: Path
) -> None:
    completed = run_cli(
        through(slow_proxy, progress_image),
        "--insecure",
        slow_proxy.host,
        "-o",
        "p.tar",
        "--json",
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    events = json_lines(completed.stdout)
    assert events[0]["event"] == "start"
    assert events[-1]["event"] == "done"
    assert events[-2] == {"event": "writing", "output": "p.tar"}
    manifest = json.loads(progress_image.manifest)
    digests = [entry["digest"] for entry in manifest["layers"]]
    assert [entry["digest"] for entry in events[0]["layers"]] == digests
    layer_events = [e for e in events if e["event"] == "layer"]
    for digest in digests:
        statuses = [e["status"] for e in layer_events if e["digest"] == digest]
        assert statuses[0] == "waiting" and statuses[-1] == "complete", statuses
        assert "verifying" in statuses
    done = events[-1]
    elapsed = done["elapsed"]
    for digest in digests:
        updates = [
            e for e in layer_events if e["digest"] == digest and e["status"] == "downloading"
        ]
        assert len(updates) <= 5 * elapsed + 2, (len(updates), elapsed)
    assert done["output"] == "p.tar"
    assert done["downloaded_bytes"] == sum(entry["size"] for entry in manifest["layers"])
    (result,) = done["results"]
    assert result["manifest_digest"] == progress_image.manifest_digest
    assert [entry["digest"] for entry in result["layers"]] == digests
    assert "\x1b" not in completed.stderr


def test_json_error_event_and_exit_code(registry: RegistryServer, tmp_path: Path) -> None:
    completed = run_cli(
        f"{registry.host}/test/busybox:nope", "--insecure", registry.host, "--json", cwd=tmp_path
    )
    assert completed.returncode == 4
    (error,) = json_lines(completed.stdout)
    assert error["event"] == "error"
    assert error["type"] == "ManifestUnknownError"
    assert error["exit_code"] == 4
    assert "nope" in error["message"]
    assert completed.stderr.startswith("dockerdrag: error: ")


def test_json_platform_required_lists_the_choices(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    completed = run_cli(
        images["multiarch"].reference, "--insecure", server.host, "--json", cwd=tmp_path
    )
    assert completed.returncode == 4
    (error,) = json_lines(completed.stdout)
    assert error["type"] == "PlatformRequiredError"
    assert [e["platform"] for e in error["available"]] == [
        "linux/amd64",
        "linux/arm64/v8",
        "linux/arm/v7",
    ]


def test_json_usage_error(tmp_path: Path) -> None:
    completed = run_cli("--json", "busybox", "--no-such-option", cwd=tmp_path)
    assert completed.returncode == 2
    (error,) = json_lines(completed.stdout)
    assert error == {
        "event": "error",
        "type": "UsageError",
        "message": "unrecognized arguments: --no-such-option",
        "exit_code": 2,
    }
    assert "usage:" in completed.stderr


def test_json_ctrl_c_is_an_error_event_with_130(
    progress_image: PushedImage, registry: RegistryServer, tmp_path: Path
) -> None:
    with FaultProxy(registry.url) as proxy:
        proxy.add(throttle(50_000), path="/blobs/", times=None)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dockerdrag",
                through(proxy, progress_image),
                "--insecure",
                proxy.host,
                "-o",
                "p.tar",
                "--json",
            ],
            cwd=tmp_path,
            env=cli_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_sigint,
        )
        assert process.stdout is not None
        for line in process.stdout:
            if json.loads(line).get("status") == "downloading":
                break
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    error = json_lines(rest)[-1]
    assert error["event"] == "error" and error["type"] == "Interrupted"
    assert error["exit_code"] == 130
    assert not (tmp_path / "p.tar").exists()


def test_quiet_prints_only_the_path(progress_image: PushedImage, tmp_path: Path) -> None:
    completed = run_cli(
        progress_image.reference,
        "--insecure",
        progress_image.host,
        "-o",
        "q.tar",
        "-q",
        cwd=tmp_path,
    )
    assert completed.returncode == 0
    assert (completed.stdout, completed.stderr) == ("q.tar\n", "")


def test_debug_logs_requests_without_secrets(
    basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry
    assert server.username and server.password
    pushed = push_image(server, "test/secret", "latest", [text_layer("s.txt", "s\n")])
    completed = run_cli(
        pushed.reference,
        "--ca-cert",
        str(server.ca_pem_path),
        "-u",
        server.username,
        "--password-stdin",
        "--debug",
        "-o",
        "s.tar",
        cwd=tmp_path,
        stdin=server.password + "\n",
    )
    assert completed.returncode == 0, completed.stderr
    assert re.search(
        r"^dockerdrag: debug: GET https://\S+/v2/test/secret/manifests/latest$",
        completed.stderr,
        re.MULTILINE,
    ), completed.stderr
    assert server.password not in completed.stderr + completed.stdout
    quiet = run_cli(
        pushed.reference,
        "--ca-cert",
        str(server.ca_pem_path),
        "-u",
        server.username,
        "--password-stdin",
        "-o",
        "t.tar",
        cwd=tmp_path,
        stdin=server.password + "\n",
    )
    assert "debug:" not in quiet.stderr


# --------------------------------------------------------------------------- inspect


def test_inspect_single_image(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    pushed: PushedImage = images["multilayer"]
    completed = run_cli("inspect", pushed.reference, "--insecure", server.host, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    text = completed.stdout
    assert f"Digest:      {pushed.manifest_digest}" in text
    assert f"Image ID:    {pushed.image_id}" in text
    assert 'Cmd:         ["/bin/sh"]' in text
    assert "org.example.test=multilayer" in text
    assert "Platform:    linux/amd64" in text
    for digest in pushed.layer_digests:
        assert digest in text
    assert list(tmp_path.glob("*.tar")) == []


def test_inspect_json(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    pushed: PushedImage = images["multilayer"]
    completed = run_cli(
        "inspect", pushed.reference, "--insecure", server.host, "--json", cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout)
    assert found["digest"] == pushed.manifest_digest
    assert found["media_type"] == pushed.manifest_media_type
    assert found["platforms"] == []
    assert found["config"]["digest"] == pushed.image_id
    assert found["config"]["cmd"] == ["/bin/sh"]
    assert found["config"]["labels"] == {"org.example.test": "multilayer"}
    assert [layer["digest"] for layer in found["layers"]] == pushed.layer_digests
    assert [layer["diff_id"] for layer in found["layers"]] == pushed.diff_ids
    assert found["size"] == sum(layer["size"] for layer in found["layers"])


def test_inspect_raw_manifest_and_config(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    pushed: PushedImage = images["busybox"]
    base = ["inspect", pushed.reference, "--insecure", server.host, "--raw"]
    manifest = subprocess.run(
        cli_command(*base),
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        check=True,
    )
    assert manifest.stdout == pushed.manifest
    config = subprocess.run(
        cli_command(*base, "--config"),
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        check=True,
    )
    assert config.stdout == pushed.config


def test_inspect_multiarch(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    listing = run_cli("inspect", index.reference, "--insecure", server.host, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "--platform linux/arm64/v8" in listing.stdout
    assert "Layers:" not in listing.stdout
    arm = index.image("linux", "arm64", "v8")
    chosen = run_cli(
        "inspect",
        index.reference,
        "--insecure",
        server.host,
        "--platform",
        "linux/arm64",
        "--json",
        cwd=tmp_path,
    )
    assert chosen.returncode == 0, chosen.stderr
    found = json.loads(chosen.stdout)
    assert found["manifest"]["digest"] == arm.manifest_digest
    assert found["config"]["platform"].startswith("linux/arm64")
    raw = subprocess.run(
        cli_command("inspect", index.reference, "--insecure", server.host, "--raw"),
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        check=True,
    )
    assert json.loads(raw.stdout)["manifests"]
    no_choice = run_cli(
        "inspect", index.reference, "--insecure", server.host, "--raw", "--config", cwd=tmp_path
    )
    assert no_choice.returncode == 4
    assert "--platform linux/amd64" in no_choice.stderr


def test_inspect_unknown_image_json_error(registry: RegistryServer, tmp_path: Path) -> None:
    completed = run_cli(
        "--json",
        "inspect",
        f"{registry.host}/test/none:x",
        "--insecure",
        registry.host,
        cwd=tmp_path,
    )
    assert completed.returncode == 4
    assert json_lines(completed.stdout)[-1]["type"] == "ManifestUnknownError"


# --------------------------------------------------------------------------- environment


def test_environment_defaults(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    env = cli_env(
        tmp_path,
        DOCKERDRAG_INSECURE_REGISTRIES=f"other.example:5000,{server.host}",
        DOCKERDRAG_CACHE_DIR=str(tmp_path / "env-cache"),
        DOCKERDRAG_CONCURRENCY="2",
        DOCKERDRAG_PLATFORM="linux/arm/v7",
    )
    completed = run_cli(index.reference, "-o", "e.tar", cwd=tmp_path, env=env)
    assert completed.returncode == 0, completed.stderr
    (image,) = read_docker_archive(tmp_path / "e.tar")
    assert image.config == index.image("linux", "arm", "v7").config
    assert list((tmp_path / "env-cache").rglob("*"))
    assert not (tmp_path / ".xdg-cache").exists()
    overridden = run_cli(
        index.reference, "-o", "o.tar", "--platform", "linux/amd64", cwd=tmp_path, env=env
    )
    assert overridden.returncode == 0, overridden.stderr
    (image,) = read_docker_archive(tmp_path / "o.tar")
    assert image.config == index.image("linux", "amd64").config


def test_environment_registry_mirrors(registry: RegistryServer, tmp_path: Path) -> None:
    pushed = push_image(registry, "library/hello-world", "latest", [text_layer("hi", "hi\n")])
    env = cli_env(tmp_path, DOCKERDRAG_REGISTRY_MIRRORS=f"http://{registry.host}")
    completed = run_cli("hello-world", cwd=tmp_path, env=env)
    assert completed.returncode == 0, completed.stderr
    (image,) = read_docker_archive(tmp_path / "library_hello-world.tar")
    assert image.config == pushed.config


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DOCKERDRAG_CONCURRENCY", "many"),
        ("DOCKERDRAG_CONCURRENCY", "0"),
        ("DOCKERDRAG_PLATFORM", "linux//arm"),
        ("DOCKERDRAG_REGISTRY_MIRRORS", "ftp://mirror"),
        ("DOCKERDRAG_INSECURE_REGISTRIES", "a,,b"),
    ],
)
def test_bad_environment_is_a_usage_error(tmp_path: Path, name: str, value: str) -> None:
    completed = run_cli("busybox", cwd=tmp_path, env=cli_env(tmp_path, **{name: value}))
    assert completed.returncode == 2
    assert completed.stderr.startswith(f"dockerdrag: error: environment variable {name}=")
    assert len(completed.stderr.splitlines()) == 1


# --------------------------------------------------------------------------- usage


def test_help_is_grouped_with_examples_and_environment(tmp_path: Path) -> None:
    top = run_cli("--help", cwd=tmp_path)
    assert top.returncode == 0
    for text in ("pull", "inspect", "platforms", "examples:", "DOCKERDRAG_CACHE_DIR", "exit codes"):
        assert text in top.stdout
    pull = run_cli("pull", "--help", cwd=tmp_path).stdout
    for group in (
        "what to pull:",
        "archive:",
        "download:",
        "registry connection:",
        "progress display:",
        "logging (on stderr):",
    ):
        assert group in pull
    for option in (
        "--json",
        "--quiet",
        "--progress",
        "--verbose",
        "--debug",
        "--username",
        "--password-stdin",
        "DOCKERDRAG_CONCURRENCY",
    ):
        assert option in pull
    inspect = run_cli("inspect", "--help", cwd=tmp_path).stdout
    for option in ("--raw", "--config", "--platform", "--json"):
        assert option in inspect
    version = run_cli("--version", cwd=tmp_path)
    assert version.stdout == f"dockerdrag {dockerdrag.__version__}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-such-option", "busybox"], "unrecognized arguments"),
        (["inspect"], "the following arguments are required: IMAGE"),
        (["pull"], "give an IMAGE to pull, or a list of them with -f LIST"),
        (["busybox", "--concurrency", "zero"], "not a whole number"),
        (["busybox", "--json", "--quiet"], "not allowed with argument"),
        (["inspect", "busybox", "--config"], "--config goes with --raw"),
    ],
)
def test_bad_usage_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    completed = run_cli(*args, cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_flags_before_the_command(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    completed = run_cli(
        "--json",
        "-v",
        "inspect",
        images["busybox"].reference,
        "--insecure",
        server.host,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["digest"] == images["busybox"].manifest_digest


# --------------------------------------------------------------------------- exit codes

EXPECTED_EXIT_CODES = {0, 1, 2, 3, 4, 5, 6, 7, 130}


def test_readme_table_matches_the_error_classes() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    codes = {int(m[1]) for m in re.finditer(r"^\| (\d+) \|", section, re.MULTILINE)}
    assert codes == EXPECTED_EXIT_CODES
    classes = [c for c in vars(errors).values() if isinstance(c, type)]
    used = {c.exit_code for c in classes if issubclass(c, errors.DockerDragError)}
    assert used <= codes and used | {0, 130} == codes


def test_exit_3_authentication(basic_auth_registry: RegistryServer, tmp_path: Path) -> None:
    server = basic_auth_registry
    completed = run_cli(
        f"{server.host}/test/x",
        "--ca-cert",
        str(server.ca_pem_path),
        "-u",
        "nobody",
        "--password-stdin",
        cwd=tmp_path,
        stdin="wrong-password\n",
    )
    assert completed.returncode == 3, completed.stderr
    assert completed.stderr.startswith("dockerdrag: error: ")
    assert "wrong-password" not in completed.stderr


def test_exit_5_network(tmp_path: Path) -> None:
    completed = run_cli("127.0.0.1:1/test/x", "--json", cwd=tmp_path)
    assert completed.returncode == 5, completed.stderr
    assert json_lines(completed.stdout)[-1]["exit_code"] == 5


def test_exit_6_integrity(
    progress_image: PushedImage, registry: RegistryServer, tmp_path: Path
) -> None:
    with FaultProxy(registry.url) as proxy:
        proxy.add(flip_byte(100), path="/blobs/", times=None)
        completed = run_cli(
            through(proxy, progress_image), "--insecure", proxy.host, "-o", "x.tar", cwd=tmp_path
        )
    assert completed.returncode == 6, completed.stderr
    assert completed.stderr.startswith("dockerdrag: error: ")
    assert not (tmp_path / "x.tar").exists()


def test_exit_7_output(progress_image: PushedImage, tmp_path: Path) -> None:
    completed = run_cli(
        progress_image.reference,
        "--insecure",
        progress_image.host,
        "-o",
        "no/such/dir/x.tar",
        "--json",
        cwd=tmp_path,
    )
    assert completed.returncode == 7
    assert json_lines(completed.stdout)[-1]["type"] == "OutputError"


_BROKEN_PULL = """\
import sys
import dockerdrag.pull

async def broken(*args, **kwargs):
    raise RuntimeError("something unforeseen")

dockerdrag.pull.Puller.pull = broken
from dockerdrag.cli import main
sys.exit(main())
"""


def test_exit_1_internal_error_is_one_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _BROKEN_PULL, "busybox", *args],
            cwd=tmp_path,
            env=cli_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )

    plain = run()
    assert plain.returncode == 1
    assert plain.stderr.splitlines() == [
        "dockerdrag: error: internal error: RuntimeError: something unforeseen "
        "(run with --debug for the traceback)"
    ]
    debug = run("--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    as_json = run("--json")
    assert json_lines(as_json.stdout)[-1] == {
        "event": "error",
        "type": "RuntimeError",
        "message": "something unforeseen",
        "exit_code": 1,
    }


# --------------------------------------------------------------------------- the API behind it


def _client(registry: RegistryServer, tmp_path: Path, *more_hosts: str) -> dockerdrag.Puller:
    return dockerdrag.Puller(
        insecure=[registry.host, *more_hosts], cache_dir=tmp_path / "cache", use_docker_config=False
    )


@pytest.mark.anyio
async def test_pull_events_iterates_to_the_result(
    progress_image: PushedImage, registry: RegistryServer, tmp_path: Path
) -> None:
    seen: list[dockerdrag.PullEvent] = []
    async with (
        _client(registry, tmp_path) as puller,
        puller.pull_events(progress_image.reference, output=tmp_path / "e.tar") as events,
    ):
        async for event in events:
            seen.append(event)
    assert isinstance(seen[0], dockerdrag.PullStarted)
    assert isinstance(seen[-2], dockerdrag.ArchiveWriting)
    finished = seen[-1]
    assert isinstance(finished, dockerdrag.PullFinished)
    assert finished.result.output == tmp_path / "e.tar"
    assert str(finished.result.manifest_digest) == progress_image.manifest_digest
    complete = {
        str(e.digest)
        for e in seen
        if isinstance(e, dockerdrag.LayerProgress) and e.phase is dockerdrag.LayerPhase.COMPLETE
    }
    assert complete == set(progress_image.layer_digests)


@pytest.mark.anyio
async def test_pull_events_raise_the_error_at_the_end(
    registry: RegistryServer, tmp_path: Path
) -> None:
    async with _client(registry, tmp_path) as puller:
        with pytest.raises(dockerdrag.ManifestUnknownError):
            async with puller.pull_events(
                f"{registry.host}/test/none:x", output=tmp_path / "x.tar"
            ) as events:
                async for _ in events:
                    pass
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.anyio
async def test_leaving_pull_events_early_cancels_the_pull(
    progress_image: PushedImage, registry: RegistryServer, tmp_path: Path
) -> None:
    with FaultProxy(registry.url) as proxy:
        proxy.add(throttle(50_000), path="/blobs/", times=None)
        async with (
            _client(registry, tmp_path, proxy.host) as puller,
            puller.pull_events(through(proxy, progress_image), output=tmp_path / "c.tar") as events,
        ):
            async for event in events:
                if isinstance(event, dockerdrag.LayerProgress):
                    break
    assert not (tmp_path / "c.tar").exists()


@pytest.mark.anyio
async def test_concurrent_pulls_get_their_own_progress(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    import anyio

    server, images = seeded_registry
    names = ("busybox", "multilayer")
    seen: dict[str, list[dockerdrag.ProgressEvent]] = {name: [] for name in names}
    async with _client(server, tmp_path) as puller:

        async def pull(name: str) -> None:
            await puller.pull(
                images[name].reference, output=tmp_path / f"{name}.tar", progress=seen[name].append
            )

        async with anyio.create_task_group() as group:
            for name in names:
                group.start_soon(pull, name)
    for name in names:
        layer_digests = {
            str(e.digest) for e in seen[name] if isinstance(e, dockerdrag.LayerProgress)
        }
        assert layer_digests == set(images[name].layer_digests)


@pytest.mark.anyio
async def test_inspect_api(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    async with _client(server, tmp_path) as puller:
        listing = await puller.inspect(index.reference)
        chosen = await puller.inspect(index.reference, platform="linux/arm/v7")
    assert isinstance(listing, dockerdrag.ImageInspection)
    assert listing.manifest is None and listing.config is None and listing.layers == ()
    assert [str(e.platform) for e in listing.platforms] == [
        "linux/amd64",
        "linux/arm64/v8",
        "linux/arm/v7",
    ]
    image = index.image("linux", "arm", "v7")
    assert chosen.manifest is not None and chosen.config is not None
    assert str(chosen.manifest.digest) == image.manifest_digest
    assert chosen.config.raw == image.config
    assert [str(layer.diff_id) for layer in chosen.layers] == image.diff_ids
    assert chosen.raw == listing.raw


@pytest.mark.anyio
async def test_event_stream_keeps_one_pending_download_update_per_layer() -> None:
    from dockerdrag.events import EventStream

    digest = dockerdrag.Digest.of(b"x")
    other = dockerdrag.Digest.of(b"y")
    downloading = dockerdrag.LayerPhase.DOWNLOADING
    stream: EventStream[dockerdrag.ProgressEvent] = EventStream()
    for done in range(1, 100):
        stream.push(dockerdrag.LayerProgress(digest, downloading, done, 100))
        stream.push(dockerdrag.LayerProgress(other, downloading, done, 100))
    stream.push(dockerdrag.LayerProgress(digest, dockerdrag.LayerPhase.COMPLETE, 100, 100))
    stream.finish(dockerdrag.NetworkError("gone"))
    received = []
    with pytest.raises(dockerdrag.NetworkError):
        async for event in stream:
            received.append(event)
    assert [(e.digest, e.phase, e.done) for e in received] == [  # type: ignore[union-attr]
        (digest, downloading, 99),
        (other, downloading, 99),
        (digest, dockerdrag.LayerPhase.COMPLETE, 100),
    ]


def test_platforms_json(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    completed = run_cli(
        "platforms", index.reference, "--insecure", server.host, "--json", cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr
    entries = json.loads(completed.stdout)
    assert [e["platform"] for e in entries] == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    assert entries[0]["digest"] == index.image("linux", "amd64").manifest_digest
