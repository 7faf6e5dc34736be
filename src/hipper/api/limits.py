"""Request bodies are bounded while they are read, and JSON bodies are strict JSON (docs/security.md "HTTP and API").

`BodyGuard` wraps the ASGI `receive` of every request. A body longer than its route's limit is refused with a
413 as soon as the Content-Length says so, or, for a chunked body, as soon as the bytes read pass the limit —
before, a 300 MB chunked upload was written to disk before its 413 and a 200 MB JSON login body took 780 MB.
The limit is the `http_max_body_bytes` setting unless the route's endpoint declares its own (`max_body`).

A JSON body is read whole (up to the limit; FastAPI reads it whole anyway) and checked before the app sees it:
UTF-8, nesting at most `MAX_JSON_DEPTH` deep, no NaN/Infinity, no number beyond a double (`1e309`), no lone
surrogate. Each of those made the app answer 500 (or drop the connection) when the 422 tried to serialise the
input; here they are a 422 naming what is wrong, like FastAPI's own `json_invalid`.

The refusals are HTTPExceptions raised from `receive`: FastAPI and Starlette pass those on unchanged (a parse
error would become a 400 "There was an error parsing the body"), so the exception handlers answer them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hipper import metrics

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 32
_LIMIT_ATTRIBUTE = "__hipper_max_body__"
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")
# A JSON string, escapes included: stripped before counting brackets, so "[[[" inside a string does not count.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPENERS, _CLOSERS = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)
# An escaped UTF-16 surrogate: only then can the parsed text hold a lone one (a pair is joined by the parser).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

F = TypeVar("F", bound=Callable[..., Any])


def max_body(limit: int) -> Callable[[F], F]:
    """Give an endpoint its own body limit (uploads): put it under the route decorator."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _LIMIT_ATTRIBUTE, limit)
        return endpoint

    return mark


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        # Connection: close — else uvicorn would keep the connection and read (and discard) the rest of the body
        # to reach the next request: the client's 300 MB would still cross the wire and the server's CPU.
        super().__init__(413, f"body: larger than {limit} bytes", headers={"Connection": "close"})


class MalformedJson(HTTPException):
    def __init__(self, reason: str) -> None:
        super().__init__(422, [{"loc": ["body"], "msg": f"not JSON we accept: {reason}", "type": "json_invalid"}])


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is beyond what a double holds")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(raw: bytes) -> int:
    """How deep arrays and objects nest (brackets inside strings do not count); vectorised, no recursion."""
    structure = np.frombuffer(_STRING.sub(b"", raw), np.uint8)
    if structure.size == 0:
        return 0
    opens = (structure == _OPENERS[0]) | (structure == _OPENERS[1])
    closes = (structure == _CLOSERS[0]) | (structure == _CLOSERS[1])
    return int(np.cumsum(opens.astype(np.int32) - closes.astype(np.int32)).max())


def _too_deep(raw: bytes) -> bool:
    # Nesting can never be deeper than the number of brackets that open: a body with few of them (every settings
    # document) needs no count. `_depth`'s NumPy set-up cost ≈ 0.2 ms, ≈ 7 % of a settings PUT.
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    return _depth(raw) > MAX_JSON_DEPTH


def check_json(raw: bytes) -> None:
    """Raise MalformedJson unless `raw` is strict JSON that every part of the app can handle and echo."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"not UTF-8 (byte {exc.start})") from None
    if _too_deep(raw):
        raise MalformedJson(f"nested more than {MAX_JSON_DEPTH} deep")
    try:
        parsed = json.loads(text, parse_constant=_constant, parse_float=_finite)
    except RecursionError:
        raise MalformedJson("nested too deep") from None
    except ValueError as exc:  # JSONDecodeError included
        raise MalformedJson(str(exc)) from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedJson("a \\u escape is half a UTF-16 surrogate pair") from None


def is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(_JSON_TYPE.match(value.split(b";", 1)[0].strip().decode("latin-1").lower()))
    return False


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyGuard:
    """ASGI middleware: see the module's docstring."""

    def __init__(self, app: ASGIApp, default_limit: int) -> None:
        self.app = app
        self.default_limit = default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        read = 0
        checked = False

        def refuse(reason: str, exc: HTTPException) -> HTTPException:
            client = scope.get("client")
            log.info("http.body_refused", extra={"reason": reason, "path": scope["path"], "peer": client and client[0]})
            metrics.HTTP_REFUSALS.labels(reason).inc()
            return exc

        async def guarded() -> Message:
            nonlocal read, checked
            # Read lazily: by now the router has put the endpoint into the scope, so its own limit is known.
            limit = getattr(scope.get("endpoint"), _LIMIT_ATTRIBUTE, self.default_limit)
            if not checked:
                checked = True
                declared = _declared_length(scope)
                if declared is not None and declared > limit:
                    raise refuse("body_too_large", BodyTooLarge(limit))
                if is_json(scope):
                    body = bytearray()
                    while True:
                        message = await self._count(receive, limit, read, refuse)
                        if message["type"] != "http.request":
                            return message  # the client went away
                        chunk = message.get("body", b"")
                        read += len(chunk)
                        body += chunk
                        if not message.get("more_body", False):
                            break
                    try:
                        if body:  # no body at all is the route's to judge (FastAPI takes it as none)
                            check_json(bytes(body))
                    except MalformedJson as exc:
                        raise refuse("malformed_json", exc) from None
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
            message = await self._count(receive, limit, read, refuse)
            read += len(message.get("body", b""))
            return message

        await self.app(scope, guarded, send)

    @staticmethod
    async def _count(
        receive: Receive, limit: int, read: int, refuse: Callable[[str, HTTPException], HTTPException]
    ) -> Message:
        message = await receive()
        if message["type"] == "http.request" and read + len(message.get("body", b"")) > limit:
            raise refuse("body_too_large", BodyTooLarge(limit))
        return message
