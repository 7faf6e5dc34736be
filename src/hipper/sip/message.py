"""SIP messages: parse and serialise (RFC 3261 §7, §20, §25; RFC 3581 rport; compact forms §7.3.3).

Hand-written because no maintained asyncio SIP library exists for Python (see TELEPHONY-TESTING.md). The
parser is liberal in what it accepts (folded lines §7.3.1, compact header names, case-insensitive names,
comma-separated values, IPv6 references §19.1.1) and strict about what it cannot make sense of: it raises
`ParseError` and never anything else, so a malformed datagram costs one exception, not the server.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

SIP_VERSION = "SIP/2.0"
BRANCH_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: marks a branch made by an RFC 3261 element
MAX_MESSAGE_SIZE = 65535  # the largest UDP datagram; TCP messages are held to the same bound
MAX_HEADERS = 256
_T = TypeVar("_T")

# §7.3.3 compact forms, plus the later RFCs' ones (3515 Refer-To, 3892 Referred-By, 3265 Event, 4028).
COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "r": "Refer-To",
    "b": "Referred-By",
    "o": "Event",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
}

_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Diversion",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "History-Info",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "Min-SE",
        "MIME-Version",
        "Organization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Priority",
        "Privacy",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Replaces",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Service-Route",
        "Session-Expires",
        "Subject",
        "Subscription-State",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}
for _short, _long in COMPACT_FORMS.items():
    _CANONICAL[_short] = _long

# Headers whose grammar is a comma-separated list (§7.3.1): each value is stored on its own. The
# authentication headers are not here: their parameters are separated by commas too.
_LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Path",
        "Service-Route",
        "Allow",
        "Allow-Events",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "History-Info",
        "Diversion",
        "P-Asserted-Identity",
    )
)

REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
# Tokens all (the request line's method is checked against _TOKEN only when it is none of these).
_METHODS = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE", "REFER", "NOTIFY", "PRACK",
     "SUBSCRIBE", "MESSAGE", "PUBLISH")
)  # fmt: skip
_SIP_SCHEMES = ("sip", "sips")
_TRANSPORT = re.compile(r"[A-Za-z0-9\-]+")
_SENT_PROTOCOL = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-]+)\s+(.*)$", re.S)
_HOSTNAME = re.compile(r"^[A-Za-z0-9\-._~%!$&'()*+,;=]+$")


def is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other digits that int() refuses."""
    return text.isascii() and text.isdigit()


class ParseError(ValueError):
    """The bytes are not a SIP message we can understand; `reason` is safe to put in a 400's reason phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical_name(name: str) -> str:
    return _CANONICAL.get(name.lower(), name)


# A header name as written (any case, compact form) → (its canonical name, that lower-cased: the lookup key).
# Names come from our code and from peers; bounded so that a peer inventing names cannot grow it without end.
_NAMES: dict[str, tuple[str, str]] = {}
# Entries of each of the parse caches here (names, host:port, URIs, name-addrs): a full cache is dropped whole.
_MAX_CACHED = 4096
# Only texts this short are kept (names, host:port, URIs): the caches are bounded in entries, and a sender of long
# texts (a 60 KB URI in every request) would otherwise pin 4,096 of them — hundreds of MB — before any
# authentication. Real names, hosts and URIs are far shorter.
_MAX_CACHED_TEXT = 256


def _keep(cache: dict[str, _T], text: str, value: _T) -> None:
    """Remember a parse's answer for `text`: short texts only, and the whole cache dropped when it is full."""
    if len(text) <= _MAX_CACHED_TEXT:
        if len(cache) >= _MAX_CACHED:
            cache.clear()
        cache[text] = value


def _names(name: str) -> tuple[str, str]:
    names = _NAMES.get(name)
    if names is None:
        canonical = canonical_name(name)
        names = (canonical, canonical.lower())
        # Only names without surrounding whitespace: the parser looks a header line's name up before stripping it.
        if name == name.strip():
            _keep(_NAMES, name, names)
    return names


def _key(name: str) -> str:
    names = _NAMES.get(name)
    return (names or _names(name))[1]


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is not inside "quotes" or <angle brackets> (§7.3.1, §20.10)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for index, char in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "<":
            depth += 1
        elif char == ">":
            depth = max(0, depth - 1)
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if quoted:
        raise ParseError("unterminated quoted string")
    parts.append(text[start:])
    return parts


