"""The suite's wait for a SIP peer to listen (tests/support/ports.py) asks whether *that* peer holds the port."""

from __future__ import annotations

import os
import socket
import subprocess

from tests.support.ports import sip_port, udp_listening


def test_a_port_counts_as_listening_only_for_the_process_that_holds_it() -> None:
    port = sip_port()
    assert not udp_listening(port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", port))
        assert udp_listening(port)
        assert udp_listening(port, os.getpid())
        # Another process (here one that holds nothing) waiting for the port is not fooled by ours.
        other = subprocess.Popen(["sleep", "30"])
        try:
            assert not udp_listening(port, other.pid)
        finally:
            other.kill()
            other.wait()
