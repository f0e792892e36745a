"""The benchmark's throughput over time: sampling the registry, rates, time to 90 %, the rows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import report, sections, throughput
from benchmarks.links import PROFILES, parse_links
from benchmarks.registries import PLAIN, Access

MB = 1_000_000


def test_rates_per_second_time_to_90_percent_and_the_tail() -> None:
    # 10 MB in the first second, 20 MB in the second, 10 MB over the last half second.
    samples = ((0.0, 0), (0.5, 5 * MB), (1.0, 10 * MB), (2.0, 30 * MB), (2.5, 40 * MB))
    flow = throughput.summarise(samples)
    assert flow is not None
    assert (flow.total, flow.duration, flow.bucket) == (40 * MB, 2.5, 1)
    assert [round(rate, 6) for rate in flow.rates] == [10.0, 20.0, 20.0]  # the last: 10 MB/0.5 s
    assert flow.peak == 20.0
    # 36 MB (90 %) is reached 6/10 of the way from 2.0 s (30 MB) to 2.5 s (40 MB).
    assert flow.time_to_share == pytest.approx(2.3)
    assert flow.tail == pytest.approx(0.2)


def test_a_long_run_gets_wider_buckets_and_a_quiet_start_shows_as_the_ramp() -> None:
    samples = ((0.0, 0), (10.0, 0), (100.0, 90 * MB), (200.0, 100 * MB))
    flow = throughput.summarise(samples)
    assert flow is not None
    assert flow.bucket == 5  # 200 s in at most 40 buckets
    assert len(flow.rates) == 40
    assert flow.rates[0] == 0.0 and flow.rates[1] == 0.0  # nothing in the first 10 s
    assert flow.rates[2] == pytest.approx(1.0)  # 90 MB over 90 s
    assert flow.time_to_share == pytest.approx(100.0)
    assert throughput.bucket_width(40.0) == 1 and throughput.bucket_width(40.1) == 2


def test_no_bytes_and_no_samples() -> None:
    assert throughput.summarise(((0.0, 0),)) is None
    idle = throughput.summarise(((0.0, 0), (0.3, 0)))
    assert idle is not None and idle.time_to_share is None and idle.tail is None


def test_sparkline_scales_to_the_peak() -> None:
    assert throughput.sparkline([0.0, 5.0, 10.0], 10.0) == "▁▅█"
    assert throughput.sparkline([0.0, 0.0], 0.0) == "  "


def test_the_sampler_counts_what_a_process_writes(tmp_path: Path) -> None:
    sampler = throughput.RegistrySampler(os.getpid(), interval=0.01)
    sampler.start()
    with open(tmp_path / "out", "wb", buffering=0) as out:
        out.write(b"x" * 300_000)
    samples = sampler.stop()
    assert samples[0] == (0.0, 0)
    assert samples[-1][1] >= 300_000
    assert [t for t, _ in samples] == sorted(t for t, _ in samples)


def _sample(contender: str, wall: float, sent: int) -> report.Sample:
    flow = throughput.summarise(((0.0, 0), (wall, sent)))
    return report.Sample(
        image="many",
        link="slow",
        contender=contender,
        round=0,
        wall=wall,
        cpu=0.1,
        rss_kb=None,
        connections=3,
        ok=True,
        registry="tls-token",
        throughput=flow,
    )


def test_the_report_shows_each_contenders_median_run() -> None:
    runs = [
        _sample("dockerdrag", 3.0, 30 * MB),
        _sample("dockerdrag", 1.0, 10 * MB),
        _sample("dockerdrag", 2.0, 26 * MB),
        _sample("skopeo", 9.0, 26 * MB),
    ]
    median = sections.median_run(runs[:3])
    assert median is not None and median.wall == 2.0
    tls = Access("tls-token")
    lines = sections.throughput_sections(
        runs, sections.cases(["many"], [(PLAIN, [PROFILES["slow"]]), (tls, [PROFILES["slow"]])])
    )
    text = "\n".join(lines)
    assert "### many, slow (proxy), TLS + token: bytes over time" in text
    assert "### many, slow (proxy): bytes" not in text  # nothing ran against plain
    assert "| dockerdrag | 26.0 | 1.80 | 0.20 | 13 | `██` | 13 13 (1) |" in text
    assert "| skopeo | 26.0 |" in text


def test_link_profiles() -> None:
    both = parse_links("both", rtt_ms=30, rate_mbps=20)
    assert [(p.name, p.rtt_ms, p.rate_mbps) for p in both] == [
        ("direct", None, None),
        ("shaped", 30, 20),
    ]
    slow = parse_links("slow,direct,slow", rtt_ms=50, rate_mbps=10)
    assert [(p.name, p.rtt_ms, p.rate_mbps) for p in slow] == [
        ("slow", 200.0, 5.0),
        ("direct", None, None),
    ]
    assert [p.name for p in parse_links("all", rtt_ms=50, rate_mbps=10)] == [
        "direct",
        "shaped",
        "slow",
    ]
    with pytest.raises(SystemExit, match="unknown link: fast"):
        parse_links("direct,fast", rtt_ms=50, rate_mbps=10)
