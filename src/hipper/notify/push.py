"""Web Push (RFC 8030) with message encryption (RFC 8291, aes128gcm) and VAPID (RFC 8292), through pywebpush.

pywebpush sends with `requests`, which blocks; every send goes through `hipper.offload.run_cpu` so the event
loop never waits on a push service.
"""

from __future__ import annotations

import base64
import enum
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from pywebpush import WebPushException, webpush
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.notify.vapid import VapidKeys
from hipper.offload import run_cpu
from hipper.store import push_subscriptions

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"  # 404/410: the subscription expired or the user revoked it; it is deleted
    FAILED = "failed"


@dataclass(frozen=True)
class PushMessage:
    """What the app's service worker shows: `title` and `body`, `url` to open, `tag` to replace older ones."""

    kind: str  # "missed_call" | "voicemail"
    title: str
    body: str
    url: str
    tag: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"type": self.kind, "title": self.title, "body": self.body, "url": self.url, "tag": self.tag, **self.data},
            ensure_ascii=False,
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class PushConfig:
    keys: VapidKeys
    subject: str
    ttl_seconds: int
    timeout_seconds: float

    @property
    def private_key_der(self) -> str:
        # pywebpush takes the key as base64url DER (or a file name); the object itself would need py_vapid.
        der = self.keys.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return base64.urlsafe_b64encode(der).rstrip(b"=").decode()


def send_one(endpoint: str, p256dh: str, auth: str, payload: str, config: PushConfig) -> Outcome:
    """Encrypt and POST one message (blocking: call it through run_cpu)."""
    try:
        webpush(
            {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}},
            data=payload,
            vapid_private_key=config.private_key_der,
            # A fresh dict each time: pywebpush writes `aud` and `exp` into it.
            vapid_claims={"sub": config.subject},
            ttl=config.ttl_seconds,
            timeout=config.timeout_seconds,
            # RFC 8030 §5.3: a missed call or a new message is worth waking a sleeping phone for.
            headers={"Urgency": "high"},
        )
    except WebPushException as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (404, 410):
            return Outcome.GONE
        log.warning("push refused by %s: status %s", _host(endpoint), status)
        return Outcome.FAILED
    except (requests.RequestException, ValueError) as exc:
        # ValueError: keys that do not decode to a P-256 point (stored before validation was this strict).
        log.warning("push to %s failed: %s", _host(endpoint), type(exc).__name__)
        return Outcome.FAILED
    return Outcome.DELIVERED


def _host(endpoint: str) -> str:
    # Endpoints are capability URLs: log only where they point, never the whole URL.
    return urlsplit(endpoint).netloc


async def push_to_user(
    sessions: async_sessionmaker[AsyncSession], user_id: int, message: PushMessage, config: PushConfig
) -> dict[Outcome, int]:
    """Send `message` to every browser of the user; subscriptions that are gone are deleted."""
    async with sessions() as session:
        targets = [(s.id, s.endpoint, s.p256dh, s.auth) for s in await push_subscriptions.list_for(session, user_id)]
    counts = dict.fromkeys(Outcome, 0)
    payload = message.to_json()
    gone: list[tuple[int, str]] = []
    for subscription_id, endpoint, p256dh, auth in targets:
        outcome = await run_cpu(send_one, endpoint, p256dh, auth, payload, config)
        counts[outcome] += 1
        if outcome is Outcome.GONE:
            gone.append((subscription_id, endpoint))
    if gone:
        async with sessions() as session:
            for subscription_id, endpoint in gone:
                await push_subscriptions.forget_gone(session, subscription_id, endpoint)
            await session.commit()
    log.info(
        "push %s to user %s: %s",
        message.kind,
        user_id,
        ", ".join(f"{n} {o.value}" for o, n in counts.items()),
    )
    return counts
