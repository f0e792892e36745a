"""The benchmark report's sums: cores busy, the CPU floor and the floor column of the targets."""

from __future__ import annotations

from benchmarks import report


def _sample(
    contender: str,
    wall: float,
    cpu: float,
    registry_cpu: float | None,
    *,
    image: str = "big",
    round: int = 0,
    link: str = "direct",
    registry: str = "plain",
) -> report.Sample:
    return report.Sample(
        image=image,
        link=link,
        registry=registry,
        contender=contender,
        round=round,
        wall=wall,
        cpu=cpu,
        rss_kb=40_000,
        connections=None,
        ok=True,
        registry_cpu=registry_cpu,
    )


def test_cores_busy_counts_the_registry_and_is_unknown_without_it() -> None:
    assert _sample("curl-floor", wall=2.0, cpu=1.5, registry_cpu=0.5).cores_busy == 1.0
    assert _sample("curl-floor", wall=2.0, cpu=1.5, registry_cpu=None).cores_busy is None


def test_cpu_floor_adds_curl_less_its_start_up_the_registry_and_hashing() -> None:
    samples = [
        _sample("curl-floor", wall=w, cpu=c, registry_cpu=r, round=n)
        for n, (w, c, r) in enumerate([(0.8, 0.9, 0.6), (0.7, 0.8, 0.5), (0.9, 1.0, 0.7)])
    ]
    stats = report.summarise(samples)
    costs = {
        "big": report.FloorCosts(hash_cpu=0.8, curl_startup_cpu=0.1),
        "many": report.FloorCosts(0.1, 0.1),
    }
    [floor] = report.cpu_floors(stats, costs, cores=2)  # many: no curl floor ran
    assert floor.image == "big"
    assert floor.transfer_cpu == 0.9 - 0.1  # medians: curl 0.9 s, registry 0.6 s, wall 0.8 s
    assert round(floor.core_seconds, 6) == round(0.8 + 0.6 + 0.8, 6)
    assert round(floor.wall, 6) == 1.1
    assert round(floor.vs_curl, 6) == round(1.1 / 0.8, 6)
    table = report.cpu_floor_table([floor])
    assert "| big | 0.90 | 0.10 | 0.60 | 0.80 | 2.20 | 2 | 1.10 | 0.80 | 1.38 |" in table


def test_cpu_floor_never_counts_negative_transfer_cpu() -> None:
    floor = report.CpuFloor("many", 0.29, 0.31, 0.12, 0.02, 2, 0.24)
    assert floor.transfer_cpu == 0.0
    assert round(floor.core_seconds, 6) == 0.14


def test_targets_show_the_floors_of_the_same_run() -> None:
    samples = [
        _sample("dockerdrag", 8.0, 10.0, 0.8),
        _sample("skopeo", 27.0, 36.0, 0.7),
        _sample("python-floor-docker", 7.0, 10.0, 0.6),
        _sample("native-docker-floor", 5.0, 9.0, 0.6),
        _sample("dockerdrag-oci", 4.0, 4.5, 0.8),
        _sample("curl-floor", 0.8, 0.9, 0.6),
        _sample("dockerdrag", 0.6, 0.6, 0.2, image="many"),
        _sample("skopeo", 1.0, 1.1, 0.2, image="many"),
        _sample("python-floor-docker-write", 0.55, 0.5, 0.2, image="many"),
    ]
    stats = report.summarise(samples)
    floors = report.cpu_floors(stats, {"big": report.FloorCosts(0.8, 0.1)}, cores=2)
    results = {r.description: r for r in report.evaluate_targets(stats, floors=floors)}
    big_docker = results["big / direct / docker format: wall vs skopeo"]
    assert (big_docker.measured, big_docker.status) == ("0.296", "FAIL")  # limit 0.22
    assert big_docker.floor == (
        f"{5.0 / 27.0:.3f} (native docker floor), {7.0 / 27.0:.3f} (Python docker floor)"
    )
    against_floor = results["big / direct / docker format: wall vs the Python docker floor"]
    assert (against_floor.measured, against_floor.status) == (f"{8.0 / 7.0:.3f}", "FAIL")
    oci = results["big / direct / `--format oci`: wall vs curl floor"]
    assert (oci.measured, oci.status, oci.floor) == ("5.00", "FAIL", "1.38 (CPU floor)")
    assert results["big / direct / `--format oci-dir`: wall vs curl floor"].status == "n/a"
    many = results["many / direct / docker format: wall vs skopeo"]
    assert many.floor == "0.550 (writing its archive)"  # only the writing floor ran for many
    assert results["many / direct / tls-token / docker format: wall vs skopeo"].floor == "-"
    assert results["big / shaped / docker format: wall vs skopeo"].floor == "-"
    table = report.targets_table(results.values())
    assert "| 5.00 | <= 2.50 | FAIL | 1.38 (CPU floor) |" in table


def test_each_registry_mode_and_link_is_compared_with_its_own_skopeo() -> None:
    samples = [
        _sample("dockerdrag", 0.4, 0.6, 0.1, image="many"),
        _sample("skopeo", 1.0, 0.5, 0.1, image="many"),
        _sample("dockerdrag", 0.9, 0.7, 0.1, image="many", registry="tls-token"),
        _sample("skopeo", 1.2, 0.6, 0.1, image="many", registry="tls-token"),
        _sample("dockerdrag", 5.0, 1.0, 0.1, link="slow"),
        _sample("skopeo", 100.0, 2.0, 0.1, link="slow"),
        _sample("dockerdrag", 1.0, 0.2, 0.1, image="many", link="slow"),
        _sample("skopeo", 5.0, 0.2, 0.1, image="many", link="slow"),
    ]
    stats = report.summarise(samples)
    assert [(s.registry, s.link, s.vs_skopeo) for s in stats if s.contender == "dockerdrag"] == [
        ("plain", "direct", 0.4),
        ("tls-token", "direct", 0.75),
        ("plain", "slow", 0.05),
        ("plain", "slow", 0.2),
    ]
    results = {r.description: r for r in report.evaluate_targets(stats)}
    tls = results["many / direct / tls-token / docker format: wall vs skopeo"]
    assert (tls.measured, tls.limit, tls.status) == ("0.750", "<= 0.500", "FAIL")
    assert results["many / direct / docker format: wall vs skopeo"].status == "PASS"
    big_slow = results["big / slow / docker format: wall vs skopeo"]
    assert (big_slow.measured, big_slow.status) == ("0.050", "PASS")
    many_slow = results["many / slow / docker format: wall vs skopeo"]
    assert (many_slow.measured, many_slow.limit, many_slow.status) == ("0.200", "<= 0.150", "FAIL")
    assert "| many | tls-token | direct | 1 | dockerdrag | 0.90 |" in report.raw_table(samples)


def test_a_ratio_just_over_its_limit_never_reads_as_the_limit() -> None:
    samples = [
        _sample("dockerdrag", 8.30, 10.0, 0.8, link="shaped"),
        _sample("skopeo", 110.25, 44.0, 0.7, link="shaped"),
        _sample("dockerdrag", 0.50, 0.5, 0.2, image="many"),
        _sample("skopeo", 1.0, 1.1, 0.2, image="many"),
    ]
    results = {r.description: r for r in report.evaluate_targets(report.summarise(samples))}
    shaped = results["big / shaped / docker format: wall vs skopeo"]
    assert (shaped.measured, shaped.limit, shaped.status) == ("0.0753", "<= 0.075", "FAIL")
    many = results["many / direct / docker format: wall vs skopeo"]
    assert (many.measured, many.status) == ("0.500", "PASS")  # at the limit: as it is
