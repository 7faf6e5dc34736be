"""Digest authentication for SIP (RFC 3261 §22.4 on RFC 2617; RFC 7616 §3.4 SHA-256; RFC 8760 for SIP).

Server side only: issue challenges, verify credentials against a stored HA1 (we never hold passwords).

Nonces are stateless: a timestamp and a random part, signed with an HMAC that also covers the address the
challenge went to and the request method it was for. So checking a nonce needs no table and no database: a
nonce that is expired, forged, issued to another address or for another method is answered with a fresh
challenge carrying `stale=true` (RFC 7616 §3.3), which a phone answers at once without asking its user, and a
captured answer cannot be replayed from elsewhere or turned into a request of another kind.

Answers must use `qop=auth` (RFC 7616 §3.4: the RFC 2069 form without it has no nonce count and no client
nonce, so one captured answer works again and again), and the digest `uri` must be the Request-URI (RFC 7616
§3.4.6): an answer captured for a call to 201 does not place a call to +252…. The nonce count must grow with
every use of a nonce (RFC 7616 §3.4.5), and a nonce that authenticated an INVITE is used up: every new call
costs a fresh challenge, so no captured INVITE answer can be sent again, even with another nonce count.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
import sys
import time
from dataclasses import dataclass
from enum import Enum

from hipper.sip.message import URI, ParseError

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _hash(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password), what a device's credentials are stored as (RFC 7616 §3.4.2)."""
    return _hash(algorithm, f"{username}:{realm}:{password}")


