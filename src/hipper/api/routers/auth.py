"""Log in, log out, the PIN, the step-up and the password (SPEC A1–A3)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.api.deps import CurrentUser, Session, State, commit, hash_token
from hipper.api.errors import ApiProblem
from hipper.config import Settings
from hipper.domain.moments import aware
from hipper.domain.pin import check_password, check_pin
from hipper.store.events import add_event
from hipper.store.models import AuthSession, User
from hipper.store.users import by_username

router = APIRouter(prefix="/auth", tags=["auth"])


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


def _locked(until: datetime | None, now: datetime) -> bool:
    return until is not None and aware(until) > now


async def _count_failure(user: User, now: datetime, settings: Settings, session: AsyncSession) -> None:
    user.failed_logins += 1
    if user.failed_logins >= settings.login_attempts:
        user.locked_until = now + timedelta(seconds=settings.login_lockout_seconds)
        user.failed_logins = 0
    await session.commit()


@router.post("/login", response_model=LoginResponse)
async def login(body: LoginRequest, session: Session, state: State) -> LoginResponse:
    settings = state.settings
    now = datetime.now(UTC)
    user = await by_username(session, body.username)
    if user is None:
        # An unknown name is locked out exactly like a real account, so the answers never tell which
        # usernames exist (OWASP authentication guidance); the hash is spent either way.
        await state.hasher.verify(None, body.password)
        if state.unknown_logins.failed(body.username, now, settings.login_attempts, settings.login_lockout_seconds):
            raise ApiProblem(429, "account_locked", LOCKED)
        raise ApiProblem(401, "wrong_credentials", "wrong username or password")
    if _locked(user.locked_until, now):
        raise ApiProblem(429, "account_locked", LOCKED)
    if not await state.hasher.verify(user.password_hash, body.password):
        await _count_failure(user, now, settings, session)
        raise ApiProblem(401, "wrong_credentials", "wrong username or password")
    user.failed_logins = 0
    user.locked_until = None
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(days=settings.session_days)
    session.add(
        AuthSession(
            token_hash=hash_token(token),
            user_id=user.id,
            device_name=body.device_name,
            created_at=now,
            expires_at=expires,
        )
    )
    await session.commit()
    return LoginResponse(token=token, expires_at=expires, pin_required=user.pin_hash is None)


@router.post("/logout", status_code=204)
async def logout(auth: CurrentUser, session: Session) -> None:
    await session.delete(auth.auth_session)
    await session.commit()


async def _verify_pin(auth: CurrentUser, pin: str, session: Session, state: State) -> None:
    """Check a PIN against the user's, counting failures; too many lock the step-up for a while."""
    user = auth.user
    now = datetime.now(UTC)
    if _locked(user.pin_locked_until, now):
        raise ApiProblem(429, "pin_locked", "too many wrong PINs: try again later")
    if not await state.hasher.verify(user.pin_hash, pin):
        user.failed_pins += 1
        if user.failed_pins >= state.settings.pin_attempts:
            user.pin_locked_until = now + timedelta(seconds=state.settings.pin_lockout_seconds)
            user.failed_pins = 0
        await session.commit()
        raise ApiProblem(403, "wrong_pin", "wrong PIN")
    user.failed_pins = 0


@router.put("/pin", status_code=204)
async def set_pin(body: PinRequest, auth: CurrentUser, session: Session, state: State) -> None:
    """Set the PIN at first login; changing it later needs the current PIN."""
    if auth.user.pin_hash is not None:
        if body.current_pin is None:
            raise ApiProblem(403, "current_pin_required", "changing the PIN needs the current PIN (current_pin)")
        await _verify_pin(auth, body.current_pin, session, state)
    check_pin(body.pin)
    auth.user.pin_hash = await state.hasher.hash(body.pin)
    add_event(session, auth.user.id, "profile.changed", {"pin_set": True})
    await commit(session, state)


@router.post("/step-up", response_model=StepUpResponse)
async def step_up(body: StepUpRequest, auth: CurrentUser, session: Session, state: State) -> StepUpResponse:
    """Confirm with the PIN; phone-number changes are allowed for a few minutes on this session."""
    if auth.user.pin_hash is None:
        raise ApiProblem(409, "pin_not_set", "set a PIN first (PUT /api/v1/auth/pin)")
    await _verify_pin(auth, body.pin, session, state)
    until = datetime.now(UTC) + timedelta(seconds=state.settings.step_up_seconds)
    auth.auth_session.step_up_until = until
    await session.commit()
    return StepUpResponse(step_up_until=until)


@router.put("/password", status_code=204)
async def change_password(body: PasswordRequest, auth: CurrentUser, session: Session, state: State) -> None:
    now = datetime.now(UTC)
    if _locked(auth.user.locked_until, now):
        raise ApiProblem(429, "account_locked", LOCKED)
    if not await state.hasher.verify(auth.user.password_hash, body.current_password):
        # A stolen session token must not become unlimited password guessing: count it like a failed login.
        await _count_failure(auth.user, now, state.settings, session)
        raise ApiProblem(403, "wrong_password", "the current password is wrong")
    check_password(body.new_password)
    auth.user.password_hash = await state.hasher.hash(body.new_password)
    # A new password ends every other session of the user (a lost phone stays logged out); this one stays.
    await session.execute(
        delete(AuthSession).where(AuthSession.user_id == auth.user.id, AuthSession.id != auth.auth_session.id)
    )
    await session.commit()
