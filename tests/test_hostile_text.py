"""Registry-supplied text never drives the terminal (issue 14, item 6).

A hostile registry puts escape sequences (window title, clear screen, C1 CSI), BEL,
carriage returns, newlines and Unicode line separators into everything the command
prints: error messages, labels, ``Env``, platform names. The command runs as a user
would; every line it prints must be printable text, and no forged line may appear.
With ``--json`` the strings arrive intact, JSON-escaped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockerdrag.cli_report import configure_logging
from dockerdrag.safe_text import escape
from tests.support.command import run_cli
from tests.support.fault_proxy import FaultProxy, status
from tests.support.images import build_image, build_index, push_built, push_index, text_layer
from tests.support.registry_server import RegistryServer

FORGED = "image ID sha256:forged"
HOSTILE = f"x\x1b]0;pwned\x07\x1b[2J\r\n{FORGED}\x9b31m\x85\u2028\u202eend\x00"


def assert_terminal_safe(text: str) -> None:
    """Every line of ``text`` is printable, and none was forged by a registry string."""
    for line in text.split("\n"):
        assert line.isprintable(), repr(line)
        assert not line.startswith(FORGED), repr(line)


# --------------------------------------------------------------------------- the escaping


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("a\r\nb\tc", "a\\r\\nb\\tc"),
        ("\x9b2J\x85\x7f\x00", "\\x9b2J\\x85\\x7f\\x00"),
        ("\u2028\u202e\u200b", "\\u2028\\u202e\\u200b"),
        ("\U000e0041\udcff", "\\U000e0041\\udcff"),
        ("plain é 漢字 \\x1b", "plain é 漢字 \\x1b"),
    ],
    ids=["osc-title", "crlf-tab", "c1-del-nul", "separators-bidi", "tag-surrogate", "printable"],
)
def test_escape_shows_every_control_character(raw: str, shown: str) -> None:
    assert escape(raw) == shown
    assert escape(shown) == shown  # escaping twice changes nothing
    assert escape(raw).isprintable()


@pytest.fixture
def command_logging() -> Iterator[logging.Logger]:
    """The ``dockerdrag`` logger as the command sets it up, restored afterwards."""
    logger = logging.getLogger("dockerdrag")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    configure_logging(0, False)
    try:
        yield logger
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def test_log_lines_are_escaped(
    command_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    command_logging.warning("the realm %s", HOSTILE)
    err = capsys.readouterr().err
    assert err.startswith("dockerdrag: warning: the realm x\\x1b]0;pwned")
    assert_terminal_safe(err.rstrip("\n"))


# --------------------------------------------------------------------------- the command


@pytest.fixture
def hostile_image(registry: RegistryServer) -> str:
    image = build_image(
        [text_layer("a.txt", "a\n")],
        architecture=f"amd64{HOSTILE}",
        labels={"evil": HOSTILE, f"key{HOSTILE}": "v"},
        env=[f"EVIL={HOSTILE}", "PATH=/bin"],
        cmd=[HOSTILE],
        working_dir=f"/w{HOSTILE}",
    )
    return push_built(registry, "hostile/config", "v1", image).reference


def test_inspect_escapes_config_strings(
    registry: RegistryServer, hostile_image: str, tmp_path: Path
) -> None:
    completed = run_cli("inspect", hostile_image, "--insecure", registry.host, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert_terminal_safe(completed.stdout + completed.stderr)
    assert "  evil=x\\x1b]0;pwned\\x07\\x1b[2J\\r\\nimage ID" in completed.stdout
    assert "  EVIL=x\\x1b]0;pwned" in completed.stdout


def test_inspect_json_carries_the_strings_intact(
    registry: RegistryServer, hostile_image: str, tmp_path: Path
) -> None:
    completed = run_cli(
        "inspect", hostile_image, "--insecure", registry.host, "--json", cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr
    assert_terminal_safe(completed.stdout + completed.stderr)  # JSON escapes them all
    config = json.loads(completed.stdout)["config"]
    assert config["labels"]["evil"] == HOSTILE and f"EVIL={HOSTILE}" in config["env"]


def test_pull_progress_is_escaped(
    registry: RegistryServer, hostile_image: str, tmp_path: Path
) -> None:
    completed = run_cli(
        "pull", hostile_image, "--insecure", registry.host, "--progress", "plain", cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr
    assert_terminal_safe(completed.stdout + completed.stderr)


@pytest.fixture
def hostile_index(registry: RegistryServer) -> str:
    images = [
        build_image([text_layer(name, name)], media_types="oci", os=f"linux{HOSTILE}", **kw)
        for name, kw in (("a", {"architecture": "amd64"}), ("b", {"architecture": HOSTILE}))
    ]
    return push_index(registry, "hostile/index", "v1", build_index(images)).reference


@pytest.mark.parametrize("command", ["platforms", "pull"])
def test_platform_lists_are_escaped(
    registry: RegistryServer, hostile_index: str, tmp_path: Path, command: str
) -> None:
    completed = run_cli(command, hostile_index, "--insecure", registry.host, cwd=tmp_path)
    if command == "pull":  # no --platform: the error lists the platforms on stderr
        assert completed.returncode == 4, completed.stderr
    else:
        assert completed.returncode == 0, completed.stderr
    output = completed.stdout + completed.stderr
    assert_terminal_safe(output)
    assert "linuxx\\x1b]0;pwned\\x07" in output


def test_platforms_json_carries_the_strings_intact(
    registry: RegistryServer, hostile_index: str, tmp_path: Path
) -> None:
    completed = run_cli(
        "platforms", hostile_index, "--insecure", registry.host, "--json", cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr
    assert_terminal_safe(completed.stdout + completed.stderr)
    platforms = [entry["platform"] for entry in json.loads(completed.stdout)]
    assert platforms and all(f"linux{HOSTILE}" in platform for platform in platforms)


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_registry_error_messages_are_escaped(
    registry: RegistryServer, tmp_path: Path, json_mode: bool
) -> None:
    body = json.dumps({"errors": [{"code": "DENIED", "message": HOSTILE}]}).encode()
    with FaultProxy(registry.url) as proxy:
        proxy.add(status(400, body=body), path="/manifests/", times=None)
        completed = run_cli(
            "pull",
            f"{proxy.host}/hostile/error:v1",
            "--insecure",
            proxy.host,
            *(["--json"] if json_mode else []),
            cwd=tmp_path,
        )
    assert completed.returncode == 5, completed.stderr
    assert_terminal_safe(completed.stdout + completed.stderr)
    assert completed.stderr.count("\n") == 1  # one line: the error
    assert "x\\x1b]0;pwned\\x07\\x1b[2J\\r\\nimage ID" in completed.stderr
    if json_mode:  # progress events, then the error object: JSON lines
        *_events, error = [json.loads(line) for line in completed.stdout.splitlines()]
        assert error["event"] == "error" and "x\\x1b]0;pwned\\x07" in error["message"]
