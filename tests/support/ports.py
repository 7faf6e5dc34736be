"""Ports for the test suite's SIP peers, RTP sockets and exchanges' media ranges.

"Bind port 0, note the number, close" hands out a port that is free only until someone else takes it: the kernel
gives the same ephemeral ports to every process (the other pytest worker, SIPp, the exchange's own sockets), and a
random slice of 30000–60000 for an exchange's RTP range lies inside that ephemeral range (32768–60999 here). A
SIPp that then cannot bind its port exits at once, and the test waits for a call that never comes (CI, once).

So every port the tests hand out comes from pools outside the kernel's ephemeral range, each pool split into one
slice per pytest-xdist worker (no two workers ever get the same port), and each slice handed out round-robin (a
worker does not get a port back while it may still be about to be bound), from a random place in the slice (another
test run on the same machine rarely walks the same ports). Each pick is still checked by binding.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

# Slices per pool: pytest-xdist workers beyond this share slices (CI runs 2, a developer perhaps 4).
WORKER_SLICES = 4


def worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw0", "gw1", …; absent without xdist
    digits = name.removeprefix("gw")
    return int(digits) % WORKER_SLICES if digits.isdigit() else 0


def _free(port: int, width: int, *, tcp: bool) -> bool:
    """Whether `width` consecutive ports from `port` are free on UDP (and on TCP, when asked) right now."""
    sockets: list[socket.socket] = []
    try:
        for offset in range(width):
            kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM) if tcp else (socket.SOCK_DGRAM,)
            for kind in kinds:
                sock = socket.socket(socket.AF_INET, kind)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port + offset))
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()
    return True


@dataclass
class Pool:
    """Ports in `ranges` ([low, high) each) of one kind, `step` apart; this worker uses its own slice of them, in
    turn. A slice is large enough that a worker comes back to a port only after a long while: a port handed out
    for later (an exchange's trunk address, bound only when a test plays the trunk) stays its test's."""

    ranges: tuple[tuple[int, int], ...]
    step: int
    tcp: bool = False
    _cursor: Iterator[int] | None = field(default=None, repr=False)
    _size: int = field(default=0, repr=False)

    def take(self, width: int | None = None) -> int:
        """A start port whose next `width` ports (default: the step) are free now."""
        if self._cursor is None:
            every = [port for low, high in self.ranges for port in range(low, high - self.step + 1, self.step)]
            self._size = len(every) // WORKER_SLICES
            ports = every[worker_index() * self._size : (worker_index() + 1) * self._size]
            # From a random place in the slice: test runs on one machine at once (several checkouts) then rarely
            # walk the same ports in step.
            first = random.randrange(len(ports))
            self._cursor = itertools.cycle(ports[first:] + ports[:first])
        width = width or self.step
        for _ in range(self._size):
            port = next(self._cursor)
            if _free(port, width, tcp=self.tcp):
                return port
        raise RuntimeError(f"no free port in this worker's slice of {self.ranges}")


# SIP signalling: free on UDP and TCP, with the next one free on TCP too (baresip puts SIP over TLS on port + 1).
SIP = Pool(((2000, 10000), (61000, 65500)), step=2, tcp=True)
# A SIPp's or a test socket's RTP: an even port with the next three free (RTP, RTCP, and SIPp's video pair).
PEER_MEDIA = Pool(((10000, 18000),), step=4)
# An exchange's or a media engine's RTP range: 400 ports apart, so a test can put a second node above the first.
ENGINE_RANGE = Pool(((18000, 32400),), step=400)


def sip_port() -> int:
    return SIP.take(2)


def server_port() -> int:
    """A port for a test's own server (HTTP, SMTP, PostgreSQL): free on TCP and UDP."""
    return SIP.take(1)


def peer_media_port() -> int:
    return PEER_MEDIA.take()


def engine_range(width: int = 200) -> int:
    """The first port of a free range of `width` ports (an even number: RTP/RTCP pairs) for an exchange's RTP."""
    return ENGINE_RANGE.take(width)


def udp_listening(port: int, owner: int | None = None) -> bool:
    """Whether a UDP socket is bound to 127.0.0.1:`port` (or to every address) — with `owner`, one held by that
    process or a child of it (SIPp runs under `timeout`), not by whoever else may hold the port. Read from the
    kernel's tables without touching the port: binding it to find out could take it from the process about to bind
    it."""
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    with open("/proc/net/udp") as table:
        next(table)
        inodes = {fields[9] for line in table if (fields := line.split())[1] in wanted}
    if owner is None or not inodes:
        return bool(inodes)
    return any(_socket_inodes(pid) & inodes for pid in _family(owner))


def _family(pid: int) -> list[int]:
    """`pid` and its children (one level: enough for `timeout sipp …`)."""
    family = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    # The field after the parenthesised command name is the state, then the parent's pid.
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            if parent == pid:
                family.append(int(entry))
    return family


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        pass  # gone meanwhile
    return inodes
