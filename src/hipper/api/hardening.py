"""Browser security headers on every answer, and the operator's endpoints kept from the public
(docs/security.md "HTTP and API").

The app (src/hipper/web) loads only its own files: scripts and styles from this origin, media from `blob:` URLs
it makes itself, no frames. The Content-Security-Policy says exactly that, so an injected script has nowhere to
come from and nowhere to send data; `frame-ancestors 'none'` and X-Frame-Options stop click-jacking;
Referrer-Policy keeps URLs (the event stream's ?token=) out of other sites' logs. Style *attributes* stay
allowed: the app sets a few (indentation of the routing explanation), and they cannot run code.

/metrics and the API documentation tell an attacker what runs and how busy it is: by default only clients on
the loopback address (a Prometheus or an operator on the host) get them, or anyone presenting
`http_operator_token` as a bearer token; `http_operator_access = "open"` restores the old behaviour.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hipper import metrics

log = logging.getLogger(__name__)

APP_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; worker-src 'self'; "
    "manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# JSON answers render nothing; the interactive docs load Swagger UI from its CDN, so they get only the frame rule.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
DOCS_POLICY = "frame-ancestors 'none'"
COMMON = (
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
)


def operator_paths(api_prefix: str) -> tuple[str, ...]:
    return ("/metrics", f"{api_prefix}/docs", f"{api_prefix}/openapi.json", f"{api_prefix}/redoc")


class SecurityHeaders:
    def __init__(self, app: ASGIApp, api_prefix: str) -> None:
        self.app = app
        self.api_prefix = api_prefix
        self.docs = (f"{api_prefix}/docs", f"{api_prefix}/redoc")
        # Built once per policy, not per answer.
        self.extra = {
            policy: (*COMMON, (b"content-security-policy", policy.encode()))
            for policy in (DOCS_POLICY, API_POLICY, APP_POLICY)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(self.docs):
            policy = DOCS_POLICY
        elif path.startswith(self.api_prefix + "/") or path == "/metrics":
            policy = API_POLICY
        else:
            policy = APP_POLICY
        extra = self.extra[policy]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


def _loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def _bearer(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


class OperatorOnly:
    """403 on the operator's endpoints (`operator_paths`) unless `access` and the caller allow them."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...], access: str, token: str) -> None:
        self.app = app
        self.paths = paths
        self.access = access
        self.token = token

    def allowed(self, scope: Scope) -> bool:
        if self.access == "open":
            return True
        if self.token and hmac.compare_digest(_bearer(scope).encode(), self.token.encode()):
            return True
        return self.access == "loopback" and _loopback(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.paths) and not self.allowed(scope):
            client = scope.get("client")
            log.info("http.operator_refused", extra={"path": scope["path"], "peer": client and client[0]})
            metrics.HTTP_REFUSALS.labels("operator_endpoint").inc()
            detail = "the metrics and the API documentation need the operator token (http_operator_token)"
            await JSONResponse({"detail": detail}, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)
