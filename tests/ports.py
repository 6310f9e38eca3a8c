"""One free-port helper for every test that starts a server on a port it must name in advance
(another process's command line, a URL in its settings)."""

from __future__ import annotations

import random
import socket

# below the kernel's ephemeral range (32768-60999 by default): bind(0) elsewhere and every
# outgoing connection take their ports from that range, so a port picked here is not taken by
# them between this check and the server's own bind (seen failing with "address already in use")
PRIVATE_PORTS = range(20000, 32000)


def free_port(taken: set[int] | None = None) -> int:
    """A port in PRIVATE_PORTS that nothing listens on now (and not in `taken`)."""
    for _ in range(500):
        port = random.choice(PRIVATE_PORTS)
        if taken and port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port in the private range")


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port(ports))
    return sorted(ports, key=lambda _: random.random())
