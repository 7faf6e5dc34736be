"""Request dependencies: the database session, the authenticated user, the administrator, the step-up."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from hipper.api.state import AppState
from hipper.domain.context import UserContext
from hipper.domain.moments import aware
from hipper.store.db import CallPathReads, Reads
from hipper.store.models import AuthSession, Company, Group, ServiceSetting, User
from hipper.store.service_settings import LoopWriter, loop_writer_for
from hipper.store.users import (
    CONTEXT_COLUMNS,
    call_center_number_of,
    context_from,
    context_from_columns,
    context_joins,
    numbers_from,
)

bearer = HTTPBearer(auto_error=False, description="The session token from POST /api/v1/auth/login")


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.hipper
    return state


async def app_state(request: Request) -> AppState:
    """`state_of` as a dependency. Every dependency is a coroutine function: FastAPI runs a plain function in its
    thread pool, a hand-off to a worker thread and back that cost ≈ 8 % of a settings PUT (docs/performance.md)."""
    return state_of(request)


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; committing publishes the outbox (see `commit`)."""
    async with state_of(request).sessions() as session:
        yield session


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Authenticated:
    user: User
    auth_session: AuthSession
    # Held so they stay in the session's identity map (it keeps only weak references) for the request.
    company: Company | None = None
    group: Group | None = None
    # The user's first call-center number (SPEC A4), read with the session: None when there is none.
    call_center_number: str | None = None

    @property
    def numbers(self) -> dict[str, str]:
        """The user's numbers by kind, from what the session lookup read (no further query)."""
        return numbers_from(self.user, self.company, self.group, self.call_center_number)

    @property
    def context(self) -> UserContext:
        return context_from(self.user, self.numbers)

    @property
    def stepped_up(self) -> bool:
        until = self.auth_session.step_up_until
        return until is not None and aware(until) > datetime.now(UTC)


# The call-center number rides along as a scalar subquery, so a settings GET needs only this statement and
# the document's: session, user, company, department and every number in one round trip. Built once with a bound
# parameter: composing the select anew cost ≈ 0.1 ms of CPU per request (docs/performance.md).
_LOOKUP = (
    select(AuthSession, User, Company, Group, call_center_number_of(AuthSession.user_id))
    .join(User, User.id == AuthSession.user_id)
    .outerjoin(Company, Company.id == User.company_id)
    .outerjoin(Group, Group.id == User.group_id)
    .where(AuthSession.token_hash == bindparam("token_hash"))
)


async def lookup(session: AsyncSession, token: str) -> Authenticated | None:
    """The live session behind a token, or None when it is unknown or has expired."""
    # The user's company and department come along in the same query: `Authenticated.numbers` needs no further
    # query, and a later `session.get` (store.users.numbers_of) finds them in the identity map.
    row: Sequence[Any] | None = (await session.execute(_LOOKUP, {"token_hash": hash_token(token)})).one_or_none()
    if row is None or aware(row[0].expires_at) <= datetime.now(UTC):
        return None
    return Authenticated(user=row[1], auth_session=row[0], company=row[2], group=row[3], call_center_number=row[4])


@dataclass(frozen=True)
class SettingsCaller:
    """Who sent a settings request (GET/PUT /me/services/{service}), as plain values: what those routes read of
    the session, the user and their numbers, and the user's stored document of the service (None: no row yet)."""

    user_id: int
    context: UserContext
    step_up_until: datetime | None
    document: dict[str, Any] | None

    @property
    def stepped_up(self) -> bool:
        return self.step_up_until is not None and aware(self.step_up_until) > datetime.now(UTC)


# The settings routes' lookup: the columns they need (no ORM entities) and the user's stored document of the
# requested service, in one statement. The document is joined on the session's own user, so it can only ever be
# the caller's. Run through `CallPathReads`: on SQLite straight on the loop, on PostgreSQL on a pooled connection
# in autocommit (no BEGIN/ROLLBACK) — no ORM session, identity map or transaction around it. Built once.
_CALLER = select(AuthSession.expires_at, AuthSession.step_up_until, User.id, *CONTEXT_COLUMNS, ServiceSetting.data)
SETTINGS_LOOKUP = (
    context_joins(_CALLER.join(User, User.id == AuthSession.user_id))
    .outerjoin(
        ServiceSetting,
        and_(ServiceSetting.user_id == AuthSession.user_id, ServiceSetting.service == bindparam("service")),
    )
    .where(AuthSession.token_hash == bindparam("token_hash"))
)