_ESCAPED = re.compile(r"\\(.)")
_QUOTED_DISPLAY = re.compile(r'"(?:[^"\\]|\\.)*"')


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        return _ESCAPED.sub(r"\1", inner) if "\\" in inner else inner
    return value


def parse_params(text: str) -> dict[str, str | None]:
    """`;a=b;flag;c="x y"` → {"a": "b", "flag": None, "c": "x y"}; names are lower-cased (§7.3.1)."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    # Without quotes or angle brackets a plain split is what the quote-aware one would give (the usual case).
    quoted = '"' in text or "<" in text
    for part in _split_outside_quotes(text, ";") if quoted else text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            raise ParseError("empty parameter name")
        params[name] = (_unquote(value.strip()) if quoted else value.strip()) if sep else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    out = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif value == "" or _TOKEN.match(value) or _HOSTNAME.match(value):
            out.append(f";{name}={value}")
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f';{name}="{escaped}"')
    return "".join(out)


def split_hostport(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` → (host, port); IPv6 hosts are returned without brackets.

    A call's messages carry the same few host:port texts again and again (≈ 30 splits per call): each text's
    answer is kept (a tuple, shared safely), bounded like `_NAMES`; what does not parse raises every time."""
    found = _HOSTPORTS.get(text)
    if found is None:
        found = _split_hostport(text)
        _keep(_HOSTPORTS, text, found)
    return found


_HOSTPORTS: dict[str, tuple[str, int | None]] = {}


def _split_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError("unterminated IPv6 reference")
        host = text[1:end]
        rest = text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ParseError("bad IPv6 reference") from None
    else:
        host, _, rest = text.partition(":")
        rest = ":" + rest if _ else ""
    port: int | None = None
    if rest:
        if not rest.startswith(":") or not is_number(rest[1:]) or len(rest) > 6:
            raise ParseError("bad port")
        port = int(rest[1:])
        if not 0 < port < 65536:
            raise ParseError("port out of range")
    if not host or (":" not in host and not _HOSTNAME.match(host)):
        raise ParseError("bad host")
    return host, port


def format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def format_hostport(host: str, port: int | None) -> str:
    return format_host(host) if port is None else f"{format_host(host)}:{port}"


@dataclass
class URI:
    """A SIP or SIPS URI (§19.1); any other scheme (tel:, urn:) is kept opaque in `user`."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> URI:
        """Each call is a new URI (the caller may change it); its parts are kept per text, bounded like
        `_NAMES`: a call's messages name the same few URIs (the request line, From, To, Contact) again and again."""
        kept = _URIS.get(text)
        if kept is None:
            uri = cls._parse(text)
            _keep(_URIS, text, (uri.scheme, uri.host, uri.user, uri.password, uri.port, dict(uri.params), uri.headers))
            return uri
        scheme, host, user, password, port, params, headers = kept
        return cls(scheme, host, user, password, port, dict(params), headers)

    @classmethod
    def _parse(cls, text: str) -> URI:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        lowered = scheme.lower()
        if not colon or (lowered not in _SIP_SCHEMES and (not scheme or not _TOKEN.match(scheme))):
            raise ParseError("bad URI scheme")
        scheme = lowered
        if scheme not in ("sip", "sips"):
            if not rest or any(c.isspace() for c in rest):
                raise ParseError("bad URI")
            return cls(scheme=scheme, host="", user=rest)
        rest, _, headers = rest.partition("?")
        user: str | None = None
        password: str | None = None
        if "@" in rest:
            userinfo, _, rest = rest.rpartition("@")
            user, pcolon, pw = userinfo.partition(":")
            password = pw if pcolon else None
            if not user:
                raise ParseError("empty user in URI")
        hostport, _, param_text = rest.partition(";")
        host, port = split_hostport(hostport)
        return cls(
            scheme=scheme,
            host=host.lower(),
            user=user,
            password=password,
            port=port,
            params=parse_params(param_text),
            headers=headers,
        )

    def __str__(self) -> str:
        if self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.user}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        text = f"{self.scheme}:{userinfo}{format_hostport(self.host, self.port)}{format_params(self.params)}"
        return text + (f"?{self.headers}" if self.headers else "")

    @property
    def transport(self) -> str:
        return (self.params.get("transport") or "udp").lower()

    @property
    def aor(self) -> str:
        """The address-of-record form used as a registration key: scheme, user and host only (§10.3 step 5)."""
        user = f"{self.user}@" if self.user else ""
        return f"{self.scheme}:{user}{format_host(self.host)}"


