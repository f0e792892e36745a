"""Byte counts, rates and durations in the units people read: ``167.3 MB``, ``29.8 s``.

Sizes are decimal (1 kB = 1000 bytes), as ``docker pull`` and most download
tools show them.
"""

from __future__ import annotations

_UNITS = ("kB", "MB", "GB", "TB", "PB")


def format_bytes(count: float) -> str:
    """``512 B``, ``11.4 kB``, ``167.3 MB``, ``1.1 GB``."""
    if count < 1000:
        return f"{max(0, int(count))} B"
    value = float(count)
    for unit in _UNITS:
        value /= 1000
        if value < 999.95 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns


def format_amount(done: float, total: float) -> str:
    """``11.4 of 52.4 MB``: two byte counts in the unit of the larger one."""
    larger = format_bytes(total if total >= done else done)
    unit = larger.split(" ", 1)[1]
    if unit == "B":
        return f"{max(0, int(done))} of {larger}"
    scale = 1000 ** (_UNITS.index(unit) + 1)
    return f"{done / scale:.1f} of {larger}"


def format_rate(bytes_per_second: float) -> str:
    """``42.5 MB/s``."""
    return f"{format_bytes(bytes_per_second)}/s"


def format_seconds(seconds: float) -> str:
    """``0.4 s``, ``29.8 s``, ``4 min 05 s``, ``1 h 02 min``."""
    if seconds < 59.95:
        return f"{max(0.0, seconds):.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:5000``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def plural(count: int, noun: str) -> str:
    """``1 layer``, ``3 layers``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


__all__ = ["address", "format_amount", "format_bytes", "format_rate", "format_seconds", "plural"]
