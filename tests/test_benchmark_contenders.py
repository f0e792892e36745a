"""The opt-in dockerdrag contenders of the benchmark: the portable path and a baseline checkout."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.contenders import (
    Dockerdrag,
    DockerdragBaseline,
    DockerdragPortable,
    Target,
)
from benchmarks.run import build_parser, choose_contenders

ROOT = Path(__file__).resolve().parent.parent


def test_opt_in_contenders_are_not_run_by_default() -> None:
    default = build_parser().parse_args([]).contenders.split(",")
    assert "dockerdrag-portable" not in default and "dockerdrag-baseline" not in default


def test_portable_and_baseline_run_the_checkout_they_name(tmp_path: Path) -> None:
    notes: list[str] = []
    names = ["dockerdrag", "dockerdrag-portable", "dockerdrag-baseline"]
    chosen, _ = choose_contenders(names, None, notes, ["--concurrency", "8"], baseline=ROOT)
    plain, portable, baseline = chosen
    assert (type(plain), type(portable), type(baseline)) == (
        Dockerdrag,
        DockerdragPortable,
        DockerdragBaseline,
    )
    target = _target()
    launcher = ROOT / "tests" / "support" / "platform_profiles.py"
    (argv,) = portable.commands(target, tmp_path)
    assert argv[:3] == [sys.executable, str(launcher), "macos"]
    assert argv[3] == "pull" and argv[-2:] == ["--concurrency", "8"]
    assert baseline.environment(tmp_path)["PYTHONPATH"] == str(ROOT)
    assert baseline.working_directory() == ROOT
    assert any(str(ROOT) in note for note in notes)


@pytest.mark.parametrize(
    ("extra", "output", "written"),
    [
        ([], "out.tar", "docker"),
        (["--format", "oci"], "out.tar", "oci"),
        (["--format=oci-dir"], "out", "oci-dir"),
        (["--format", "oci", "--format", "oci-dir"], "out", "oci-dir"),
    ],
)
def test_a_format_among_the_extra_options_names_the_output_and_its_check(
    tmp_path: Path, extra: list[str], output: str, written: str
) -> None:
    """--dockerdrag-args="--format oci-dir" makes the baseline write (and the harness
    check) a layout directory, as the dockerdrag-oci-dir contender does."""
    (_plain, baseline), _ = choose_contenders(
        ["dockerdrag", "dockerdrag-baseline"], None, [], extra, baseline=ROOT
    )
    (argv,) = baseline.commands(_target(), tmp_path)
    assert argv[argv.index("-o") + 1] == str(tmp_path / output)
    assert isinstance(baseline, Dockerdrag) and baseline.output_format() == written
    layout = tmp_path / "out"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    for name in ("index.json", "oci-layout"):
        (layout / name).write_text("{}")
    target = _target(_Image(blob_digests=("sha256:a",)))
    if written == "oci-dir":
        with pytest.raises(ValueError, match="0 blobs, 1 expected"):
            baseline.check(target, tmp_path)
        (layout / "blobs" / "sha256" / "a").write_text("")
        baseline.check(target, tmp_path)
    else:
        with pytest.raises(OSError):  # looks for out.tar, not the layout
            baseline.check(target, tmp_path)


def test_a_baseline_needs_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--baseline-checkout"):
        choose_contenders(["dockerdrag-baseline"], None, [])
    with pytest.raises(SystemExit, match="no dockerdrag package"):
        choose_contenders(["dockerdrag-baseline"], None, [], baseline=tmp_path)


def test_the_baseline_is_not_this_checkouts_peak_rss() -> None:
    def sample(contender: str, rss_kb: int) -> report.Sample:
        return report.Sample(
            image="big",
            link="direct",
            contender=contender,
            round=0,
            wall=1.0,
            cpu=1.0,
            rss_kb=rss_kb,
            connections=None,
            ok=True,
            registry_cpu=None,
        )

    stats = report.summarise([sample("dockerdrag", 40_000), sample("dockerdrag-baseline", 90_000)])
    results = {r.description: r for r in report.evaluate_targets(stats)}
    assert results["big: dockerdrag peak RSS, MB (any link/format)"].status == "PASS"


@dataclasses.dataclass(frozen=True)
class _Spec:
    repo: str = "bench/x"
    tag: str = "v1"


@dataclasses.dataclass(frozen=True)
class _Image:
    spec: _Spec = _Spec()
    blob_digests: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()


def _target(image: _Image | None = None) -> Target:
    """A target whose image has only what a command line and a layout check need."""
    return Target(image or _Image(), "127.0.0.1:5000", "direct")  # type: ignore[arg-type]