# URI.parse's kept parts: scheme, host, user, password, port, params (copied for every URI made), headers.
_URIS: dict[str, tuple[str, str, str | None, str | None, int | None, dict[str, str | None], str]] = {}
# NameAddr.parse's kept answers: never handed out, copied (URI and params) for every NameAddr made.
_NAME_ADDRS: dict[str, NameAddr] = {}


@dataclass
class NameAddr:
    """A From/To/Contact/Route value (§20.10, §25.1 name-addr / addr-spec) with its header parameters."""

    uri: URI
    display_name: str = ""
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False  # a Contact of "*" (§10.2.2)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Each call is a new NameAddr with a new URI (the caller may change them); each text's answer is kept,
        bounded like `URI.parse`'s: a call's requests carry the same From and To four or five times each."""
        kept = _NAME_ADDRS.get(text)
        if kept is None:
            parsed = cls._parse(text)
            _keep(_NAME_ADDRS, text, parsed)
            kept = parsed
        uri = kept.uri
        return cls(
            URI(uri.scheme, uri.host, uri.user, uri.password, uri.port, dict(uri.params), uri.headers),
            kept.display_name,
            dict(kept.params),
            kept.wildcard,
        )

    @classmethod
    def _parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if text == "*":
            return cls(uri=URI("sip", "*"), wildcard=True)
        search_from = 0
        if text.startswith('"'):
            # A quoted display name may itself contain '<' (RFC 4475 §3.1.1.x): skip past its closing quote.
            match = _QUOTED_DISPLAY.match(text)
            if match is None:
                raise ParseError("unterminated quoted display name")
            search_from = match.end()
        if "<" in text[search_from:]:
            open_at = text.index("<", search_from)
            close_at = text.find(">", open_at)
            if close_at < 0:
                raise ParseError("unterminated <URI>")
            display = text[:open_at].strip()
            if display.startswith('"'):
                display = _unquote(display)
            uri = URI.parse(text[open_at + 1 : close_at])
            return cls(uri=uri, display_name=display, params=parse_params(text[close_at + 1 :]))
        # addr-spec without brackets: every ';' after the host belongs to the header (§20.10).
        hostpart_at = text.find("@")
        semicolon = text.find(";", hostpart_at + 1)
        if semicolon < 0:
            return cls(uri=URI.parse(text))
        return cls(uri=URI.parse(text[:semicolon]), params=parse_params(text[semicolon:]))

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        display = ""
        if self.display_name:
            escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


@dataclass
class Via:
    """One Via value (§20.42, §18.2.1 received, RFC 3581 rport)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        text = text.strip()
        transport, space, rest = text[8:].partition(" ")
        if not (text.startswith("SIP/2.0/") and space and _TRANSPORT.fullmatch(transport)):
            # Whitespace around the slashes is legal (RFC 4475 §3.1.1.1), so rebuild the protocol first.
            match = _SENT_PROTOCOL.match(text)
            if not match:
                raise ParseError(f"bad Via: {text.partition(' ')[0][:20]}")
            transport, rest = match.group(1), match.group(2)
        sent_by, _, param_text = rest.lstrip().partition(";")
        host, port = split_hostport(sent_by)
        return cls(transport=transport.upper(), host=host, port=port, params=parse_params(param_text))

    def __str__(self) -> str:
        return f"{SIP_VERSION}/{self.transport} {format_hostport(self.host, self.port)}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not is_number(parts[0]) or len(parts[0]) > 10 or not _TOKEN.match(parts[1]):
        raise ParseError("bad CSeq")
    number = int(parts[0])
    if number >= 2**31:  # §8.1.1.5
        raise ParseError("CSeq out of range")
    return number, parts[1].upper()


# A header value as the code gives it: text, or a typed value that is serialised here once and kept as the header's
# parse (so the message's own accessors never parse back what we built). A typed value handed over is the
# header's from then on: never change it in place (build a new one and set it).
HeaderValue = str | NameAddr | Via


