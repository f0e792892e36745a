"""The benchmark in one command: ``python -m benchmarks [--quick] [--runs N] ...``.

Generates (once, cached) and pushes the images, starts the registry (and the shaping
proxy, and a private dockerd with ``--with-docker``), runs every contender on every
image over every link, alternating contenders round by round after a warm-up, and
writes a Markdown report (``benchmarks/RESULTS.md`` by default). See README.md here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from tests.support import require_binary
from tests.support.dockerd import DockerDaemon
from tests.support.registry_server import start_registry

from . import (
    BENCH_DIR,
    DEFAULT_CACHE_DIR,
    REPO_ROOT,
    daemon,
    imagegen,
    report,
    resume_measure,
    sections,
    throughput,
)
from .contenders import (
    Contender,
    CurlFloor,
    DecompressFloor,
    Docker,
    Dockerdrag,
    DockerdragBaseline,
    DockerdragOci,
    DockerdragOciDir,
    DockerdragPortable,
    NativeDockerFloor,
    PythonDockerFloor,
    PythonDockerWriteFloor,
    PythonFloor,
    Skopeo,
    Target,
    dockerdrag_formats,
)
from .endpoints import Endpoint, ShaperProcess, start_endpoints
from .links import LinkProfile, parse_links
from .machine import first_line, load_average, machine_info, versions
from .measure import run_sequence, sha256_seconds, tree_cpu_seconds
from .registries import PLAIN, parse_modes

CONTENDER_ORDER = (
    "dockerdrag",
    "dockerdrag-oci",
    "dockerdrag-oci-dir",
    "dockerdrag-portable",
    "dockerdrag-baseline",
    "skopeo",
    "docker",
    "curl-floor",
    "decompress-floor",
    "python-floor",
    "python-floor-docker",
    "python-floor-docker-write",
    "native-docker-floor",
)
# Contenders run only when asked for (by --with-docker, --portable, --baseline-checkout).
OPT_IN = ("docker", "dockerdrag-portable", "dockerdrag-baseline")


def _log(message: str) -> None:
    print(message, flush=True)


def compile_dockerdrag(notes: list[str], checkouts: Sequence[Path] = (REPO_ROOT,)) -> None:
    """Byte-compile the package of each checkout once, as ``pip install`` does for a user.

    Run from the source tree (an editable install), and where
    ``PYTHONDONTWRITEBYTECODE`` is set, every start would compile our modules
    again (~50 ms), which no installed copy does.
    """
    for checkout in checkouts:
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(checkout / "dockerdrag")], check=True
        )
    notes.append(
        "dockerdrag byte-compiled once before the runs (`python -m compileall`), "
        "as `pip install` does"
    )


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Plan:
    images: dict[str, imagegen.GeneratedImage]
    links: list[LinkProfile]
    contenders: list[Contender]
    runs: int
    warmup: int
    work_dir: Path
    log_dir: Path


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _tag(target: Target, contender: Contender, round_number: int) -> str:
    mode = "" if target.access.mode == "plain" else f"{target.access.mode}-"
    return f"{target.image.spec.name}-{mode}{target.link}-{contender.name}-r{round_number}"


def run_one(
    plan: Plan,
    contender: Contender,
    target: Target,
    round_number: int,
    shaper: ShaperProcess | None,
    registry_pid: int | None = None,
) -> report.Sample:
    tag = _tag(target, contender, round_number)
    workdir = plan.work_dir / tag
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    log = plan.log_dir / f"{tag}.log"
    opened = shaper.connections_opened() if shaper else 0
    registry_before = 0.0 if registry_pid is None else tree_cpu_seconds(registry_pid)
    sampler = None if registry_pid is None else throughput.RegistrySampler(registry_pid)
    if sampler is not None:
        sampler.start()
    try:
        outcome = contender.run(target, workdir, log)
        registry_after = None if registry_pid is None else tree_cpu_seconds(registry_pid)
    finally:
        sent = () if sampler is None else sampler.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        contender.reset()
        os.sync()  # no write-back of this run's files during the next one
    connections = shaper.connections_opened() - opened if shaper else None
    usage = outcome.usage
    error = outcome.error
    if not usage.ok:
        error = f"exit status {usage.returncode}"
    return report.Sample(
        image=target.image.spec.name,
        link=target.link,
        contender=contender.name,
        round=round_number,
        wall=usage.wall,
        cpu=usage.cpu,
        rss_kb=usage.max_rss_kb if outcome.rss_measured else None,
        connections=connections,
        ok=outcome.ok,
        error=error,
        registry_cpu=None if registry_after is None else registry_after - registry_before,
        registry=target.access.mode,
        throughput=throughput.summarise(sent) if contender.uses_registry else None,
    )


def run_all(plan: Plan, endpoints: Sequence[Endpoint]) -> list[report.Sample]:
    samples: list[report.Sample] = []
    for name, image in plan.images.items():
        for endpoint, link in ((e, link) for e in endpoints for link in e.links):
            process = endpoint.registry.process
            registry_pid = process.pid if process is not None else None
            target = Target(image, endpoint.host(link), link.name, endpoint.access)
            link_shaper = endpoint.shapers.get(link.name)
            where = (
                link.name
                if endpoint.access.mode == "plain"
                else f"{endpoint.access.mode}/{link.name}"
            )
            contenders = [
                c for c in plan.contenders if c.uses_registry or endpoint.access.mode == "plain"
            ]
            for round_number in range(-plan.warmup, plan.runs):
                label = "warm-up" if round_number < 0 else f"run {round_number + 1}/{plan.runs}"
                for contender in contenders:
                    sample = run_one(
                        plan, contender, target, round_number, link_shaper, registry_pid
                    )
                    status = "ok" if sample.ok else f"FAILED ({sample.error})"
                    rss = "" if sample.rss_mb is None else f", {sample.rss_mb:.1f} MB peak RSS"
                    conns = "" if sample.connections is None else f", {sample.connections} conns"
                    _log(
                        f"[{name}/{where} {label}] {contender.name:<16} {sample.wall:8.2f} s wall,"
                        f" {sample.cpu:6.2f} s CPU{rss}{conns}: {status}"
                    )
                    if not sample.ok:
                        _log(_tail(plan.log_dir / f"{_tag(target, contender, round_number)}.log"))
                    if round_number >= 0:
                        samples.append(sample)
    return samples


def _floor_costs(curl: CurlFloor, target: Target, repeats: int = 3) -> report.FloorCosts:
    """What the CPU floor of ``target``'s image needs besides the timed runs."""
    paths = [target.image.blob_path(digest) for digest in target.image.blob_digests]
    startups = []
    log = Path(os.devnull)
    for _ in range(repeats):
        startups.append(run_sequence(curl.startup_commands(target), log=log).cpu)
    return report.FloorCosts(
        hash_cpu=min(sha256_seconds(paths) for _ in range(repeats)),
        curl_startup_cpu=statistics.median(startups),
    )


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------


