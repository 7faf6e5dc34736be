"""Digest authentication for SIP (RFC 3261 §22.4 on RFC 2617; RFC 7616 §3.4 SHA-256; RFC 8760 for SIP).

Server side only: issue challenges, verify credentials against a stored HA1 (we never hold passwords).
Nonces are stateless: a timestamp plus an HMAC of it under a per-process secret, so verifying one needs no
table, and an expired but genuine nonce is answered with `stale=true` (RFC 2617 §3.2.1) so the phone retries
without asking its user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
import time
from dataclasses import dataclass
from enum import Enum

from hipper.sip.message import ParseError

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
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name] = raw
        position = match.end()
    return params


class Verdict(Enum):
    OK = "ok"
    STALE = "stale"  # the right password on an expired nonce: challenge again with stale=true
    WRONG = "wrong"  # wrong password, forged nonce, or a digest for another request


@dataclass(frozen=True)
class Credentials:
    """A device's digest secrets for one realm."""

    username: str
    realm: str
    ha1_md5: str
    ha1_sha256: str

    def ha1_for(self, algorithm: str) -> str | None:
        return {"MD5": self.ha1_md5, "SHA-256": self.ha1_sha256}.get(algorithm)


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
        # Highest nonce count seen per nonce, in this process (a replay to another node is not caught).
        self._nonce_counts: dict[str, int] = {}

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]

    def nonce(self, now: float | None = None) -> str:
        # Wall-clock time, not monotonic: a nonce must stay verifiable on another node and after a restart.
        stamp = struct.pack(">d", time.time() if now is None else now) + secrets.token_bytes(8)
        return base64.urlsafe_b64encode(stamp + self._sign(stamp)).decode("ascii").rstrip("=")

    def nonce_age(self, nonce: str, now: float | None = None) -> float | None:
        """Seconds since we issued `nonce`, or None when we did not issue it."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 32 or not hmac.compare_digest(raw[16:], self._sign(raw[:16])):
            return None
        (issued,) = struct.unpack(">d", raw[:8])
        return (time.time() if now is None else now) - float(issued)

    def challenges(self, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate values in the configured order (RFC 8760 §2.4: the client takes the first it supports)."""
        nonce = self.nonce()
        values = []
        for algorithm in self.algorithms:
            value = f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", algorithm={algorithm}'
            if stale:
                value += ", stale=true"
            values.append(value)
        return values

    def verify(self, params: dict[str, str], method: str, credentials: Credentials) -> Verdict:
        """Check digest credentials for a request whose method is `method` (RFC 3261 §22.4)."""
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in ALGORITHMS:
            return Verdict.WRONG
        stored = credentials.ha1_for(algorithm)
        nonce = params.get("nonce", "")
        if not stored or params.get("realm") != self.realm or params.get("username") != credentials.username:
            return Verdict.WRONG
        qop = params.get("qop")
        if qop is not None and qop != "auth":
            return Verdict.WRONG  # auth-int is not offered
        if qop and (not params.get("cnonce") or not re.fullmatch(r"[0-9a-fA-F]{8}", params.get("nc", ""))):
            return Verdict.WRONG
        expected = response(
            algorithm=algorithm,
            ha1_hex=stored,
            method=method,
            uri=params.get("uri", ""),
            nonce=nonce,
            qop=qop,
            nc=params.get("nc", ""),
            cnonce=params.get("cnonce", ""),
        )
        if not hmac.compare_digest(expected, params.get("response", "").lower()):
            return Verdict.WRONG
        age = self.nonce_age(nonce)
        # The digest is right, so the device knows the password; a nonce we cannot vouch for (expired, from
        # before a restart, or from the future) only earns a fresh challenge with stale=true.
        if age is None or age < -5 or age > self.nonce_lifetime:
            return Verdict.STALE
        if qop:
            # RFC 7616 §3.3 / RFC 2617 §3.2.2: the nonce count must grow with each use of a nonce; a repeated one
            # is a replay (a captured REGISTER sent again, perhaps with another Contact). The sender gets a fresh
            # challenge, which a genuine phone answers at once.
            count = int(params["nc"], 16)
            if count <= self._nonce_counts.get(nonce, 0):
                return Verdict.STALE
            self._remember_count(nonce, count)
        return Verdict.OK

    def _remember_count(self, nonce: str, count: int) -> None:
        if len(self._nonce_counts) >= 50_000:
            # Forget the nonces that expired (they are refused as stale anyway), then, if still full, the oldest.
            for old in [n for n in self._nonce_counts if (self.nonce_age(n) or 0) > self.nonce_lifetime]:
                del self._nonce_counts[old]
            while len(self._nonce_counts) >= 50_000:
                del self._nonce_counts[next(iter(self._nonce_counts))]
        self._nonce_counts[nonce] = count