class Headers:
    """An ordered, case-insensitive multimap; list headers (§7.3.1) hold one value per entry.

    Beside the entries it keeps their names lower-cased, in the same order: a call looks headers up ≈ 75 times,
    and lower-casing every stored name on every lookup was ≈ 900 `str.lower` per call (docs/performance.md).
    A lookup lower-cases the name asked for once (`_key`, cached per spelling) and compares with `list.index`.

    It also keeps the parse of first values (`parsed`): typed values given to `add`/`prepend`/`set` are their
    own parse, and received values are parsed on first access only, so headers nobody reads stay text. A kept
    parse is always the parse of the header's present first value: every method that changes a header's first
    value replaces or drops its parse, so a lookup of a kept parse is one dict lookup (a call reads its messages'
    Via, From, To and CSeq ≈ 65 times).
    """

    __slots__ = ("_items", "_keys", "_parsed")

    def __init__(self, items: list[tuple[str, str]] | None = None, keys: list[str] | None = None) -> None:
        """`keys`, when given, are the names of `items` lower-cased already (the parser has them)."""
        self._items: list[tuple[str, str]] = items or []
        self._keys: list[str] = keys if keys is not None else [_key(name) for name, _ in self._items]
        # lower-cased name → (the raw first value it was parsed from, its parse), dropped when that value changes;
        # "*" + name → (all the values, the parse of each), checked against the values.
        self._parsed: dict[str, tuple[object, Any]] = {}

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, name: str) -> str | None:
        names = _NAMES.get(name)
        try:
            return self._items[self._keys.index((names or _names(name))[1])][1]
        except ValueError:
            return None

    def get_all(self, name: str) -> list[str]:
        wanted = _key(name)
        if wanted not in self._keys:
            return []
        return [item[1] for key, item in zip(self._keys, self._items, strict=True) if key == wanted]

    def _first(self, key: str, value: HeaderValue) -> str:
        """The text of `value`, which becomes the first value of `key`: its parse when typed, else none kept."""
        parsed = self._parsed
        if isinstance(value, str):
            if parsed:
                parsed.pop(key, None)
                parsed.pop("*" + key, None)
            return value
        text = str(value)
        parsed[key] = (text, value)
        if parsed:
            parsed.pop("*" + key, None)
        return text

    def add(self, name: str, value: HeaderValue) -> None:
        canonical, key = _NAMES.get(name) or _names(name)
        parsed = self._parsed
        if isinstance(value, str):
            text = value  # a first value has no parse kept (none is kept for a header that is absent)
        else:
            text = str(value)
            if key not in self._keys:
                parsed[key] = (text, value)
        if parsed and key in self._keys:
            parsed.pop("*" + key, None)  # the list of values changes
        self._items.append((canonical, text))
        self._keys.append(key)

    def prepend(self, name: str, value: HeaderValue) -> None:
        canonical, key = _NAMES.get(name) or _names(name)
        self._items.insert(0, (canonical, self._first(key, value)))
        self._keys.insert(0, key)

    def set(self, name: str, value: HeaderValue) -> None:
        """Replace every value of `name` by one, keeping the place of the first."""
        canonical, wanted = _NAMES.get(name) or _names(name)
        try:
            index = self._keys.index(wanted)
        except ValueError:
            self.add(name, value)
            return
        self._items[index] = (canonical, self._first(wanted, value))
        keep = [i for i, key in enumerate(self._keys) if i <= index or key != wanted]
        self._items = [self._items[i] for i in keep]
        self._keys = [self._keys[i] for i in keep]

    def remove(self, name: str) -> None:
        wanted = _key(name)
        if wanted not in self._keys:
            return
        self._forget(wanted)
        keep = [i for i, key in enumerate(self._keys) if key != wanted]
        self._items = [self._items[i] for i in keep]
        self._keys = [self._keys[i] for i in keep]

    def pop_first(self, name: str) -> str | None:
        key = _key(name)
        try:
            index = self._keys.index(key)
        except ValueError:
            return None
        self._forget(key)
        del self._keys[index]
        return self._items.pop(index)[1]

    def _forget(self, key: str) -> None:
        if self._parsed:
            self._parsed.pop(key, None)
            self._parsed.pop("*" + key, None)

    def copy(self) -> Headers:
        copied = Headers(list(self._items), list(self._keys))
        copied._parsed = dict(self._parsed)
        return copied

    def parsed(self, name: str, parse: Callable[[str], _T]) -> _T:
        """`parse` of the first value of `name`, kept until that value changes."""
        names = _NAMES.get(name) or _names(name)
        key = names[1]
        kept = self._parsed.get(key)
        if kept is not None:
            parsed: _T = kept[1]
            return parsed
        try:
            value = self._items[self._keys.index(key)][1]
        except ValueError:
            raise ParseError(f"missing {names[0]}") from None
        parsed = parse(value)
        self._parsed[key] = (value, parsed)
        return parsed

    def parsed_all(self, name: str, parse: Callable[[str], _T]) -> list[_T]:
        """`parse` of every value of `name` (kept while the values stay the same); [] when there is none."""
        values = tuple(self.get_all(name))
        if not values:
            return []
        key = "*" + _key(name)
        kept = self._parsed.get(key)
        if kept is not None and kept[0] == values:
            parsed: list[_T] = kept[1]
            return parsed
        parsed = [parse(value) for value in values]
        self._parsed[key] = (values, parsed)
        return parsed

    def share_parsed(self, other: Headers, *names: str) -> None:
        """Take over what `other` parsed of these headers where the first values are the same (they were copied
        here: no parsing them again)."""
        for name in names:
            key = _key(name)
            kept = other._parsed.get(key)
            if kept is not None and kept[0] == self.get(name):
                self._parsed[key] = kept

    def forget_parsed(self) -> None:
        self._parsed.clear()