def render(
    *,
    command: str,
    plan: Plan,
    samples: Sequence[report.Sample],
    machine: Sequence[tuple[str, str]],
    tool_versions: Sequence[tuple[str, str]],
    modes: Sequence[sections.Measured],
    notes: Sequence[str],
    duration: float,
    registry_host: str,
    oci_note: str | None,
    floor_costs: dict[str, report.FloorCosts],
    resume: Sequence[resume_measure.Outcome] = (),
) -> str:
    stats = report.summarise(samples)
    floors = report.cpu_floors(stats, floor_costs, os.cpu_count() or 1)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    all_cases = sections.cases(plan.images, modes)
    out = [
        "# dockerdrag pull benchmark: results",
        "",
        f"Written by `benchmarks/run.py` on {now} ({duration / 60:.1f} min). "
        "See benchmarks/README.md for what is measured and how.",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine),
        "",
        "## Versions",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in tool_versions),
        "",
        "## Setup",
        "",
        "- registry: `docker-registry` on 127.0.0.1, filesystem storage "
        "(blobs in the page cache after the warm-up); modes: "
        + "; ".join(
            f"**{access.mode}** = {access.title}, over {', '.join(link.name for link in links)}"
            for access, links in modes
        )
        + (
            " (HTTPS with a generated CA, anonymous bearer tokens from "
            "`tests/support/token_server.py`, reached directly, not through the proxy)"
            if any(access.mode != PLAIN.mode for access, _ in modes)
            else ""
        ),
        "- links: " + "; ".join(f"**{link.name}** = {link.describe()}" for link in plan.links),
        f"- {plan.runs} timed run(s) per contender after {plan.warmup} warm-up round(s); "
        "contenders alternate A B C … A B C …; cold client cache every run",
        "- wall = first process start to last exit; CPU = user + sys of the child tree "
        "(wait4); peak RSS = largest `ru_maxrss` of the child tree; connections = TCP "
        "connections opened through the proxy (median); x skopeo / x curl floor = median "
        "of the per-round ratios of wall times",
        "- registry CPU = user + sys seconds the registry process spent during the run; "
        "cores busy = (CPU + registry CPU) / wall, median over the runs (the machine has "
        f"{os.cpu_count()})",
        "",
        "Images:",
        "",
        *(
            f"- **{name}** ({image.spec.repo}): {image.describe()}"
            for name, image in plan.images.items()
        ),
        "",
        "Contenders (commands as run for the first image over the direct link):",
        "",
    ]
    if plan.images:
        sample_image = next(iter(plan.images.values()))
        example = Target(sample_image, registry_host, "direct")
        for contender in plan.contenders:
            line = contender.command_line(example, Path("WORK"))
            out.append(f"- **{contender.name}**: {contender.description}. `{line}`")
    out += ["", *sections.results(stats, all_cases)]
    out += sections.throughput_sections(samples, all_cases)
    if floors:
        out += [
            "## The CPU floor of a verified pull (direct link)",
            "",
            "A pull that verifies digests costs at least: curl's CPU (fetching every blob "
            "to disk, verifying nothing; less what starting its processes costs, measured "
            "as the same processes running `curl --version`), the registry's CPU while "
            "serving curl, and sha256 over every blob (measured here, in-process, on the "
            "cached blobs). However it is spread over the cores, no such pull ends sooner "
            "than the total divided by the number of cores.",
            "",
            report.cpu_floor_table(floors),
            "",
        ]
    targets = report.evaluate_targets(stats, oci_note=oci_note, floors=floors)
    out += [
        "## Targets (dockerdrag = `--format docker` unless said otherwise)",
        "",
        report.targets_table(targets),
        "",
        "Floor in this run: the same ratio for a floor measured in this run. For the "
        "docker format over the direct link, the native docker floor (what such a pull "
        "cannot skip: fetch, verify, inflate, hash the diff_ids, write the layers; every "
        "byte handled once by native code, a process per layer), the Python docker floor: "
        "the same in one CPython process, nothing written; "
        "and, where measured, the same floor writing its archive (each inflated layer "
        "handed to the kernel, no fsync; aiohttp imported without the CAs it never uses). "
        "For the OCI format, the CPU floor above.",
        "",
    ]
    if resume:
        out += [
            "## Resume: bytes fetched twice (`benchmarks.resume_measure`)",
            "",
            resume_measure.markdown_table(resume),
            "",
        ]
    failures = [s for s in samples if not s.ok]
    all_notes = list(notes)
    all_notes += [
        f"{s.image}/{s.registry}/{s.link} {s.contender} run {s.round + 1} failed: {s.error}"
        for s in failures
    ]
    if all_notes:
        out += ["## Notes", "", *(f"- {note}" for note in all_notes), ""]
    out += ["## Every timed run", "", report.raw_table(samples), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark dockerdrag against skopeo, docker pull + save and three floors.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny images (smoke mode: seconds, not minutes)"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per contender (3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (1)")
    parser.add_argument(
        "--link",
        default="both",
        help="comma list of direct, shaped (50 ms, 10 MB/s per connection), slow (200 ms, "
        "5 MB/s per connection); both = direct,shaped (default); all = every link",
    )
    parser.add_argument(
        "--registry",
        default="plain",
        help="comma list of registry modes: plain (HTTP, anonymous; default), tls-token "
        "(HTTPS + anonymous bearer tokens, as Docker Hub)",
    )
    parser.add_argument(
        "--tls-token-links",
        default="direct",
        metavar="LINKS",
        help="the links (of --link) the tls-token registry is measured over (direct)",
    )
    parser.add_argument(
        "--resume-mb",
        type=int,
        default=0,
        metavar="MB",
        help="also run benchmarks.resume_measure on a layer of MB megabytes (0: not run)",
    )
    parser.add_argument("--images", default="big,many", help="comma list of big, many")
    parser.add_argument(
        "--contenders",
        default=",".join(c for c in CONTENDER_ORDER if c not in OPT_IN),
        help="comma list of "
        + ", ".join(CONTENDER_ORDER)
        + " (docker needs --with-docker, dockerdrag-baseline --baseline-checkout)",
    )
    parser.add_argument(
        "--portable",
        action="store_true",
        help="also time dockerdrag-portable (the pull under the emulated macOS profile)",
    )
    parser.add_argument(
        "--baseline-checkout",
        type=Path,
        metavar="PATH",
        help="also time dockerdrag-baseline: the dockerdrag of the checkout at PATH",
    )
    parser.add_argument(
        "--with-docker", action="store_true", help="also time docker pull + save (own dockerd)"
    )
    parser.add_argument(
        "--docker-storage-driver", default="overlay2", help="for --with-docker (overlay2)"
    )
    parser.add_argument(
        "--dockerdrag-args",
        default="",
        metavar="ARGS",
        help='extra options for every dockerdrag run, e.g. --dockerdrag-args="--concurrency 8"',
    )
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="shaped link: added RTT (ms)")
    parser.add_argument(
        "--rate-mbps", type=float, default=10.0, help="shaped link: MB/s per connection"
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="report path (default benchmarks/RESULTS.md; --quick: CACHE/RESULTS-quick.md)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="images, registry, work dirs"
    )
    return parser


