"""Kernel socket buffers for the UDP sockets that carry many peers' traffic (SIP signalling, RTP)."""

from __future__ import annotations

import contextlib
import socket


def size_buffers(sock: socket.socket, wanted: int) -> int:
    """Ask for `wanted` bytes of receive and send buffer; returns the receive buffer the kernel granted. The
    kernel caps the size at net.core.rmem_max / wmem_max without an error, so callers log a cap they care about."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, wanted)
    # Linux reports twice the size asked for (the other half is its bookkeeping allowance).
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
