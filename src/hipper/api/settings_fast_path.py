"""GET and PUT /me/services/{service} answered without FastAPI's router, when everything goes right.

Issue 9's target is 500 settings PUTs per second on one core with p99 < 10 ms. Of the ≈ 1 ms of CPU the app spent
on a PUT, about half was the framework around the endpoint: Starlette matched the path against the routes one
by one (twice: FastAPI 0.165 tries every candidate, then restores its scope), FastAPI solved the dependencies
(the bearer scheme, the settings lookup, the body), read the body through a `Request`, validated the answer
against the response model once more and ran an exit-stack and an exception middleware (docs/performance.md).

This middleware (innermost of ours: inside the body guard, so a PUT's body is already bounded and strict JSON)
answers a settings GET or PUT itself, with the same steps and the same parts as the routes in
`routers/services.py`: the same session lookup (`deps.find_settings_caller`, joined on the session's own user), the
licence gate, the body validated by the service's model exactly as FastAPI validates it, the same domain rules
(`change`, step-up included), the same one-round-trip write of the document and its outbox event, the same
`published()` wake-up and the same answer bytes (pydantic's `dump_json` by alias, as FastAPI's `serialize_json`).

It only ever answers a 200. Whenever anything is not the plain case — no or another kind of credentials, an
unknown or expired session, a missing licence, a body that does not validate or breaks a rule, a step-up needed,
an administrator-only document, any exception before the write — it hands the request on to FastAPI untouched
(the body replayed as it was read), and the routes answer it as before: every refusal keeps its status, code
and reasons because the same code produces it. Nothing is written before that decision, so a hand-on cannot
write twice. An exception from the write itself goes to the app's exception handlers, as in FastAPI.

The routes stay registered: the OpenAPI document, and every request this middleware hands on, use them.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hipper.api.deps import SettingsCaller, autocommit_of, find_settings_caller, writer_of
from hipper.api.limits import is_json
from hipper.api.routers.services import OWN_ROUTES, current_document, new_document
from hipper.api.state import AppState
from hipper.domain.services import SERVICES, ServiceSettings
from hipper.store import service_settings
from hipper.store.db import PooledReads, Reads

_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True)
class RouteLabel:
    """What the request metrics and log read of the matched route (`metrics.route_template`): its template."""

    path: str


@dataclass(frozen=True)
class _Service:
    settings_class: type[ServiceSettings]
    label: RouteLabel


class _HandOn(Exception):
    """Not the plain case: FastAPI's route answers."""


def _bearer_token(scope: Scope) -> str | None:
    """The token as FastAPI's `HTTPBearer` reads it; None for anything it would not take as is (the route then
    answers, 401 included)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token if scheme.lower() == "bearer" and token and " " not in token else None
    return None


class SettingsFastPath:
    """ASGI middleware: see the module's docstring. `of(app)` finds it in a built app."""

    def __init__(self, app: ASGIApp, api_prefix: str) -> None:
        self.app = app
        prefix = f"{api_prefix}/me/services/"
        self.prefix = prefix
        self.services = {
            prefix + name: _Service(settings_class, RouteLabel(prefix + name))
            for name, settings_class in SERVICES.items()
            if name not in OWN_ROUTES
        }
        self.answered = 0  # requests answered here rather than handed on (tests, bench.api.profile)

    @staticmethod
    def of(app: FastAPI) -> SettingsFastPath | None:
        """The instance in `app`'s middleware stack (built by its first request), if any."""
        layer: Any = app.middleware_stack
        for _ in range(64):
            if layer is None or isinstance(layer, SettingsFastPath):
                return layer
            layer = getattr(layer, "app", None)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "PUT") or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        service = self.services.get(scope["path"])
        token = _bearer_token(scope) if service is not None else None
        if service is None or token is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            await self._get(scope, receive, send, service, token)
        else:
            await self._put(scope, receive, send, service, token)

    async def _get(self, scope: Scope, receive: Receive, send: Send, service: _Service, token: str) -> None:
        try:
            caller = await _caller(scope["app"].state.hipper, service.settings_class, token)
            document = current_document(caller, service.settings_class)
        except Exception:
            await self.app(scope, receive, send)
            return
        self.answered += 1
        await _answer(scope, send, service, caller.user_id, document)

    async def _put(self, scope: Scope, receive: Receive, send: Send, service: _Service, token: str) -> None:
        settings_class = service.settings_class
        if settings_class.administrator_only or not is_json(scope):
            await self.app(scope, receive, send)  # a refusal (read_only) or a body FastAPI judges itself
            return
        messages: list[Message] = []
        try:
            body = await _read_body(receive, messages)
        except Exception as exc:  # the body guard's 413 or 422 (HTTPException), raised from `receive`
            await self.app(scope, _raising(exc), send)
            return
        replay = _replay(messages, receive)
        if body is None:  # the client went away while sending
            await self.app(scope, replay, send)
            return
        state: AppState = scope["app"].state.hipper
        engine = autocommit_of(state)
        outcome: tuple[int, ServiceSettings] | Exception | None
        if engine.dialect.name == "postgresql" and not settings_class.related_services:
            # The lookup and the write on one pooled connection: one checkout per PUT instead of two. Not for a
            # service whose rules read related documents (voicemail): those come through a session of their own,
            # and holding one connection while waiting for a second can jam the pool under concurrent PUTs.
            async with engine.connect() as connection:
                outcome = await _change_and_save(
                    state, settings_class, token, body, PooledReads(connection), connection
                )
        else:
            outcome = await _change_and_save(state, settings_class, token, body, None, None)
        if outcome is None:  # not the plain case: the route answers (nothing was written)
            await self.app(scope, replay, send)
        elif isinstance(outcome, Exception):  # the write failed: the app's exception handlers answer
            await _handled(scope, receive, send, outcome)
        else:
            state.events.published()  # after the commit, as the route does
            self.answered += 1
            await _answer(scope, send, service, *outcome)


