"""The loopback port allocator the modules that start programs share (tests/ports.py)."""

import socket

from tests import ports


def test_each_worker_draws_below_the_ephemeral_range_from_a_slice_of_its_own(monkeypatch):
    slices = []
    for index in range(ports._SLICES):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        slices.append(set(ports._slice()))
    assert all(len(s) > 1000 for s in slices)
    assert sum(len(s) for s in slices) == len(set().union(*slices)), "slices overlap"
    assert max(max(s) for s in slices) < ports._ephemeral_low()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    assert all(ports.free_port() in slices[2] for _ in range(20))


def test_a_port_is_handed_out_once_and_a_bound_one_never(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw5")
    monkeypatch.setattr(ports, "_HANDED_OUT", set())
    taken = range(ports._slice().start, ports._slice().start + 40)
    held = []
    for port in taken:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            held.append(sock)
        except OSError:
            sock.close()
    try:
        handed = [ports.free_port() for _ in range(300)]
        assert len(set(handed)) == len(handed)
        assert not set(handed) & {s.getsockname()[1] for s in held}
        udp = ports.free_port(udp=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", udp))
    finally:
        for sock in held:
            sock.close()