class Message:
    """What requests and responses share: headers, body and typed accessors for the mandatory headers.

    The accessors of single headers (`from_`, `to`, `top_via`, `cseq`) keep what they parsed beside the raw value
    it came from, and parse again only when that header's value changed: a call's messages go through the
    transaction layer, the dialog and the B2BUA, which asked for the same From, To and Via ≈ 13 times each
    (docs/performance.md). Headers the exchange set from typed values (`headers.add("From", name_addr)`) are
    never parsed at all. The objects handed out are therefore shared: read them, never change them in place
    (build a new header value and set it, as `stamp_via` does).
    """

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def first_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        lines = [self.first_line()]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def forget_parsed(self) -> None:
        """Drop what the accessors parsed (they parse again when asked): for messages kept long after use."""
        self.headers.forget_parsed()

    # Typed accessors; each raises ParseError when the header is missing or malformed.
    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise ParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        kept = self.headers._parsed.get("cseq")  # kept parses are current: one lookup (Headers)
        if kept is None:
            return self.headers.parsed("CSeq", _parse_cseq)
        return kept[1]  # type: ignore[no-any-return]

    @property
    def from_(self) -> NameAddr:
        kept = self.headers._parsed.get("from")  # kept parses are current: one lookup (Headers)
        if kept is None:
            return self.headers.parsed("From", NameAddr.parse)
        return kept[1]  # type: ignore[no-any-return]

    @property
    def to(self) -> NameAddr:
        kept = self.headers._parsed.get("to")  # kept parses are current: one lookup (Headers)
        if kept is None:
            return self.headers.parsed("To", NameAddr.parse)
        return kept[1]  # type: ignore[no-any-return]

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(value) for value in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        kept = self.headers._parsed.get("via")  # kept parses are current: one lookup (Headers)
        if kept is None:
            return self.headers.parsed("Via", Via.parse)
        return kept[1]  # type: ignore[no-any-return]

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact, parsed once while they stay the same: the shared list is read, never changed."""
        return self.headers.parsed_all("Contact", NameAddr.parse)

    def int_header(self, name: str) -> int | None:
        value = self.headers.get(name)
        if value is None:
            return None
        value = value.strip()
        if not is_number(value) or len(value) > 10:
            raise ParseError(f"bad {canonical_name(name)}")
        return int(value)


class Request(Message):
    def __init__(self, method: str, uri: URI, headers: Headers | None = None, body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    def first_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"

    def validate(self) -> None:
        """The checks of §8.2 that do not need state: mandatory headers present and well-formed."""
        self.top_via  # noqa: B018 - each accessor raises ParseError on a missing/bad header
        self.from_  # noqa: B018
        self.to  # noqa: B018
        self.call_id  # noqa: B018
        _, method = self.cseq
        if method != self.method:
            raise ParseError("CSeq method does not match the request method")
        self.int_header("Max-Forwards")  # None only when absent; a bad value raises "bad Max-Forwards"
        self.int_header("Expires")


# A request kept long after use (a lingering transaction, an ACKed branch: up to 32 s after the call) is kept as
# text, to rebuild it unparsed if it is asked for: method, URI, its header lines as one tuple of (name, value) string
# pairs (which the garbage collector stops tracking once it has been over them), body.
HeaderLines = tuple[tuple[str, str], ...]
RequestText = tuple[str, URI, HeaderLines, bytes]


def request_text(request: Request) -> RequestText:
    return (request.method, request.uri, tuple(request.headers), request.body)


def request_from_text(text: RequestText) -> Request:
    method, uri, lines, body = text
    return Request(method, uri, Headers(list(lines)), body)


_ECHOED = frozenset(("via", "from", "to", "call-id", "cseq"))  # what a response copies from its request (§8.2.6.2)
_ECHOED_ROUTED = _ECHOED | {"record-route"}
_DIALOG_MAKING = frozenset(("INVITE", "SUBSCRIBE", "REFER"))


class Response(Message):
    def __init__(self, status: int, reason: str = "", headers: Headers | None = None, body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason or REASONS.get(status, "Unknown")

    def first_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"

    @classmethod
    def for_request(
        cls, request: Request, status: int, reason: str = "", *, to_tag: str | None = None, body: bytes = b""
    ) -> Response:
        """A response carrying the request's Via, From, To, Call-ID and CSeq (§8.2.6.2).

        Raw header values are copied, so this works even for a request whose CSeq or To did not parse: that
        is what lets us answer malformed requests with a 400 instead of dropping them.
        """
        items: list[tuple[str, str]] = []
        keys: list[str] = []
        tagged: NameAddr | None = None
        request_headers = request.headers
        # §12.1.1: a response that may make a dialog carries the request's Record-Route, in order, so that the
        # proxies that asked to stay in the path (an edge in front of several nodes) see the dialog's requests.
        echoed = _ECHOED_ROUTED if 100 < status < 300 and request.method in _DIALOG_MAKING else _ECHOED
        tagging = bool(to_tag) and status > 100
        for item, key in zip(request_headers._items, request_headers._keys, strict=True):
            if key in echoed:
                if key == "to" and tagging:
                    name, value = item
                    if ";tag=" not in value.lower().replace(" ", ""):
                        kept = request_headers._parsed.get("to")
                        if kept is not None and kept[0] == value and tagged is None:
                            # The request's To as parsed, plus our tag: the response's To needs no parsing either.
                            to: NameAddr = kept[1]
                            tagged = NameAddr(to.uri, to.display_name, {**to.params, "tag": to_tag})
                        item = (name, f"{value};tag={to_tag}")
                items.append(item)
                keys.append(key)
        headers = Headers(items, keys)
        request_parsed = request_headers._parsed
        if request_parsed:
            # The first Via, From and CSeq are the request's, unchanged: so is their parse; the To's, if untagged.
            parsed = headers._parsed
            for key in ("via", "from", "cseq"):
                kept = request_parsed.get(key)
                if kept is not None:
                    parsed[key] = kept
            kept = request_parsed.get("to")
            if kept is not None and tagged is None and kept[0] == headers.get("To"):
                parsed["to"] = kept
        if tagged is not None:
            headers._parsed["to"] = (headers.get("To"), tagged)
        return cls(status, reason, headers, body)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # §7.3: header values are UTF-8, but one bad byte should not cost the whole message; Latin-1 never fails.
        return data.decode("latin-1")


def split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """Split at the empty line that ends the headers; None if there is none yet."""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], data[end + 4 :]
    end = data.find(b"\n\n")  # bare LF line ends, which some stacks still send
    if end >= 0:
        return data[:end], data[end + 2 :]
    return None


def parse_head(head: bytes) -> tuple[Request | Response, int | None]:
    """Parse the start line and headers; return the message (without body) and its Content-Length."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = _decode(head)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    # §7.5: ignore empty lines before the start line (keepalive CRLFs on streams).
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise ParseError("empty message")
    start = lines[0].strip()
    if len(lines) > 4 * MAX_HEADERS:
        raise ParseError("too many headers")  # before any work per line: lines are cheap to send
    parsed = None if "\n " in text or "\n\t" in text else _plain_headers(lines)
    if parsed is None:
        items, keys, lengths = _headers_of(lines)
    else:
        items, keys, lengths = parsed
    headers = Headers(items, keys)
    message: Request | Response
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2 or parts[0].upper() != SIP_VERSION:
            raise ParseError("bad status line")
        if not is_number(parts[1]) or len(parts[1]) != 3 or not 100 <= int(parts[1]) <= 699:
            raise ParseError("bad status code")
        message = Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)
    else:
        parts = start.split()
        if len(parts) != 3 or (parts[0] not in _METHODS and not _TOKEN.match(parts[0])):
            raise ParseError("bad request line")
        if parts[2].upper() != SIP_VERSION:
            raise ParseError("unsupported SIP version")
        message = Request(parts[0], URI.parse(parts[1]), headers)
    if not lengths:
        return message, None
    if len(lengths) > 1 and len({value.strip() for value in lengths}) > 1:
        # Two different lengths would let a stream peer smuggle one message inside another.
        raise ParseError("conflicting Content-Length")
    length = lengths[0].strip()
    if not is_number(length) or len(length) > 10:
        raise ParseError("bad Content-Length")
    return message, int(length)