def autocommit_of(state: AppState) -> AsyncEngine:
    """Where statements that each stand alone go (`store.db.autocommit_engine`)."""
    return state.autocommit or state.engine


def reads_of(state: AppState) -> CallPathReads:
    """The app's `CallPathReads`, opened on first use: on SQLite it is a connection of its own to the database
    file, which must not be opened before the lifespan's migrations made it."""
    if state.reads is None:
        state.reads = CallPathReads(autocommit_of(state))
    return state.reads


async def find_settings_caller(
    state: AppState, token: str, service: str, reads: Reads | None = None
) -> SettingsCaller | None:
    """The live session behind `token` with the user's stored document of `service`, in one read; None when the
    session is unknown or has ended. Shared by the routes' dependency and `settings_fast_path`. `reads`: on a
    connection the caller holds (default: the app's `CallPathReads`)."""
    rows = await (reads or reads_of(state)).rows(SETTINGS_LOOKUP, {"token_hash": hash_token(token), "service": service})
    if not rows or aware(rows[0][0]) <= datetime.now(UTC):
        return None
    _expires_at, step_up_until, user_id, *columns, document = rows[0]
    return SettingsCaller(user_id, context_from_columns(user_id, columns), step_up_until, document)


def writer_of(state: AppState) -> LoopWriter | None:
    """The app's settings `LoopWriter` (SQLite file only), opened on first use like `reads_of`."""
    if state.settings_writer is None:
        state.settings_writer = loop_writer_for(autocommit_of(state)) or False
    return state.settings_writer if isinstance(state.settings_writer, LoopWriter) else None


def settings_caller(service: str) -> Callable[..., Awaitable[SettingsCaller]]:
    """The dependency of the routes of `service`'s document: the caller, with the stored document, in one read."""

    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> SettingsCaller:
        if credentials is None:
            raise not_logged_in("log in first: no session token")
        caller = await find_settings_caller(state_of(request), credentials.credentials, service)
        if caller is None:
            raise not_logged_in("the session has ended: log in again")
        request.state.user_id = caller.user_id  # for the request log (hipper.metrics middleware): never the token
        return caller

    return dependency


def not_logged_in(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


async def authenticated(
    request: Request,
    session: Annotated[AsyncSession, Depends(db_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Authenticated:
    return await _authenticate(request, session, credentials)


async def _authenticate(
    request: Request, session: AsyncSession, credentials: HTTPAuthorizationCredentials | None
) -> Authenticated:
    if credentials is None:
        raise not_logged_in("log in first: no session token")
    auth = await lookup(session, credentials.credentials)
    if auth is None:
        raise not_logged_in("the session has ended: log in again")
    # For the request log (hipper.metrics middleware): who asked, never the token.
    request.state.user_id = auth.user.id
    return auth


async def administrator(auth: Annotated[Authenticated, Depends(authenticated)]) -> Authenticated:
    if auth.user.role != "admin":
        raise HTTPException(403, "this needs the administrator role")
    return auth


Session = Annotated[AsyncSession, Depends(db_session)]
CurrentUser = Annotated[Authenticated, Depends(authenticated)]
Admin = Annotated[Authenticated, Depends(administrator)]
State = Annotated[AppState, Depends(app_state)]


async def commit(session: AsyncSession, state: AppState) -> None:
    """Commit, then publish: listeners are woken only once the change is durable."""
    await session.commit()
    state.events.published()


# Row ids are 32-bit integers in PostgreSQL; a larger id in a path or body would make the driver raise, so the
# API refuses it with a 422 before it reaches the database.
MAX_ROW_ID = 2_147_483_647
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
