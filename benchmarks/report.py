"""Statistics over the timed runs, the targets, and the Markdown tables."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence

from .throughput import Throughput

MB = 1_000_000
BASELINE = "skopeo"
CURL_FLOOR = "curl-floor"
DOCKER_FLOOR = "python-floor-docker"
DOCKER_WRITE_FLOOR = "python-floor-docker-write"
NATIVE_DOCKER_FLOOR = "native-docker-floor"
PLAIN = "plain"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One timed run of one contender."""

    image: str
    link: str
    contender: str
    round: int
    wall: float
    cpu: float
    rss_kb: int | None  # None: not measurable (the work happens in a daemon)
    connections: int | None  # None: not counted (direct link)
    ok: bool
    error: str | None = None
    registry_cpu: float | None = None  # user + sys seconds the registry spent meanwhile
    registry: str = PLAIN  # the registry mode: plain HTTP or tls-token
    throughput: Throughput | None = None  # the registry's bytes over time, when sampled

    @property
    def cores_busy(self) -> float | None:
        """CPU seconds of the contender and the registry per second of wall time."""
        if self.registry_cpu is None or self.wall <= 0:
            return None
        return (self.cpu + self.registry_cpu) / self.wall

    @property
    def rss_mb(self) -> float | None:
        return None if self.rss_kb is None else self.rss_kb * 1024 / MB


@dataclasses.dataclass(frozen=True)
class Stats:
    image: str
    link: str
    contender: str
    registry: str
    runs: int
    failed: int
    wall_median: float | None
    wall_min: float | None
    wall_max: float | None
    cpu_median: float | None
    registry_cpu_median: float | None
    cores_busy_median: float | None
    rss_peak_mb: float | None
    connections: float | None
    vs_skopeo: float | None  # median over rounds of wall / skopeo's wall
    vs_curl: float | None  # the same against the curl floor
    vs_docker_floor: float | None  # the same against the Python docker floor


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _paired_ratio(mine: Sequence[Sample], theirs: Sequence[Sample]) -> float | None:
    """Median of per-round ratios, over the rounds where both runs succeeded."""
    by_round = {s.round: s.wall for s in theirs if s.ok}
    ratios = [s.wall / by_round[s.round] for s in mine if s.ok and s.round in by_round]
    return _median(ratios)


def summarise(samples: Sequence[Sample]) -> list[Stats]:
    """One :class:`Stats` per (image, registry mode, link, contender), in first-seen order."""
    groups: dict[tuple[str, str, str, str], list[Sample]] = {}
    for sample in samples:
        key = (sample.image, sample.registry, sample.link, sample.contender)
        groups.setdefault(key, []).append(sample)
    out = []
    for (image, registry, link, contender), group in groups.items():
        ok = [s for s in group if s.ok]
        walls = [s.wall for s in ok]
        rss = [s.rss_mb for s in ok if s.rss_mb is not None]
        conns = [float(s.connections) for s in ok if s.connections is not None]
        out.append(
            Stats(
                image=image,
                link=link,
                contender=contender,
                registry=registry,
                runs=len(group),
                failed=len(group) - len(ok),
                wall_median=_median(walls),
                wall_min=min(walls, default=None),
                wall_max=max(walls, default=None),
                cpu_median=_median([s.cpu for s in ok]),
                registry_cpu_median=_median(
                    [s.registry_cpu for s in ok if s.registry_cpu is not None]
                ),
                cores_busy_median=_median([s.cores_busy for s in ok if s.cores_busy is not None]),
                rss_peak_mb=max(rss, default=None),
                connections=_median(conns),
                vs_skopeo=_paired_ratio(group, groups.get((image, registry, link, BASELINE), [])),
                vs_curl=_paired_ratio(group, groups.get((image, registry, link, CURL_FLOOR), [])),
                vs_docker_floor=_paired_ratio(
                    group, groups.get((image, registry, link, DOCKER_FLOOR), [])
                ),
            )
        )
    return out


def _num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def stats_table(stats: Iterable[Stats]) -> str:
    """A Markdown table, one row per contender."""
    rows = [
        "| contender | runs ok | wall median (s) | wall min (s) | wall max (s) "
        "| CPU median (s) | registry CPU (s) | cores busy | peak RSS (MB) | connections "
        "| x skopeo | x curl floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        rows.append(
            f"| {s.contender} | {s.runs - s.failed}/{s.runs} | {_num(s.wall_median)} "
            f"| {_num(s.wall_min)} | {_num(s.wall_max)} | {_num(s.cpu_median)} "
            f"| {_num(s.registry_cpu_median)} | {_num(s.cores_busy_median, 2)} "
            f"| {_num(s.rss_peak_mb, 1)} | {_num(s.connections, 0)} "
            f"| {_num(s.vs_skopeo, 3)} | {_num(s.vs_curl, 2)} |"
        )
    return "\n".join(rows)