def _split(text: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return names


def choose_contenders(
    names: list[str],
    docker_daemon: DockerDaemon | None,
    notes: list[str],
    dockerdrag_args: Sequence[str] = (),
    baseline: Path | None = None,
) -> tuple[list[Contender], str | None]:
    """The contenders to run, in :data:`CONTENDER_ORDER`; also a note when OCI is absent."""
    formats = dockerdrag_formats()
    oci_note = None

    def baseline_contender() -> Contender:
        if baseline is None:
            raise SystemExit("dockerdrag-baseline needs --baseline-checkout PATH")
        if not (baseline / "dockerdrag" / "__main__.py").is_file():
            raise SystemExit(f"--baseline-checkout {baseline}: no dockerdrag package there")
        rev = first_line(["git", "-C", str(baseline), "rev-parse", "--short", "HEAD"])
        notes.append(f"dockerdrag-baseline runs the dockerdrag of {baseline} ({rev})")
        return DockerdragBaseline(baseline, dockerdrag_args)

    factories: dict[str, Callable[[], Contender]] = {
        "dockerdrag": lambda: Dockerdrag(dockerdrag_args),
        "dockerdrag-oci": lambda: DockerdragOci(dockerdrag_args),
        "dockerdrag-oci-dir": lambda: DockerdragOciDir(dockerdrag_args),
        "dockerdrag-portable": lambda: DockerdragPortable(dockerdrag_args),
        "dockerdrag-baseline": baseline_contender,
        "skopeo": lambda: Skopeo(require_binary("/usr/bin/skopeo", "skopeo")),
        "curl-floor": lambda: CurlFloor(require_binary("/usr/bin/curl", "curl")),
        "decompress-floor": DecompressFloor,
        "python-floor": PythonFloor,
        "python-floor-docker": PythonDockerFloor,
        "python-floor-docker-write": PythonDockerWriteFloor,
        "native-docker-floor": lambda: NativeDockerFloor(require_binary("/usr/bin/curl", "curl")),
    }
    chosen: list[Contender] = []
    for name in CONTENDER_ORDER:
        if name == "docker":
            if docker_daemon is not None:
                chosen.append(Docker(docker_daemon))
            else:
                notes.append("docker pull + save not run (pass --with-docker to include it)")
            continue
        if name not in names:
            continue
        wanted = {"dockerdrag-oci": "oci", "dockerdrag-oci-dir": "oci-dir"}.get(name)
        if wanted is not None and wanted not in formats:
            oci_note = f"not run: this dockerdrag has no `--format {wanted}`"
            notes.append(f"{name} skipped: `python -m dockerdrag pull` has no --format {wanted}")
            continue
        chosen.append(factories[name]())
    return chosen, oci_note


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        raise SystemExit("--runs must be ≥ 1 and --warmup ≥ 0")
    started = time.monotonic()
    load_at_start = load_average()
    command = "python -m benchmarks " + shlex.join(argv)
    cache_dir: Path = args.cache_dir.resolve()
    results_path: Path = args.results or (
        cache_dir / "RESULTS-quick.md" if args.quick else BENCH_DIR / "RESULTS.md"
    )
    image_names = _split(args.images, ("big", "many"), "image")
    contender_names = _split(args.contenders, CONTENDER_ORDER, "contender")
    if args.with_docker and "docker" not in contender_names:
        contender_names.append("docker")
    if args.portable and "dockerdrag-portable" not in contender_names:
        contender_names.append("dockerdrag-portable")
    baseline: Path | None = args.baseline_checkout.resolve() if args.baseline_checkout else None
    if baseline is not None and "dockerdrag-baseline" not in contender_names:
        contender_names.append("dockerdrag-baseline")
    links = parse_links(args.link, rtt_ms=args.rtt_ms, rate_mbps=args.rate_mbps)
    modes = parse_modes(args.registry)
    notes: list[str] = []

    specs = imagegen.image_specs(args.quick)
    images = imagegen.ensure_images([specs[n] for n in image_names], cache_dir, log=_log)
    work_dir = cache_dir / "work"
    log_dir = cache_dir / "logs"
    shutil.rmtree(work_dir, ignore_errors=True)
    shutil.rmtree(log_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    log_dir.mkdir(parents=True)

    with contextlib.ExitStack() as stack:
        # A fresh log each time: the helper finds the "listening on" line at a byte offset
        # into decoded text, which non-ASCII lines ("µs") from earlier runs would shift.
        (cache_dir / "registry" / "registry.log").unlink(missing_ok=True)
        registry = start_registry(cache_dir / "registry")
        stack.callback(registry.stop)
        for image in images.values():
            imagegen.push(registry, image)
        _log(f"registry on {registry.host}; images pushed")
        tls_links = [link.name for link in parse_links(args.tls_token_links, rtt_ms=0, rate_mbps=0)]
        endpoints = start_endpoints(
            stack, registry, modes, links, tls_links, cache_dir, log_dir, _log
        )
        docker_daemon = None
        if args.with_docker and "docker" in contender_names:
            docker_daemon = daemon.start_dockerd(args.docker_storage_driver)
            stack.callback(docker_daemon.stop)
            _log(f"dockerd up ({daemon.storage_driver(docker_daemon)})")
        contenders, oci_note = choose_contenders(
            contender_names, docker_daemon, notes, shlex.split(args.dockerdrag_args), baseline
        )
        if any(c.name.startswith("dockerdrag") for c in contenders):
            checkouts = {c.checkout for c in contenders if isinstance(c, Dockerdrag)}
            compile_dockerdrag(notes, sorted(checkouts))
        floor_costs = {}
        curl = next((c for c in contenders if isinstance(c, CurlFloor)), None)
        if any(not link.shaped for link in links) and curl is not None:
            for name, image in images.items():
                floor_costs[name] = _floor_costs(curl, Target(image, registry.host, "direct"))
        plan = Plan(images, links, contenders, args.runs, args.warmup, work_dir, log_dir)
        samples = run_all(plan, endpoints)
        resume = []
        if args.resume_mb > 0:
            _log(f"resume figures ({args.resume_mb} MB layer)")
            with tempfile.TemporaryDirectory(prefix="resume-", dir=cache_dir) as temp:
                resume = anyio.run(resume_measure.measure, args.resume_mb, Path(temp))
        text = render(
            command=command,
            plan=plan,
            samples=samples,
            machine=machine_info(load_at_start),
            tool_versions=versions(docker_daemon),
            modes=[(e.access, e.links) for e in endpoints],
            notes=notes,
            duration=time.monotonic() - started,
            registry_host=registry.host,
            oci_note=oci_note,
            floor_costs=floor_costs,
            resume=resume,
        )
    shutil.rmtree(work_dir, ignore_errors=True)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(text + "\n")
    _log("")
    _log(text)
    _log(f"\nwritten to {results_path}")
    return 0