def _header_names(name: str) -> tuple[str, str]:
    """A header name's canonical spelling and its lookup key. Names seen before (ours, and every common one) were
    checked then: one dict lookup instead of a regex."""
    name = name.strip()
    names = _NAMES.get(name)
    if names is None:
        if not name or not _TOKEN.match(name):
            raise ParseError("bad header line")
        names = _names(name)
    return names


def _plain_headers(lines: list[str]) -> tuple[list[tuple[str, str]], list[str], list[str]] | None:
    """The headers of `lines[1:]` in one pass, when no line is folded (the caller checked): what `_headers_of`
    gives, without its list per header. None when a list header needs the quote-aware split (a comma in quotes
    or brackets): `_headers_of` then does it all, so that errors are found in the same order."""
    items: list[tuple[str, str]] = []
    keys: list[str] = []
    lengths: list[str] = []
    count = 0
    known = _NAMES.get  # a name met before, as written (kept names have no surrounding whitespace)
    for line in itertools.islice(lines, 1, None):
        name, colon, value = line.partition(":")
        if not colon:
            if not line.strip():
                continue
            raise ParseError("bad header line")
        canonical, key = known(name) or _header_names(name)
        count += 1
        if count > MAX_HEADERS:
            raise ParseError("too many headers")
        value = value.strip()
        if "," in value and key in _LIST_HEADERS:
            if '"' in value or "<" in value:
                return None
            for part in value.split(","):
                part = part.strip()
                if part:
                    items.append((canonical, part))
                    keys.append(key)
            continue
        items.append((canonical, value))
        keys.append(key)
        if key == "content-length":
            lengths.append(value)
    return items, keys, lengths