def raw_table(samples: Iterable[Sample]) -> str:
    """Every timed run, in the order they ran within each image and link."""
    rows = [
        "| image | registry | link | round | contender | wall (s) | CPU (s) | registry CPU (s) "
        "| peak RSS (MB) | connections | result |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in samples:
        conns = "-" if s.connections is None else str(s.connections)
        result = "ok" if s.ok else f"failed: {s.error}"
        rows.append(
            f"| {s.image} | {s.registry} | {s.link} | {s.round + 1} | {s.contender} | {s.wall:.2f} "
            f"| {s.cpu:.2f} | {_num(s.registry_cpu)} | {_num(s.rss_mb, 1)} | {conns} | {result} |"
        )
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------
# Targets (reported, never asserted)
# ---------------------------------------------------------------------------------------


def _find(
    stats: Sequence[Stats], image: str, link: str, contender: str, registry: str = PLAIN
) -> Stats | None:
    for s in stats:
        if (s.image, s.registry, s.link, s.contender) == (image, registry, link, contender):
            return s
    return None


# ---------------------------------------------------------------------------------------
# The CPU floor of a verified pull
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CpuFloor:
    """The least CPU a pull that verifies digests costs on this machine (direct link).

    curl, fetching every blob to disk and verifying nothing, is about the least a
    client can spend; the registry spends at least what it spent serving curl; and a
    verified pull also hashes every byte with sha256, at the speed measured here. On
    ``cores`` cores, no pull can finish sooner than all of that divided by ``cores``.
    What curl spends starting its processes (one per blob) is left out.
    """

    image: str
    curl_cpu: float
    curl_startup_cpu: float  # starting its processes, not part of any transfer
    registry_cpu: float
    hash_cpu: float
    cores: int
    curl_wall: float

    @property
    def transfer_cpu(self) -> float:
        return max(self.curl_cpu - self.curl_startup_cpu, 0.0)

    @property
    def core_seconds(self) -> float:
        return self.transfer_cpu + self.registry_cpu + self.hash_cpu

    @property
    def wall(self) -> float:
        return self.core_seconds / self.cores

    @property
    def vs_curl(self) -> float:
        return self.wall / self.curl_wall


@dataclasses.dataclass(frozen=True)
class FloorCosts:
    """Measured once per image by the harness, outside the timed runs."""

    hash_cpu: float  # sha256 over every blob
    curl_startup_cpu: float  # the curl floor's processes started and doing nothing


def cpu_floors(
    stats: Sequence[Stats], costs: Mapping[str, FloorCosts], cores: int
) -> list[CpuFloor]:
    """One :class:`CpuFloor` per image whose curl floor ran on the direct link."""
    floors = []
    for image, cost in costs.items():
        curl = _find(stats, image, "direct", CURL_FLOOR)
        if curl is None:
            continue
        curl_cpu, registry_cpu, wall = curl.cpu_median, curl.registry_cpu_median, curl.wall_median
        if curl_cpu is None or registry_cpu is None or not wall:
            continue
        floors.append(
            CpuFloor(
                image=image,
                curl_cpu=curl_cpu,
                curl_startup_cpu=cost.curl_startup_cpu,
                registry_cpu=registry_cpu,
                hash_cpu=cost.hash_cpu,
                cores=cores,
                curl_wall=wall,
            )
        )
    return floors


def cpu_floor_table(floors: Iterable[CpuFloor]) -> str:
    rows = [
        "| image | curl's CPU (s) | of it, starting curl (s) | registry's CPU (s) "
        "| sha256 of every blob (s) | total (core-s) | cores | least wall (s) "
        "| curl floor wall (s) | least x curl floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows += [
        f"| {f.image} | {f.curl_cpu:.2f} | {f.curl_startup_cpu:.2f} | {f.registry_cpu:.2f} "
        f"| {f.hash_cpu:.2f} "
        f"| {f.core_seconds:.2f} | {f.cores} | {f.wall:.2f} | {f.curl_wall:.2f} "
        f"| {f.vs_curl:.2f} |"
        for f in floors
    ]
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------
# Targets (reported, never asserted)
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TargetResult:
    description: str
    measured: str
    limit: str
    status: str  # PASS, FAIL or n/a
    floor: str = "-"  # a floor's ratio measured in the same run, where one bounds the target


def _check(
    description: str, value: float | None, limit: float, fmt: str, floor: str = "-"
) -> TargetResult:
    if value is None:
        return TargetResult(description, "-", f"<= {limit:{fmt}}", "n/a", floor)
    status = "PASS" if value <= limit else "FAIL"
    return TargetResult(description, _unlike(value, limit, fmt), f"<= {limit:{fmt}}", status, floor)


def _unlike(value: float, limit: float, fmt: str) -> str:
    """``value`` as ``fmt`` (``.Nf``) gives it, with one more decimal at a time (up to
    three) while it would read as ``limit`` without being it: 0.0753 against a limit of
    0.075 reads 0.0753, not 0.075 beside a FAIL."""
    decimals = int(fmt.removeprefix(".").removesuffix("f"))
    for extra in range(4):
        text = f"{value:.{decimals + extra}f}"
        if value == limit or text != f"{limit:.{decimals + extra}f}":
            return text
    return text


def _floor_text(value: float | None, fmt: str, what: str) -> str:
    return "-" if value is None else f"{value:{fmt}} ({what})"


def evaluate_targets(
    stats: Sequence[Stats],
    *,
    oci_note: str | None = None,
    floors: Sequence[CpuFloor] = (),
) -> list[TargetResult]:
    """Issue 18's targets for dockerdrag, against whatever was measured.

    Where a floor measured in the same run bounds a target from below, its ratio is
    given too: the native docker floor and the Python docker floors (nothing written,
    and writing the archive) for the docker format over the direct link, the CPU
    floor (:class:`CpuFloor`) for the OCI formats.
    """

    def value(
        image: str,
        link: str,
        contender: str,
        pick: Callable[[Stats], float | None],
        registry: str = PLAIN,
    ) -> float | None:
        s = _find(stats, image, link, contender, registry)
        return None if s is None else pick(s)

    def docker_floor(image: str, registry: str = PLAIN) -> str:
        floors = [
            _floor_text(value(image, "direct", name, lambda s: s.vs_skopeo, registry), ".3f", what)
            for name, what in (
                (NATIVE_DOCKER_FLOOR, "native docker floor"),
                (DOCKER_FLOOR, "Python docker floor"),
                (DOCKER_WRITE_FLOOR, "writing its archive"),
            )
        ]
        return ", ".join(text for text in floors if text != "-") or "-"

    def vs_skopeo(image: str, link: str, limit: float, registry: str = PLAIN) -> TargetResult:
        where = link if registry == PLAIN else f"{link} / {registry}"
        return _check(
            f"{image} / {where} / docker format: wall vs skopeo",
            value(image, link, "dockerdrag", lambda s: s.vs_skopeo, registry),
            limit,
            ".3f",
            docker_floor(image, registry) if link == "direct" else "-",
        )

    cpu_floor = _floor_text(
        next((f.vs_curl for f in floors if f.image == "big"), None), ".2f", "CPU floor"
    )

    def oci(contender: str, flag: str) -> TargetResult:
        result = _check(
            f"big / direct / {flag}: wall vs curl floor",
            value("big", "direct", contender, lambda s: s.vs_curl),
            2.5,
            ".2f",
            cpu_floor,
        )
        if oci_note and result.status == "n/a":
            result = dataclasses.replace(result, measured=oci_note)
        return result

    results = [
        oci("dockerdrag-oci", "`--format oci`"),
        oci("dockerdrag-oci-dir", "`--format oci-dir`"),
        vs_skopeo("big", "direct", 0.22),
        _check(
            "big / direct / docker format: wall vs the Python docker floor",
            value("big", "direct", "dockerdrag", lambda s: s.vs_docker_floor),
            0.9,
            ".3f",
        ),
        vs_skopeo("big", "shaped", 0.075),
        vs_skopeo("many", "shaped", 0.15),
        vs_skopeo("big", "slow", 0.1),
        vs_skopeo("many", "slow", 0.15),
        vs_skopeo("many", "direct", 0.5, "tls-token"),
        vs_skopeo("many", "direct", 0.5),
    ]

    def peak(image: str) -> float | None:
        values = [
            s.rss_peak_mb
            for s in stats
            if s.image == image
            and s.contender.startswith("dockerdrag")
            and s.contender != "dockerdrag-baseline"  # another checkout's, not this one's
            and s.rss_peak_mb is not None
        ]
        return max(values, default=None)

    for image in ("big", "many"):
        results.append(
            _check(f"{image}: dockerdrag peak RSS, MB (any link/format)", peak(image), 60, ".1f")
        )
    big_peak, many_peak = peak("big"), peak("many")
    gap = None if big_peak is None or many_peak is None else abs(big_peak - many_peak)
    results.append(_check("big's peak RSS within 10 MB of many's: difference, MB", gap, 10, ".1f"))

    mine = value("big", "direct", "dockerdrag", lambda s: s.cpu_median)
    theirs = value("big", "direct", BASELINE, lambda s: s.cpu_median)
    cpu = None if mine is None or theirs is None else mine / theirs
    results.append(_check("big / direct: CPU seconds vs skopeo's (ratio)", cpu, 1.0, ".2f"))
    return results


def targets_table(results: Iterable[TargetResult]) -> str:
    rows = [
        "| target | measured | limit | result | floor in this run |",
        "|---|---:|---:|---|---:|",
    ]
    rows += [
        f"| {r.description} | {r.measured} | {r.limit} | {r.status} | {r.floor} |" for r in results
    ]
    return "\n".join(rows)
