"""Request dependencies: the database session, the authenticated user, the administrator, the step-up."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.api.state import AppState
from hipper.domain.context import UserContext
from hipper.domain.moments import aware
from hipper.store.models import AuthSession, Company, Group, ServiceSetting, User
from hipper.store.users import call_center_number_of, context_from, numbers_from

bearer = HTTPBearer(auto_error=False, description="The session token from POST /api/v1/auth/login")


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.hipper
    return state


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; committing publishes the outbox (see `commit`)."""
    async with app_state(request).sessions() as session:
        yield session


async def read_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for a request that only reads, in one statement: no transaction on PostgreSQL."""
    state = app_state(request)
    async with (state.read_sessions or state.sessions)() as session:
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
    # Stored settings documents read together with the session (`authenticated_with_document`), by service;
    # None when the user has no row for it yet.
    documents: dict[str, dict[str, Any] | None] = field(default_factory=dict)

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


# The same, plus the user's stored document of one service (a settings GET then costs one statement). Joined
# on the session's own user, so it can only ever be the authenticated user's document.
_LOOKUP_WITH_DOCUMENT = _LOOKUP.add_columns(ServiceSetting.data).outerjoin(
    ServiceSetting,
    and_(ServiceSetting.user_id == AuthSession.user_id, ServiceSetting.service == bindparam("service")),
)


async def lookup(session: AsyncSession, token: str, service: str | None = None) -> Authenticated | None:
    """The live session behind a token, or None when it is unknown or has expired.

    With `service`, the user's stored document of that service comes along (`Authenticated.documents`).
    """
    # The user's company and department come along in the same query: `Authenticated.numbers` needs no further
    # query, and a later `session.get` (store.users.numbers_of) finds them in the identity map.
    row: Sequence[Any] | None
    document: dict[str, Any] | None = None
    if service is None:
        row = (await session.execute(_LOOKUP, {"token_hash": hash_token(token)})).one_or_none()
    else:
        parameters = {"token_hash": hash_token(token), "service": service}
        row = (await session.execute(_LOOKUP_WITH_DOCUMENT, parameters)).one_or_none()
        document = row[-1] if row is not None else None
    if row is None or aware(row[0].expires_at) <= datetime.now(UTC):
        return None
    auth = Authenticated(user=row[1], auth_session=row[0], company=row[2], group=row[3], call_center_number=row[4])
    if service is not None:
        auth.documents[service] = document
    return auth


def not_logged_in(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


async def authenticated(
    request: Request,
    session: Annotated[AsyncSession, Depends(db_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Authenticated:
    return await _authenticate(request, session, credentials, None)


def authenticated_with_document(service: str, *, read_only: bool = False) -> Callable[..., Awaitable[Authenticated]]:
    """`authenticated`, also reading the user's stored document of `service` in the same statement.

    `read_only`: the request reads nothing else, so its session need not be a transaction (`read_db_session`).
    """

    async def dependency(
        request: Request,
        session: Annotated[AsyncSession, Depends(db_session)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Authenticated:
        return await _authenticate(request, session, credentials, service)

    async def read_only_dependency(
        request: Request,
        session: Annotated[AsyncSession, Depends(read_db_session)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Authenticated:
        return await _authenticate(request, session, credentials, service)

    return read_only_dependency if read_only else dependency


async def _authenticate(
    request: Request, session: AsyncSession, credentials: HTTPAuthorizationCredentials | None, service: str | None
) -> Authenticated:
    if credentials is None:
        raise not_logged_in("log in first: no session token")
    auth = await lookup(session, credentials.credentials, service)
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
