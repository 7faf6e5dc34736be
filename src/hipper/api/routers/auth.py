"""Log in, log out, the PIN, the step-up and the password (SPEC A1–A3)."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from hipper import metrics
from hipper.api.deps import Authenticated, CurrentUser, Session, State, commit, hash_token
from hipper.api.errors import ApiProblem
from hipper.api.state import AppState
from hipper.config import Settings
from hipper.domain.pin import check_password, check_pin
from hipper.store import lockouts
from hipper.store.events import add_event
from hipper.store.models import AuthSession
from hipper.store.users import by_username

router = APIRouter(prefix="/auth", tags=["auth"])
log = logging.getLogger(__name__)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=200)
    device_name: str = Field(default="", max_length=200)


class LoginResponse(BaseModel):
    token: str
    expires_at: datetime
    pin_required: bool = Field(description="true until the user has set a PIN (first login)")


class PinRequest(BaseModel):
    pin: str = Field(max_length=8, description="4–8 digits")
    current_pin: str | None = Field(default=None, max_length=8, description="needed to change an existing PIN")


class StepUpRequest(BaseModel):
    pin: str = Field(max_length=8)


class StepUpResponse(BaseModel):
    step_up_until: datetime


class PasswordRequest(BaseModel):
    current_password: str = Field(max_length=200)
    new_password: str = Field(max_length=200)


LOCKED = "too many failed attempts: this account is locked for a few minutes"
PIN_LOCKED = "too many wrong PINs: try again later"


def password_limit(settings: Settings) -> lockouts.Limit:
    return lockouts.Limit(settings.login_attempts, settings.login_lockout_seconds)


def pin_limit(settings: Settings) -> lockouts.Limit:
    return lockouts.Limit(settings.pin_attempts, settings.pin_lockout_seconds)


async def _attempt(
    session: AsyncSession,
    state: AppState,
    user_id: int,
    counter: lockouts.Counter,
    limit: lockouts.Limit,
    secret_hash: str | None,
    secret: str,
    *,
    locked: ApiProblem,
    wrong: ApiProblem,
) -> None:
    """One guarded attempt at a password or PIN: its place is claimed first (store/lockouts.py: at most the limit
    is ever checked, however many arrive at once), then the hash is checked. A locked account spends the hash all
    the same: the answer's timing must not tell a locked account from an unknown name (which is hashed too)."""
    name = counter.value
    if not await lockouts.claim(session, user_id, counter, limit, _now()):
        await state.hasher.verify(None, secret)
        log.info("auth.locked", extra={"user_id": user_id, "counter": name})
        metrics.LOCKOUT_REFUSALS.labels(name).inc()
        raise locked
    if not await state.hasher.verify(secret_hash, secret):
        log.info(f"auth.wrong_{name}", extra={"user_id": user_id})
        metrics.AUTH_FAILURES.labels(name).inc()
        raise wrong
    await lockouts.succeeded(session, user_id, counter)


async def _check_password(
    user_id: int, password_hash: str, password: str, session: AsyncSession, state: AppState
) -> None:
    """429 when locked, 401 when wrong (`_attempt`)."""
    await _attempt(
        session, state, user_id, lockouts.Counter.PASSWORD, password_limit(state.settings), password_hash, password,
        locked=ApiProblem(429, "account_locked", LOCKED),
        wrong=ApiProblem(401, "wrong_credentials", "wrong username or password"),
    )  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


@router.post("/login", response_model=LoginResponse)
async def login(body: LoginRequest, session: Session, state: State) -> LoginResponse:
    settings = state.settings
    now = _now()
    user = await by_username(session, body.username)
    if user is None:
        # An unknown name is locked out exactly like a real account, so the answers never tell which
        # usernames exist (OWASP authentication guidance); the hash is spent either way.
        await state.hasher.verify(None, body.password)
        metrics.AUTH_FAILURES.labels("password").inc()
        if state.unknown_logins.failed(body.username, now, settings.login_attempts, settings.login_lockout_seconds):
            raise ApiProblem(429, "account_locked", LOCKED)
        raise ApiProblem(401, "wrong_credentials", "wrong username or password")
    user_id, pin_required = user.id, user.pin_hash is None
    await _check_password(user_id, user.password_hash, body.password, session, state)
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(days=settings.session_days)
    session.add(
        AuthSession(
            token_hash=hash_token(token),
            user_id=user_id,
            device_name=body.device_name,
            created_at=now,
            expires_at=expires,
        )
    )
    await session.commit()
    return LoginResponse(token=token, expires_at=expires, pin_required=pin_required)


@router.post("/logout", status_code=204)
async def logout(auth: CurrentUser, session: Session) -> None:
    await session.delete(auth.auth_session)
    await session.commit()


async def verify_pin(auth: Authenticated, pin: str, session: AsyncSession, state: AppState) -> None:
    """Check a PIN, counting the attempt first (store/lockouts.py); too many lock the step-up for a while."""
    await _attempt(
        session, state, auth.user.id, lockouts.Counter.PIN, pin_limit(state.settings), auth.user.pin_hash, pin,
        locked=ApiProblem(429, "pin_locked", PIN_LOCKED), wrong=ApiProblem(403, "wrong_pin", "wrong PIN"),
    )  # fmt: skip


@router.put("/pin", status_code=204)
async def set_pin(body: PinRequest, auth: CurrentUser, session: Session, state: State) -> None:
    """Set the PIN at first login; changing it later needs the current PIN."""
    if auth.user.pin_hash is not None:
        if body.current_pin is None:
            raise ApiProblem(403, "current_pin_required", "changing the PIN needs the current PIN (current_pin)")
        await verify_pin(auth, body.current_pin, session, state)
    check_pin(body.pin)
    auth.user.pin_hash = await state.hasher.hash(body.pin)
    add_event(session, auth.user.id, "profile.changed", {"pin_set": True})
    await commit(session, state)


@router.post("/step-up", response_model=StepUpResponse)
async def step_up(body: StepUpRequest, auth: CurrentUser, session: Session, state: State) -> StepUpResponse:
    """Confirm with the PIN; phone-number changes are allowed for a few minutes on this session."""
    if auth.user.pin_hash is None:
        raise ApiProblem(409, "pin_not_set", "set a PIN first (PUT /api/v1/auth/pin)")
    await verify_pin(auth, body.pin, session, state)
    until = datetime.now(UTC) + timedelta(seconds=state.settings.step_up_seconds)
    auth.auth_session.step_up_until = until
    await session.commit()
    return StepUpResponse(step_up_until=until)


@router.put("/password", status_code=204)
async def change_password(body: PasswordRequest, auth: CurrentUser, session: Session, state: State) -> None:
    user = auth.user
    # A stolen session token must not become unlimited password guessing: counted like a failed login.
    try:
        await _check_password(user.id, user.password_hash, body.current_password, session, state)
    except ApiProblem as exc:
        if exc.status_code == 401:
            raise ApiProblem(403, "wrong_password", "the current password is wrong") from None
        raise
    check_password(body.new_password)
    user.password_hash = await state.hasher.hash(body.new_password)
    # A new password ends every other session of the user (a lost phone stays logged out); this one stays.
    await session.execute(
        delete(AuthSession).where(AuthSession.user_id == user.id, AuthSession.id != auth.auth_session.id)
    )
    await session.commit()
