"""Passkeys of a user (SPEC A2/A3) and the pending WebAuthn challenges of a login session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.moments import aware
from hipper.store.models import WebAuthnChallenge, WebAuthnCredential

# Long enough to touch the sensor, short enough that a leaked challenge is soon worthless.
CHALLENGE_SECONDS = 120


async def credentials_of(session: AsyncSession, user_id: int) -> list[WebAuthnCredential]:
    result = await session.execute(
        select(WebAuthnCredential).where(WebAuthnCredential.user_id == user_id).order_by(WebAuthnCredential.id)
    )
    return list(result.scalars())


async def credential_by_id(session: AsyncSession, user_id: int, credential_id: str) -> WebAuthnCredential | None:
    """The user's own credential with this WebAuthn credential id (base64url); another user's is not found."""
    result = await session.execute(
        select(WebAuthnCredential).where(
            WebAuthnCredential.user_id == user_id, WebAuthnCredential.credential_id == credential_id
        )
    )
    return result.scalar()


async def credential_exists(session: AsyncSession, credential_id: str) -> bool:
    result = await session.execute(
        select(WebAuthnCredential.id).where(WebAuthnCredential.credential_id == credential_id)
    )
    return result.first() is not None


async def add_credential(
    session: AsyncSession, user_id: int, *, credential_id: str, public_key: str, sign_count: int, name: str
) -> WebAuthnCredential:
    row = WebAuthnCredential(
        user_id=user_id,
        credential_id=credential_id,
        public_key=public_key,
        sign_count=sign_count,
        name=name,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    await session.flush()
    return row


async def delete_credential(session: AsyncSession, user_id: int, row_id: int) -> bool:
    """Delete one of the user's own passkeys; False when there is no such one of theirs."""
    result = await session.execute(
        delete(WebAuthnCredential).where(WebAuthnCredential.user_id == user_id, WebAuthnCredential.id == row_id)
    )
    return bool(getattr(result, "rowcount", 0))


async def put_challenge(session: AsyncSession, auth_session_id: int, purpose: str, challenge: str) -> None:
    """Remember the challenge just offered to this login session, replacing an earlier one for the purpose."""
    await session.execute(
        delete(WebAuthnChallenge).where(
            WebAuthnChallenge.auth_session_id == auth_session_id, WebAuthnChallenge.purpose == purpose
        )
    )
    session.add(
        WebAuthnChallenge(
            auth_session_id=auth_session_id,
            purpose=purpose,
            challenge=challenge,
            expires_at=datetime.now(UTC) + timedelta(seconds=CHALLENGE_SECONDS),
        )
    )
    await session.flush()


async def take_challenge(session: AsyncSession, auth_session_id: int, purpose: str) -> str | None:
    """The pending challenge, removed so it answers once only; None when there is none or it has expired."""
    row = await session.get(WebAuthnChallenge, (auth_session_id, purpose))
    if row is None:
        return None
    await session.delete(row)
    await session.flush()
    expires = aware(row.expires_at)
    if expires <= datetime.now(UTC):
        return None
    return row.challenge