def response(
    *,
    algorithm: str,
    ha1_hex: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The request-digest (RFC 7616 §3.4.1; without qop, RFC 2069 compatibility of RFC 2617 §3.2.2.1)."""
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop:
        return _hash(algorithm, f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hash(algorithm, f"{ha1_hex}:{nonce}:{ha2}")


_ESCAPED = re.compile(r"\\(.)")
_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


def parse_credentials(value: str) -> dict[str, str]:
    """`Digest username="a", realm="b", nc=00000001, ...` → lower-cased names to unquoted values."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ParseError("not Digest credentials")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _AUTH_PARAM.match(rest, position)
        if match is None or match.end() == position:
            raise ParseError("bad Authorization header")
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = raw[1:-1]
            if "\\" in raw:
                raw = _ESCAPED.sub(r"\1", raw)
        params[name] = raw
        position = match.end()
    return params


class Verdict(Enum):
    OK = "ok"
    STALE = "stale"  # no usable nonce (expired, forged, another address's or method's, used up): challenge again
    WRONG = "wrong"  # wrong password, or an answer we refuse whatever the password (no qop, another uri)


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    # Why, for the log line and metric of a refusal (never shown to the client: one answer for every reason).
    reason: str = ""


OK = Outcome(Verdict.OK)


@dataclass(frozen=True)
class Credentials:
    """A device's digest secrets for one realm."""

    username: str
    realm: str
    ha1_md5: str
    ha1_sha256: str

    def ha1_for(self, algorithm: str) -> str | None:
        return {"MD5": self.ha1_md5, "SHA-256": self.ha1_sha256}.get(algorithm)


def same_uri(digest_uri: str, request_uri: URI) -> bool:
    """The digest `uri` names the Request-URI (RFC 7616 §3.4.6; RFC 3261 §19.1.4 for what counts as equal).

    Scheme, user, host and port must match (an omitted port is the scheme's default); URI parameters are not
    compared: they cannot redirect a request to another user, and phones do not all copy them.
    """
    try:
        uri = URI.parse(digest_uri)
    except ParseError:
        return False

    def key(value: URI) -> tuple[str, str | None, str, int]:
        default = 5061 if value.scheme == "sips" else 5060
        return value.scheme, value.user, value.host.lower(), value.port or default

    return key(uri) == key(request_uri)


# A nonce count that marks a nonce as used up (an INVITE's): no later count is greater.
_USED_UP = sys.maxsize
# Stateless challenges to one request's retransmissions carry the same nonce within a step of this many seconds.
NONCE_STEP = 16.0
# How many nonces' counts are remembered; beyond, the expired ones are forgotten, then the oldest.
NONCE_MEMORY = 50_000
_CHECKED_MEMORY = 4096
_NONCE_COUNT = re.compile(r"[0-9a-fA-F]{8}")


class Authenticator:
    def __init__(
        self,
        realm: str,
        *,
        nonce_lifetime: float = 300.0,
        secret: bytes | None = None,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    ) -> None:
        self.realm = realm
        self.nonce_lifetime = nonce_lifetime
        # Nodes that share the secret accept each other's nonces (a phone re-registering through another node).
        self._secret = secret or secrets.token_bytes(32)
        unknown = set(algorithms) - set(ALGORITHMS)
        if unknown or not algorithms:
            raise ValueError(f"unsupported digest algorithms: {sorted(unknown)}")
        self.algorithms = algorithms
        # Per nonce that authenticated a request in this process: the highest nonce count seen and when the nonce
        # was issued (a replay to another node is not caught, but its nonce is bound to the address it went to).
        self._nonce_counts: dict[str, tuple[int, float]] = {}
        # (nonce, source, method) → when it was issued, for nonces whose signature checked out: an authenticated
        # INVITE's nonce is checked four times (the stack's screening, authenticate's, verify's, _remember), each
        # an HMAC. Only good nonces are kept (a forged one costs its HMAC every time, as before); bounded.
        self._issued_checked: dict[tuple[str, str, str], float] = {}

    def _sign(self, stamp: bytes, source: str, method: str) -> bytes:
        bound = stamp + b"\0" + method.encode("ascii", "replace") + b"\0" + source.encode("ascii", "replace")
        return hmac.new(self._secret, bound, hashlib.sha256).digest()[:16]

    def nonce(self, source: str, method: str, now: float | None = None, *, request_key: str = "") -> str:
        """A nonce for a challenge sent to host `source` for a `method` request.

        With `request_key` (what identifies the request: Call-ID, From, top Via, CSeq) the nonce is the same for
        every retransmission of that request within a 16 s step: a stateless challenge answers a retransmitted
        request with the same response (RFC 3261 §8.2.7), as a transaction would, and a phone (or SIPp) that
        already answered the first one does not take the second for a new challenge.
        """
        # Wall-clock time, not monotonic: a nonce must stay verifiable on another node and after a restart.
        issued = time.time() if now is None else now
        if request_key:
            issued -= issued % NONCE_STEP
            unique = hmac.new(self._secret, request_key.encode("utf-8", "replace"), hashlib.sha256).digest()[:8]
        else:
            unique = secrets.token_bytes(8)
        stamp = struct.pack(">d", issued) + unique
        return base64.urlsafe_b64encode(stamp + self._sign(stamp, source, method)).decode("ascii").rstrip("=")

    def nonce_age(self, nonce: str, source: str, method: str, now: float | None = None) -> float | None:
        """Seconds since we issued `nonce` to `source` for `method`, or None when we did not."""
        issued = self._issued(nonce, source, method)
        return None if issued is None else (time.time() if now is None else now) - issued

    def _issued(self, nonce: str, source: str, method: str) -> float | None:
        issued = self._issued_checked.get((nonce, source, method))
        if issued is not None:
            return issued
        issued = self._check_nonce(nonce, source, method)
        if issued is not None:
            if len(self._issued_checked) >= _CHECKED_MEMORY:
                self._issued_checked.clear()
            self._issued_checked[(nonce, source, method)] = issued
        return issued

    def _check_nonce(self, nonce: str, source: str, method: str) -> float | None:
        if len(nonce) != 43:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (ValueError, TypeError):
            return None
        if len(raw) != 32 or not hmac.compare_digest(raw[16:], self._sign(raw[:16], source, method)):
            return None
        (issued,) = struct.unpack(">d", raw[:8])
        return float(issued)

    def challenges(self, source: str, method: str, *, stale: bool = False, request_key: str = "") -> list[str]:
        """WWW-Authenticate values in the configured order (RFC 8760 §2.4: the client takes the first it supports)."""
        nonce = self.nonce(source, method, request_key=request_key)
        values = []
        for algorithm in self.algorithms:
            value = f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", algorithm={algorithm}'
            if stale:
                value += ", stale=true"
            values.append(value)
        return values

    def screen(self, params: dict[str, str], method: str, uri: URI, source: str) -> Outcome:
        """What can be decided without the user's secrets: the form of the answer, its uri and its nonce.

        Cheap and stateless, so it runs before any database lookup or transaction; OK means "worth verifying".
        """
        # The nonce first: a refusal then always answers a challenge this address received, so what is counted
        # against an address (bans) cannot be sent by someone spoofing it.
        age = self.nonce_age(params.get("nonce", ""), source, method)
        # -5: a node whose clock is a little behind the one that issued the nonce.
        if age is None or age < -5 or age > self.nonce_lifetime:
            return Outcome(Verdict.STALE, "nonce")
        if params.get("algorithm", "MD5").upper() not in ALGORITHMS:
            return Outcome(Verdict.WRONG, "algorithm")
        if params.get("realm") != self.realm:
            return Outcome(Verdict.WRONG, "realm")
        if params.get("qop") != "auth":
            return Outcome(Verdict.WRONG, "qop")  # no qop (RFC 2069), or auth-int, which is not offered
        if not params.get("cnonce") or not _NONCE_COUNT.fullmatch(params.get("nc", "")):
            return Outcome(Verdict.WRONG, "malformed")
        if not same_uri(params.get("uri", ""), uri):
            return Outcome(Verdict.WRONG, "uri")
        return OK

    def verify(self, params: dict[str, str], method: str, uri: URI, source: str, credentials: Credentials) -> Outcome:
        """Check digest credentials for a `method` request to `uri` from host `source` (RFC 3261 §22.4)."""
        screened = self.screen(params, method, uri, source)
        if screened.verdict != Verdict.OK:
            return screened
        algorithm = params.get("algorithm", "MD5").upper()
        stored = credentials.ha1_for(algorithm) or ""
        nonce = params["nonce"]
        # The digest is computed even for credentials that cannot match (an unknown user is checked against
        # blank ones): the time taken does not tell which accounts exist.
        expected = response(
            algorithm=algorithm,
            ha1_hex=stored,
            method=method,
            uri=params["uri"],
            nonce=nonce,
            qop="auth",
            nc=params["nc"],
            cnonce=params["cnonce"],
        )
        # Bytes: compare_digest refuses str with non-ASCII characters, which a client may well send.
        matches = hmac.compare_digest(expected.encode(), params.get("response", "").lower().encode("utf-8", "replace"))
        if not matches or not stored or params.get("username") != credentials.username:
            return Outcome(Verdict.WRONG, "password")
        # RFC 7616 §3.4.5: the nonce count must grow with each use of a nonce; a repeated one is a replay (a
        # captured REGISTER sent again, perhaps with another Contact). The sender gets a fresh challenge, which a
        # genuine phone answers at once.
        count = int(params["nc"], 16)
        seen, _ = self._nonce_counts.get(nonce, (0, 0.0))
        if count <= seen:
            return Outcome(Verdict.STALE, "replay")
        # An INVITE's nonce is used up (RFC 7616 §5.5, limited-use nonces): one challenge authorises one call, and
        # the phone's next call is challenged afresh. What a captured INVITE answer can still do shrinks to the
        # one call it was made for, on the address it was made from.
        self._remember(nonce, _USED_UP if method == "INVITE" else count, source, method)
        return OK

    def _remember(self, nonce: str, count: int, source: str, method: str) -> None:
        if len(self._nonce_counts) >= NONCE_MEMORY:
            # Forget the nonces that expired (they are refused as stale anyway), then, if still full, the oldest.
            horizon = time.time() - self.nonce_lifetime
            for old in [n for n, (_, issued) in self._nonce_counts.items() if issued < horizon]:
                del self._nonce_counts[old]
            while len(self._nonce_counts) >= NONCE_MEMORY:
                del self._nonce_counts[next(iter(self._nonce_counts))]
        self._nonce_counts[nonce] = (count, self._issued(nonce, source, method) or time.time())