async def _change_and_save(
    state: AppState,
    settings_class: type[ServiceSettings],
    token: str,
    body: bytes,
    reads: Reads | None,
    connection: AsyncConnection | None,
) -> tuple[int, ServiceSettings] | Exception | None:
    """The route's steps: the user and the new document written with its event (user id, document); None when
    something is not the plain case (nothing written); the exception the write raised. Only the body's parsing is
    this path's own; the document is the route's `new_document`."""
    try:
        caller = await _caller(state, settings_class, token, reads)
        # As FastAPI validates the body parameter (`ModelField.validate`: the model's validate_python on the
        # decoded JSON), then as the route reads it (`model_dump(mode="json", exclude_unset=True)`).
        parsed = json.loads(body) if body else None
        if not isinstance(parsed, dict):
            return None
        proposed = settings_class.model_validate(parsed, from_attributes=True).model_dump(
            mode="json", exclude_unset=True
        )
        new = await new_document(state, caller, settings_class, proposed)
    except Exception:
        return None
    try:
        await service_settings.save_and_commit(
            autocommit_of(state), caller.user_id, new, writer_of(state), connection=connection
        )
    except Exception as exc:
        return exc
    return caller.user_id, new


async def _caller(
    state: AppState, settings_class: type[ServiceSettings], token: str, reads: Reads | None = None
) -> SettingsCaller:
    """The routes' lookup (`deps.find_settings_caller`); _HandOn without a live session (the route's 401)."""
    caller = await find_settings_caller(state, token, settings_class.service, reads)
    if caller is None:
        raise _HandOn
    return caller


async def _read_body(receive: Receive, messages: list[Message]) -> bytes | None:
    """The whole body (the body guard has bounded it), keeping the messages to replay; None: disconnected."""
    chunks = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _raising(exc: Exception) -> Receive:
    async def receive() -> Message:
        raise exc

    return receive


async def _handled(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """What Starlette's exception middleware does: the app's handler for the exception's class, else raise."""
    app: FastAPI = scope["app"]
    for cls in type(exc).__mro__:
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            response = handler(Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)
            return
    raise exc


async def _answer(scope: Scope, send: Send, service: _Service, user_id: int, document: ServiceSettings) -> None:
    # What FastAPI sends for a route with a response model and the default response class: pydantic's JSON of
    # the validated model, by alias, as `Response(content, media_type="application/json")`.
    body = document.__pydantic_serializer__.to_json(document, by_alias=True)
    scope["route"] = service.label  # for the request metrics and log (`metrics.route_template`)
    scope.setdefault("state", {})["user_id"] = user_id  # who asked, never the token (request log)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode()), _JSON],
        }
    )
    await send({"type": "http.response.body", "body": body})
