"""SIP devices and their digest credentials (SPEC M1).

Only HA1 hashes are stored, never the password: HA1 = H(username ":" realm ":" password) with MD5 (RFC 2617) and
SHA-256 (RFC 7616), so the registrar can challenge with either algorithm. A password is shown once, when it is set.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.errors import InvalidSetting
from hipper.sip.digest import ha1
from hipper.store.admin import Conflict, NotFound, text
from hipper.store.events import add_event
from hipper.store.models import SipDevice, User

# The user part of a SIP URI without characters that need escaping (RFC 3261 §25.1 "unreserved").
AUTH_USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{2,99}$")
MIN_SIP_PASSWORD_LENGTH = 8
DEVICE_KINDS = ("desk", "softphone")


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def _check_password(password: str) -> None:
    if len(password) < MIN_SIP_PASSWORD_LENGTH:
        raise InvalidSetting("password", f"a SIP password needs at least {MIN_SIP_PASSWORD_LENGTH} characters")
    if ":" in password or not password.isprintable():
        raise InvalidSetting("password", "printable characters only, no ':'")


def _set_password(device: SipDevice, password: str, realm: str) -> None:
    _check_password(password)
    device.realm = realm
    device.ha1_md5 = ha1(device.auth_username, realm, password, "MD5")
    device.ha1_sha256 = ha1(device.auth_username, realm, password, "SHA-256")


def _payload(device: SipDevice) -> dict[str, object]:
    # The registrar caches credentials by auth username; the event names it so exactly that entry is dropped.
    return {"id": device.id, "auth_username": device.auth_username}


async def create_device(
    session: AsyncSession,
    user: User,
    *,
    auth_username: str,
    password: str,
    realm: str,
    kind: str = "desk",
    name: str = "",
) -> SipDevice:
    auth_username = auth_username.strip()
    if not AUTH_USERNAME_PATTERN.match(auth_username):
        raise InvalidSetting("auth_username", "3-100 characters: letters, digits, '.', '_', '~' or '-'")
    if kind not in DEVICE_KINDS:
        raise InvalidSetting("kind", f"one of {', '.join(DEVICE_KINDS)}")
    taken = await session.execute(select(SipDevice.id).where(SipDevice.auth_username == auth_username))
    if taken.first() is not None:
        raise Conflict("auth_username", f"the SIP username '{auth_username}' is taken")
    device = SipDevice(
        user_id=user.id,
        auth_username=auth_username,
        kind=kind,
        name=text("name", name, 200) or auth_username,
        created_at=datetime.now(UTC),
    )
    _set_password(device, password, realm)
    session.add(device)
    await session.flush()
    add_event(session, user.id, "device.created", _payload(device), company_id=user.company_id)
    return device


async def list_devices(session: AsyncSession, user_id: int | None = None) -> list[SipDevice]:
    query = select(SipDevice).order_by(SipDevice.auth_username)
    if user_id is not None:
        query = query.where(SipDevice.user_id == user_id)
    return list((await session.execute(query)).scalars())


async def get_device(session: AsyncSession, device_id: int) -> SipDevice:
    device = await session.get(SipDevice, device_id)
    if device is None:
        raise NotFound("SIP device", device_id)
    return device


async def device_by_auth_username(session: AsyncSession, auth_username: str) -> SipDevice:
    query = select(SipDevice).where(SipDevice.auth_username == auth_username)
    device = (await session.execute(query)).scalar_one_or_none()
    if device is None:
        raise NotFound("SIP device", auth_username)
    return device


async def reset_password(session: AsyncSession, device: SipDevice, password: str, realm: str) -> None:
    _set_password(device, password, realm)
    # Registrations made with the old password stay until they expire; the registrar challenges the next one.
    add_event(session, device.user_id, "device.password_reset", _payload(device))
    await session.flush()


async def delete_device(session: AsyncSession, device: SipDevice) -> None:
    add_event(session, device.user_id, "device.deleted", _payload(device))
    await session.delete(device)
    await session.flush()
