"""Passkeys (SPEC A2/A3): the web's fingerprint / Face ID as the step-up, with the `webauthn` library.

Registering needs a fresh step-up (the PIN) itself, or a stolen session token could add the thief's passkey
and change every forwarding number with it. A passkey then stands in for the PIN: a verified assertion opens
the same step-up window on the session as POST /auth/step-up does. Each login session has at most one pending
challenge per purpose, stored in the database (any node can check the answer), answered once, for two minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.options_to_json_dict import options_to_json_dict
from webauthn.helpers.structs import (
    AuthenticatorAttachment,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from hipper.api.deps import CurrentUser, RowId, Session, State, commit
from hipper.api.routers.auth import StepUpResponse
from hipper.domain.errors import StepUpRequired
from hipper.store import webauthn as passkeys
from hipper.store.events import add_event
from hipper.store.models import WebAuthnCredential

router = APIRouter(tags=["auth"])

RP_NAME = "Hipper+"
REGISTER = "register"
STEP_UP = "step_up"
TIMEOUT_MS = 60_000


class CredentialOut(BaseModel):
    id: int
    credential_id: str = Field(description="the WebAuthn credential id, base64url")
    name: str
    sign_count: int
    created_at: datetime


class PasskeysOut(BaseModel):
    enabled: bool = Field(description="biometric step-up is on: the user has at least one passkey")
    credentials: list[CredentialOut]


class RegistrationIn(BaseModel):
    credential: dict[str, Any] = Field(description="PublicKeyCredential.toJSON() of navigator.credentials.create()")
    name: str = Field(default="", max_length=200, description="what the user calls this device")


class AssertionIn(BaseModel):
    credential: dict[str, Any] = Field(description="PublicKeyCredential.toJSON() of navigator.credentials.get()")


def _out(row: WebAuthnCredential) -> CredentialOut:
    return CredentialOut(
        id=row.id, credential_id=row.credential_id, name=row.name, sign_count=row.sign_count, created_at=row.created_at
    )


def _origins(request: Request, state: State) -> list[str]:
    """Origins whose ceremonies count: configured, or the exchange's own plus the CORS origins of the app."""
    settings = state.settings
    if settings.webauthn_origins:
        return list(settings.webauthn_origins)
    own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    return [own, *settings.cors_origins]


def _rp_id(request: Request, state: State) -> str:
    """The relying party: configured, else the host the app runs on (the Origin of a cross-origin app that is
    allowed, else this request's host) without the port — WebAuthn ids are domains, never host:port."""
    if state.settings.webauthn_rp_id:
        return state.settings.webauthn_rp_id
    origin = request.headers.get("origin")
    if origin and origin in _origins(request, state):
        return urlsplit(origin).hostname or ""
    return urlsplit(f"//{request.headers.get('host', '')}").hostname or request.url.hostname or ""


def _refused(what: str, exc: Exception | None = None) -> HTTPException:
    reason = f": {exc}" if exc else ""
    return HTTPException(400, f"{what} was not accepted{reason}")


@router.get("/me/passkeys", response_model=PasskeysOut, summary="The user's passkeys (biometric step-up)")
async def list_passkeys(auth: CurrentUser, session: Session) -> PasskeysOut:
    rows = await passkeys.credentials_of(session, auth.user.id)
    return PasskeysOut(enabled=bool(rows), credentials=[_out(row) for row in rows])


@router.delete("/me/passkeys/{passkey_id}", status_code=204, responses={404: {"description": "no such passkey"}})
async def delete_passkey(passkey_id: RowId, auth: CurrentUser, session: Session, state: State) -> None:
    """Remove a passkey; with none left, the step-up is by PIN only (biometric step-up off)."""
    if not await passkeys.delete_credential(session, auth.user.id, passkey_id):
        raise HTTPException(404, "no such passkey")
    add_event(session, auth.user.id, "passkey.deleted", {"id": passkey_id})
    await commit(session, state)


