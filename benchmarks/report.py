"""Statistics over the timed runs, the targets, and the Markdown tables."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterable, Sequence

MB = 1_000_000
BASELINE = "skopeo"
CURL_FLOOR = "curl-floor"


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

    @property
    def rss_mb(self) -> float | None:
        return None if self.rss_kb is None else self.rss_kb * 1024 / MB


@dataclasses.dataclass(frozen=True)
class Stats:
    image: str
    link: str
    contender: str
    runs: int
    failed: int
    wall_median: float | None
    wall_min: float | None
    wall_max: float | None
    cpu_median: float | None
    rss_peak_mb: float | None
    connections: float | None
    vs_skopeo: float | None  # median over rounds of wall / skopeo's wall
    vs_curl: float | None  # the same against the curl floor


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _paired_ratio(mine: Sequence[Sample], theirs: Sequence[Sample]) -> float | None:
    """Median of per-round ratios, over the rounds where both runs succeeded."""
    by_round = {s.round: s.wall for s in theirs if s.ok}
    ratios = [s.wall / by_round[s.round] for s in mine if s.ok and s.round in by_round]
    return _median(ratios)


def summarise(samples: Sequence[Sample]) -> list[Stats]:
    """One :class:`Stats` per (image, link, contender), in first-seen order."""
    groups: dict[tuple[str, str, str], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.image, sample.link, sample.contender), []).append(sample)
    out = []
    for (image, link, contender), group in groups.items():
        ok = [s for s in group if s.ok]
        walls = [s.wall for s in ok]
        rss = [s.rss_mb for s in ok if s.rss_mb is not None]
        conns = [float(s.connections) for s in ok if s.connections is not None]
        out.append(
            Stats(
                image=image,
                link=link,
                contender=contender,
                runs=len(group),
                failed=len(group) - len(ok),
                wall_median=_median(walls),
                wall_min=min(walls, default=None),
                wall_max=max(walls, default=None),
                cpu_median=_median([s.cpu for s in ok]),
                rss_peak_mb=max(rss, default=None),
                connections=_median(conns),
                vs_skopeo=_paired_ratio(group, groups.get((image, link, BASELINE), [])),
                vs_curl=_paired_ratio(group, groups.get((image, link, CURL_FLOOR), [])),
            )
        )
    return out


def _num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def stats_table(stats: Iterable[Stats]) -> str:
    """A Markdown table, one row per contender."""
    rows = [
        "| contender | runs ok | wall median (s) | wall min (s) | wall max (s) "
        "| CPU median (s) | peak RSS (MB) | connections | x skopeo | x curl floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        rows.append(
            f"| {s.contender} | {s.runs - s.failed}/{s.runs} | {_num(s.wall_median)} "
            f"| {_num(s.wall_min)} | {_num(s.wall_max)} | {_num(s.cpu_median)} "
            f"| {_num(s.rss_peak_mb, 1)} | {_num(s.connections, 0)} "
            f"| {_num(s.vs_skopeo, 3)} | {_num(s.vs_curl, 2)} |"
        )
    return "\n".join(rows)


def raw_table(samples: Iterable[Sample]) -> str:
    """Every timed run, in the order they ran within each image and link."""
    rows = [
        "| image | link | round | contender | wall (s) | CPU (s) | peak RSS (MB) "
        "| connections | result |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for s in samples:
        conns = "-" if s.connections is None else str(s.connections)
        result = "ok" if s.ok else f"failed: {s.error}"
        rows.append(
            f"| {s.image} | {s.link} | {s.round + 1} | {s.contender} | {s.wall:.2f} "
            f"| {s.cpu:.2f} | {_num(s.rss_mb, 1)} | {conns} | {result} |"
        )
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


def _check(description: str, value: float | None, limit: float, fmt: str) -> TargetResult:
    if value is None:
        return TargetResult(description, "-", f"<= {limit:{fmt}}", "n/a")
    status = "PASS" if value <= limit else "FAIL"
    return TargetResult(description, f"{value:{fmt}}", f"<= {limit:{fmt}}", status)


def evaluate_targets(stats: Sequence[Stats], *, oci_note: str | None = None) -> list[TargetResult]:
    """The issue's targets for dockerdrag, against whatever was measured."""

    def find(image: str, link: str, contender: str) -> Stats | None:
        for s in stats:
            if (s.image, s.link, s.contender) == (image, link, contender):
                return s
        return None

    def value(
        image: str, link: str, contender: str, pick: Callable[[Stats], float | None]
    ) -> float | None:
        s = find(image, link, contender)
        return None if s is None else pick(s)

    results = [
        _check(
            "big / direct / docker format: wall vs skopeo",
            value("big", "direct", "dockerdrag", lambda s: s.vs_skopeo),
            0.35,
            ".3f",
        ),
        _check(
            "big / direct / oci format: wall vs curl floor",
            value("big", "direct", "dockerdrag-oci", lambda s: s.vs_curl),
            1.3,
            ".2f",
        ),
        _check(
            "big / shaped / docker format: wall vs skopeo",
            value("big", "shaped", "dockerdrag", lambda s: s.vs_skopeo),
            0.15,
            ".3f",
        ),
        _check(
            "many / direct / docker format: wall vs skopeo",
            value("many", "direct", "dockerdrag", lambda s: s.vs_skopeo),
            0.5,
            ".3f",
        ),
        _check(
            "many / shaped / docker format: wall vs skopeo",
            value("many", "shaped", "dockerdrag", lambda s: s.vs_skopeo),
            0.5,
            ".3f",
        ),
    ]
    if oci_note and results[1].status == "n/a":
        results[1] = dataclasses.replace(results[1], measured=oci_note)

    def peak(image: str) -> float | None:
        values = [
            s.rss_peak_mb
            for s in stats
            if s.image == image
            and s.contender.startswith("dockerdrag")
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
    rows = ["| target | measured | limit | result |", "|---|---:|---:|---|"]
    rows += [f"| {r.description} | {r.measured} | {r.limit} | {r.status} |" for r in results]
    return "\n".join(rows)
