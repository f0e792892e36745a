"""The report's per-case sections: results, throughput over time, resume figures.

A case is one image, one registry mode and one link; its heading is
``### IMAGE, LINK TITLE`` for the plain registry and ``### IMAGE, LINK TITLE, MODE TITLE``
otherwise, in both the results and the throughput sections.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from . import report, throughput
from .links import LinkProfile
from .registries import Access

Case = tuple[str, Access, LinkProfile]
Measured = tuple[Access, Sequence[LinkProfile]]  # a registry mode and the links it ran over


def case_title(image: str, access: Access, link: LinkProfile) -> str:
    suffix = "" if access.mode == report.PLAIN else f", {access.title}"
    return f"{image}, {link.title}{suffix}"


def cases(images: Iterable[str], modes: Sequence[Measured]) -> list[Case]:
    """Every image, in each registry mode, over each of that mode's links."""
    return [(image, access, link) for image in images for access, links in modes for link in links]


def results(stats: Sequence[report.Stats], all_cases: Sequence[Case]) -> list[str]:
    out = ["## Results", ""]
    for image, access, link in all_cases:
        group = [
            s for s in stats if (s.image, s.registry, s.link) == (image, access.mode, link.name)
        ]
        if group:
            out += [f"### {case_title(image, access, link)}", "", report.stats_table(group), ""]
    return out


def median_run(samples: Sequence[report.Sample]) -> report.Sample | None:
    """The successful run whose wall time is the median (the lower one of an even count)."""
    ok = sorted((s for s in samples if s.ok), key=lambda s: s.wall)
    return ok[(len(ok) - 1) // 2] if ok else None


def throughput_sections(samples: Sequence[report.Sample], all_cases: Sequence[Case]) -> list[str]:
    out = [
        "## Throughput over time",
        "",
        "Bytes the registry sent while each contender ran (`wchar` of the registry process, "
        f"sampled every {throughput.INTERVAL:g} s), for each contender's median run: "
        f"the time by which {throughput.SHARE:.0%} of them had been sent, how long the "
        "rest took, the peak rate, and the rate in each bucket of time (1 s, wider for "
        "long runs), drawn as a sparkline (full block = that run's peak). The ramp is the "
        "start of the row, the tail its end.",
        "",
    ]
    for image, access, link in all_cases:
        group = [
            s for s in samples if (s.image, s.registry, s.link) == (image, access.mode, link.name)
        ]
        names = list(dict.fromkeys(s.contender for s in group))
        rows = []
        for name in names:
            run = median_run([s for s in group if s.contender == name])
            if run is not None and run.throughput is not None:
                rows.append((name, run.throughput))
        if rows:
            out += [
                f"### {case_title(image, access, link)}: bytes over time",
                "",
                throughput.throughput_table(rows),
                "",
            ]
    return out