@router.post("/auth/passkeys/register/options", summary="Options for navigator.credentials.create()")
async def registration_options(request: Request, auth: CurrentUser, session: Session, state: State) -> dict[str, Any]:
    if not auth.stepped_up:
        raise StepUpRequired()
    user = auth.user
    existing = await passkeys.credentials_of(session, user.id)
    options = generate_registration_options(
        rp_id=_rp_id(request, state),
        rp_name=RP_NAME,
        # An opaque handle: the authenticator stores it, so no name or number goes in.
        user_id=f"hipper-{user.id}".encode(),
        user_name=user.username,
        user_display_name=f"{user.first_name} {user.last_name}".strip() or user.username,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            # The platform authenticator is the phone's own fingerprint / face sensor (SPEC A2).
            authenticator_attachment=AuthenticatorAttachment.PLATFORM,
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(row.credential_id)) for row in existing
        ],
    )
    await passkeys.put_challenge(session, auth.auth_session.id, REGISTER, bytes_to_base64url(options.challenge))
    await session.commit()
    return options_to_json_dict(options)


@router.post("/auth/passkeys/register", response_model=CredentialOut, status_code=201)
async def register(
    body: RegistrationIn, request: Request, auth: CurrentUser, session: Session, state: State
) -> CredentialOut:
    """Verify the new passkey against this session's pending challenge and keep its public key."""
    if not auth.stepped_up:
        raise StepUpRequired()
    challenge = await passkeys.take_challenge(session, auth.auth_session.id, REGISTER)
    # The challenge is spent whatever the outcome: commit its removal before judging the answer.
    await session.commit()
    if challenge is None:
        raise _refused("the passkey", ValueError("no pending challenge: ask for options first"))
    try:
        verified = verify_registration_response(
            credential=body.credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=_rp_id(request, state),
            expected_origin=_origins(request, state),
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise _refused("the passkey", exc) from exc
    credential_id = bytes_to_base64url(verified.credential_id)
    if await passkeys.credential_exists(session, credential_id):
        raise HTTPException(409, "this passkey is already registered")
    row = await passkeys.add_credential(
        session,
        auth.user.id,
        credential_id=credential_id,
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        name=body.name.strip() or "passkey",
    )
    add_event(session, auth.user.id, "passkey.added", {"id": row.id})
    await commit(session, state)
    return _out(row)


@router.post("/auth/passkeys/step-up/options", summary="Options for navigator.credentials.get()")
async def step_up_options(request: Request, auth: CurrentUser, session: Session, state: State) -> dict[str, Any]:
    existing = await passkeys.credentials_of(session, auth.user.id)
    if not existing:
        raise HTTPException(409, "no passkey registered: confirm with the PIN")
    options = generate_authentication_options(
        rp_id=_rp_id(request, state),
        timeout=TIMEOUT_MS,
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(row.credential_id)) for row in existing],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    await passkeys.put_challenge(session, auth.auth_session.id, STEP_UP, bytes_to_base64url(options.challenge))
    await session.commit()
    return options_to_json_dict(options)


@router.post("/auth/passkeys/step-up", response_model=StepUpResponse)
async def step_up(
    body: AssertionIn, request: Request, auth: CurrentUser, session: Session, state: State
) -> StepUpResponse:
    """Confirm with a passkey: like the PIN, phone-number changes are allowed for a few minutes."""
    challenge = await passkeys.take_challenge(session, auth.auth_session.id, STEP_UP)
    await session.commit()
    if challenge is None:
        raise _refused("the passkey", ValueError("no pending challenge: ask for options first"))
    raw_id = body.credential.get("id")
    row = await passkeys.credential_by_id(session, auth.user.id, raw_id) if isinstance(raw_id, str) else None
    if row is None:
        raise _refused("the passkey", ValueError("it is not one of yours"))
    try:
        verified = verify_authentication_response(
            credential=body.credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=_rp_id(request, state),
            expected_origin=_origins(request, state),
            credential_public_key=base64url_to_bytes(row.public_key),
            # A count that does not go up means a cloned authenticator (WebAuthn §6.1.1): refused.
            credential_current_sign_count=row.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise _refused("the passkey", exc) from exc
    row.sign_count = verified.new_sign_count
    until = datetime.now(UTC) + timedelta(seconds=state.settings.step_up_seconds)
    auth.auth_session.step_up_until = until
    await session.commit()
    return StepUpResponse(step_up_until=until)
