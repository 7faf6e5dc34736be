"""Web Push subscriptions of the app (SPEC L, M4) and the exchange's VAPID public key.

The app calls `PushManager.subscribe({applicationServerKey: <vapid public key>})` and posts the resulting
`PushSubscription.toJSON()` here. Which notifications are sent is the app settings' `push` toggles.
"""

from __future__ import annotations

import base64
import binascii
import functools
from datetime import datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, field_validator

from hipper.api.deps import CurrentUser, Session, State, commit
from hipper.domain.moments import aware
from hipper.notify import vapid
from hipper.offload import run_cpu
from hipper.store import push_subscriptions
from hipper.store.models import PushSubscription

router = APIRouter(tags=["push"])

MAX_ENDPOINT = 1000
NOT_FOUND = "no such push subscription"


def _b64url(value: str) -> bytes:
    # Browsers send base64url without padding (RFC 8291 §3.2 / the Push API's toJSON()).
    if not value.isascii() or any(c in value for c in "+/= \n"):
        raise ValueError("must be base64url without padding")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64url without padding") from exc


class SubscriptionKeys(BaseModel):
    p256dh: str = Field(max_length=200, description="the browser's P-256 public key, base64url")
    auth: str = Field(max_length=100, description="the 16-byte authentication secret, base64url")

    @field_validator("p256dh")
    @classmethod
    def _p256_point(cls, value: str) -> str:
        raw = _b64url(value)
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError as exc:
            raise ValueError("must be an uncompressed P-256 public key (65 bytes)") from exc
        if len(raw) != 65:
            raise ValueError("must be an uncompressed P-256 public key (65 bytes)")
        return value

    @field_validator("auth")
    @classmethod
    def _sixteen_bytes(cls, value: str) -> str:
        if len(_b64url(value)) != 16:
            raise ValueError("must be 16 bytes")
        return value


class SubscriptionIn(BaseModel):
    """`PushSubscription.toJSON()` as the browser gives it (`expirationTime` and unknown fields are ignored)."""

    endpoint: str = Field(max_length=MAX_ENDPOINT, description="the push service URL of this browser (https)")
    keys: SubscriptionKeys

    @field_validator("endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        # Browsers' push services are all https; refusing anything else also keeps users from making the
        # exchange POST to plain-HTTP addresses of their choosing.
        # Printable ASCII only (a URL's own alphabet): a NUL would also be refused by PostgreSQL with a 500.
        if not value.isascii() or not value.isprintable() or " " in value:
            raise ValueError("must be an https URL")
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https URL")
        return value


class SubscriptionOut(BaseModel):
    id: int
    endpoint: str
    created_at: datetime


class VapidPublicKey(BaseModel):
    public_key: str = Field(description="the `applicationServerKey` for PushManager.subscribe (base64url)")


def _out(row: PushSubscription) -> SubscriptionOut:
    return SubscriptionOut(id=row.id, endpoint=row.endpoint, created_at=aware(row.created_at))


@functools.cache
def _keys(path: Path) -> vapid.VapidKeys:
    return vapid.load_or_create(path)


@router.get("/push/vapid-public-key", response_model=VapidPublicKey, summary="The exchange's VAPID public key")
async def vapid_public_key(state: State) -> VapidPublicKey:
    """Public by nature (RFC 8292): the app needs it before it can ask the browser for a subscription."""
    keys = await run_cpu(_keys, vapid.key_file(state.settings))
    return VapidPublicKey(public_key=keys.public_key)


@router.get("/me/push-subscriptions", response_model=list[SubscriptionOut])
async def list_subscriptions(auth: CurrentUser, session: Session) -> list[SubscriptionOut]:
    """The browsers that receive this user's notifications."""
    return [_out(row) for row in await push_subscriptions.list_for(session, auth.user.id)]


@router.post("/me/push-subscriptions", response_model=SubscriptionOut, status_code=201)
async def subscribe(body: SubscriptionIn, auth: CurrentUser, session: Session, state: State) -> SubscriptionOut:
    """Store this browser's subscription. Posting the same endpoint again updates its keys."""
    row = await push_subscriptions.subscribe(session, auth.user.id, body.endpoint, body.keys.p256dh, body.keys.auth)
    out = _out(row)
    await commit(session, state)
    return out


@router.delete("/me/push-subscriptions/{subscription_id}", status_code=204, responses={404: {"description": NOT_FOUND}})
async def unsubscribe(
    subscription_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], auth: CurrentUser, session: Session, state: State
) -> Response:
    if not await push_subscriptions.unsubscribe(session, auth.user.id, subscription_id=subscription_id):
        raise HTTPException(404, NOT_FOUND)
    await commit(session, state)
    return Response(status_code=204)


@router.delete("/me/push-subscriptions", status_code=204)
async def unsubscribe_endpoint(
    auth: CurrentUser,
    session: Session,
    state: State,
    endpoint: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_ENDPOINT,
            pattern=r"^[!-~]+$",  # printable ASCII, like every endpoint we accept
            description="as given when subscribing",
        ),
    ],
) -> Response:
    """For the app after `PushSubscription.unsubscribe()`: it knows the endpoint. Always 204, so endpoints of
    other users cannot be probed."""
    if await push_subscriptions.unsubscribe(session, auth.user.id, endpoint=endpoint):
        await commit(session, state)
    return Response(status_code=204)
