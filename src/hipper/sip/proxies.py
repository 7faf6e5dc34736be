"""Requests relayed by a trusted SIP edge proxy (Kamailio in front of several nodes, docs/scale-out.md).

Behind the edge every request arrives from the proxy's address, yet authentication is bound to the address of
the phone: a digest nonce is given to one address (docs/security.md "SIP authentication"), failed logins ban a
source, the trunk is trusted by its address. The edge therefore states where it received each request in one
header, `X-Hipper-Source: udp:203.0.113.9:5060` (transport, address, port, like a binding's `source`), after
deleting any copy the sender put in (deploy/kamailio/kamailio.cfg). The header counts only on a request whose
transport source is one of `sip_trusted_proxies`: sent by anyone else it is ignored, so a phone talking to a node
directly cannot claim another address. Where requests go back (Via, a binding's `source`, a leg's peer) stays
the proxy: it owns the NAT binding or the TCP/TLS connection to the phone.
"""

from __future__ import annotations

from hipper.sip.message import Request
from hipper.sip.transport import Peer, is_ip

SOURCE_HEADER = "X-Hipper-Source"


class TrustedProxies:
    def __init__(self, hosts: frozenset[str] = frozenset()) -> None:
        self.hosts = hosts

    def origin(self, request: Request, peer: Peer) -> Peer:
        """Who sent `request`: the address a trusted proxy received it from, else the transport peer itself.

        A request from a trusted proxy without the header (or with one we cannot read) is the proxy's own (its
        OPTIONS probes): it stands for itself, and authenticates like any other source would."""
        if peer.host not in self.hosts:
            return peer
        values = request.headers.get_all(SOURCE_HEADER)
        if not values:
            return peer
        try:
            origin = Peer.parse(values[-1].strip())  # the proxy appends its own after deleting the sender's
        except ValueError:  # ParseError included
            return peer
        return origin if is_ip(origin.host) else peer