def _headers_of(lines: list[str]) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """The headers of `lines[1:]`, folded lines joined (§7.3.1), list headers one value per entry; and the values
    of Content-Length."""
    current: list[Any] | None = None
    raw: list[list[Any]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if current is None:
                raise ParseError("continuation line before the first header")
            current[1] += " " + line.strip()  # §7.3.1 folding: a continuation is one SP
            continue
        name, colon, value = line.partition(":")
        if not colon:
            if not line.strip():
                continue
            raise ParseError("bad header line")
        current = [_header_names(name), value.strip()]
        raw.append(current)
        if len(raw) > MAX_HEADERS:
            raise ParseError("too many headers")
    items: list[tuple[str, str]] = []
    keys: list[str] = []
    lengths: list[str] = []
    for (canonical, key), value in raw:
        if "," in value and key in _LIST_HEADERS:
            # Without quotes or angle brackets (Allow, Supported, most Vias) a plain split is what the quote-aware
            # one gives, ≈ 20 times faster than its loop over every character (a phone's Allow: ≈ 5 µs).
            quoted = '"' in value or "<" in value
            for part in _split_outside_quotes(value, ",") if quoted else value.split(","):
                part = part.strip()
                if part:
                    items.append((canonical, part))
                    keys.append(key)
        else:
            items.append((canonical, value))
            keys.append(key)
            if key == "content-length":
                lengths.append(value)
    return items, keys, lengths


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one whole message (a datagram, or one framed message from a stream).

    On datagrams a Content-Length larger than the body is an error (§18.3); a missing one means "to the
    end of the datagram"; a smaller one truncates.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise ParseError("message too large")
    parts = split_head(data)
    if parts is None:
        # A datagram may end right after its last header line (no body, no final empty line).
        head, body = data.rstrip(b"\r\n"), b""
    else:
        head, body = parts
    message, length = parse_head(head)
    if length is None:
        if stream:
            raise ParseError("missing Content-Length on a stream transport")
        message.body = body
    elif length > len(body):
        raise ParseError("Content-Length larger than the body")
    else:
        message.body = body[:length]
    return message


def new_branch(token: str) -> str:
    return f"{BRANCH_COOKIE}{token}"
