"""Byte arithmetic shared by the settings and the renderers: a share of a container's memory limit
in whole MiB (JVM heaps, Go memory limits, the store gateway's pools). No project imports."""

from __future__ import annotations

MIB = 2**20


def mib_share(total_bytes: float, percent: float = 100) -> int:
    """``percent`` of ``total_bytes``, rounded down to whole MiB."""
    return int(total_bytes * percent / 100 // MIB)
