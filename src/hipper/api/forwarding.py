"""Call control asked of one node for a call another node carries (docs/scale-out.md, "Call control").

A call's media and signalling live on the node that took it (Kamailio's dispatcher chose it); the app may talk
to any node (the API is behind any HTTP balancer). A request about a call this node does not carry is sent on,
as it came (the user's bearer token, the body), to the node that writes the user's `active_calls` row for that
call: that node authenticates it again against the shared database and does the work. Its answer is passed back
unchanged. A forwarded request is never forwarded again (no loops between nodes that disagree for a moment).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.apps.call_control import PULL_RING_SECONDS
from hipper.engine.call import call_key
from hipper.store.active_calls import calls_elsewhere

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Hipper-Forwarded"
# Call control answers once its media commands ran, a pull once the device answered (it rings up to
# PULL_RING_SECONDS): the node carrying the call gets that long and a margin before it counts as not answering.
FORWARD_TIMEOUT_SECONDS = PULL_RING_SECONDS + 10.0
# The request's headers the other node needs to answer it as this node would.
PASSED_HEADERS = ("authorization", "content-type", "accept", "accept-language")


class AnsweredElsewhere(Exception):
    """The request was answered by the node carrying the call; `response` goes back to the client as it is."""

    def __init__(self, response: Response) -> None:
        super().__init__("answered by another node")
        self.response = response


def forwarded(request: Request) -> bool:
    return FORWARDED_HEADER in request.headers


async def node_carrying(session: AsyncSession, user_id: int, call_id: str, own_node: str) -> str | None:
    """The API URL of the other live node carrying the user's call `call_id` (the id GET /me/calls shows)."""
    for stored, api_url in await calls_elsewhere(session, user_id, own_node, datetime.now(UTC)):
        # A callback's row holds its id; a SIP call's row its Call-ID, which the API shows as its key.
        if call_id in (stored, call_key(stored)):
            return api_url
    return None


async def nodes_with_calls(session: AsyncSession, user_id: int, own_node: str) -> set[str]:
    return {api_url for _, api_url in await calls_elsewhere(session, user_id, own_node, datetime.now(UTC))}


async def forward(request: Request, api_url: str) -> Response:
    """`request` sent to the node at `api_url`, and its answer."""
    headers = {name: value for name in PASSED_HEADERS if (value := request.headers.get(name)) is not None}
    headers[FORWARDED_HEADER] = "1"
    url = api_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_SECONDS) as client:
            answer = await client.request(request.method, url, content=await request.body(), headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL) as error:  # InvalidURL: a node's api_url that is no URL
        log.warning("api.forward_failed", extra={"url": url, "error": repr(error)})
        # The node carrying the call does not answer: it is stopping or dead, and its calls with it.
        return JSONResponse(
            status_code=503,
            content={"detail": "the node carrying this call does not answer", "code": "node_unreachable"},
            headers={"Retry-After": "5"},
        )
    passed = {"content-type": answer.headers["content-type"]} if "content-type" in answer.headers else {}
    return Response(answer.content, answer.status_code, headers=passed)


async def fetch_json(request: Request, api_url: str) -> Any | None:
    """GET the same path from another node, as the same user; None when it does not answer 200 with JSON."""
    response = await forward(request, api_url)
    if response.status_code != 200:
        return None
    try:
        return json.loads(bytes(response.body))
    except ValueError:
        log.warning("api.forward_not_json", extra={"url": api_url})
        return None
