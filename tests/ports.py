"""Loopback ports for the programs the tests and benchmarks start.

A port is checked free by binding it, then handed to a program that binds it a moment later. Two
things can take it in between, and both made start-ups fail under load:
- a client connection's local port: the kernel picks those from its ephemeral range, so ports are
  chosen below that range;
- another process of the same run (pytest-xdist workers run modules side by side) that checked the
  same port and has not bound it yet: each worker draws from its own slice of the range.
Within one process a port is never handed out twice.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

# Slices of the range below the ephemeral ports: one per pytest-xdist worker (gw0, gw1, ...), and
# a random one for a process outside pytest-xdist (a benchmark script, a single-process run).
_SLICES = 8
_SPAN = 12000
_HANDED_OUT: set[tuple[str, int]] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _slice() -> range:
    low = _ephemeral_low()
    start = max(1024, low - _SPAN)
    size = (low - start) // _SLICES
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) % _SLICES if worker.startswith("gw") and worker[2:].isdigit() \
        else random.Random(os.getpid()).randrange(_SLICES)
    return range(start + index * size, start + (index + 1) * size)


def _bindable(ip: str, port: int, udp: bool) -> bool:
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    try:
        for kind in kinds:
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.bind((ip, port))
    except OSError:
        return False
    return True


def free_port(ip: str = "127.0.0.1", udp: bool = False) -> int:
    """A port free on ``ip`` for TCP (and UDP when asked: Alertmanager's gossip uses both)."""
    ports = _slice()
    offset = random.randrange(len(ports))
    for step in range(len(ports)):
        port = ports[(offset + step) % len(ports)]
        if (ip, port) not in _HANDED_OUT and _bindable(ip, port, udp):
            _HANDED_OUT.add((ip, port))
            return port
    raise RuntimeError(f"no free port on {ip} in {ports.start}-{ports.stop - 1}")
