"""The links a benchmark runs over: loopback, or the shaping proxy with a named profile.

``--link`` takes a comma list of profile names (or ``both``: direct and shaped, ``all``:
every profile). ``direct`` talks to the registry; every other profile puts
``benchmarks/shaper.py`` in front of it with that profile's round trip and
per-connection rate.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LinkProfile:
    """One link: ``rtt_ms`` and ``rate_mbps`` are None for the direct (unshaped) link."""

    name: str
    title: str
    rtt_ms: float | None = None
    rate_mbps: float | None = None

    @property
    def shaped(self) -> bool:
        return self.rtt_ms is not None

    def describe(self) -> str:
        if not self.shaped:
            return "the registry on loopback"
        return (
            f"through `benchmarks/shaper.py`, +{self.rtt_ms:g} ms round trip "
            f"(+1 RTT per new connection) and {self.rate_mbps:g} MB/s per TCP connection "
            "(no shared cap)"
        )


DIRECT = LinkProfile("direct", "direct (loopback)")
SHAPED = LinkProfile("shaped", "shaped (proxy)", 50.0, 10.0)
SLOW = LinkProfile("slow", "slow (proxy)", 200.0, 5.0)
PROFILES = {profile.name: profile for profile in (DIRECT, SHAPED, SLOW)}
ALIASES = {"both": ("direct", "shaped"), "all": tuple(PROFILES)}


def parse_links(text: str, *, rtt_ms: float, rate_mbps: float) -> list[LinkProfile]:
    """The profiles ``--link`` names, in the order given; ``shaped`` takes the options'
    round trip and rate (``--rtt-ms``, ``--rate-mbps``)."""
    names: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        for name in ALIASES.get(part, (part,)):
            if name not in PROFILES:
                choices = ", ".join([*PROFILES, *ALIASES])
                raise SystemExit(f"unknown link: {name} (choose from {choices})")
            if name not in names:
                names.append(name)
    if not names:
        raise SystemExit("--link names no link")
    custom = dataclasses.replace(SHAPED, rtt_ms=rtt_ms, rate_mbps=rate_mbps)
    return [custom if name == "shaped" else PROFILES[name] for name in names]
