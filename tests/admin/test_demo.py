"""`hipper demo`: a complete demo company, real 8 kHz voicemail audio, and nothing duplicated on a second run."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

import httpx
import pytest
import soundfile
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.demo import DEMO_DEVICE_PASSWORD, DEMO_DEVICES, DEMO_PASSWORD, message_wav
from hipper.store.models import (
    Base,
    CallCenter,
    CallLog,
    DirectoryEntry,
    HuntGroup,
    SipDevice,
    Voicemail,
)
from tests.admin.conftest import Hipper

COUNTED = [table for table in Base.metadata.sorted_tables if table.name not in ("events", "auth_sessions")]


async def _counts(session: AsyncSession) -> dict[str, int]:
    return {
        table.name: (await session.execute(select(func.count()).select_from(table))).scalar_one() for table in COUNTED
    }


async def test_demo_once_and_only_once(hipper: Hipper, client: httpx.AsyncClient) -> None:
    first = await asyncio.to_thread(hipper, "demo", "--no-serve")
    assert "Created demo data" in first.output
    for device in DEMO_DEVICES:
        assert device.auth_username in first.output
    assert DEMO_DEVICE_PASSWORD in first.output and DEMO_PASSWORD in first.output
    counts = await asyncio.to_thread(hipper.query, _counts)
    second = await asyncio.to_thread(hipper, "demo", "--no-serve")
    assert "Found demo data" in second.output
    assert await asyncio.to_thread(hipper.query, _counts) == counts

    assert counts["users"] == 4
    assert counts["call_centers"] == 2
    assert counts["hunt_groups"] == 1
    assert counts["sip_devices"] == len(DEMO_DEVICES)

    login = await client.post("/api/v1/auth/login", json={"username": "anna", "password": DEMO_PASSWORD})
    assert login.status_code == 200, login.text
    # Anna has every licence, fixed-mobile and the call center number among her numbers (SPEC A4).
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {login.json()['token']}"})
    assert "+31201230300" in me.text
    services = await client.get("/api/v1/me/services", headers={"Authorization": f"Bearer {login.json()['token']}"})
    assert "fixed-mobile" in services.json()["services"]
    assert "call-center-agent" in services.json()["services"]


def test_demo_contents(hipper: Hipper) -> None:
    hipper("demo", "--no-serve")
    realm = hipper.settings.sip_realm
    data_dir = Path(hipper.settings.data_dir)

    async def check(session: AsyncSession) -> None:
        for device in (await session.execute(select(SipDevice))).scalars():
            expected = f"{device.auth_username}:{realm}:{DEMO_DEVICE_PASSWORD}".encode()
            assert device.ha1_md5 == hashlib.md5(expected).hexdigest()
            assert device.ha1_sha256 == hashlib.sha256(expected).hexdigest()
        directions = set((await session.execute(select(CallLog.direction))).scalars())
        assert directions == {"placed", "received", "missed"}
        enterprise = select(func.count()).select_from(DirectoryEntry).where(DirectoryEntry.user_id.is_(None))
        personal = select(func.count()).select_from(DirectoryEntry).where(DirectoryEntry.user_id.is_not(None))
        assert await session.scalar(enterprise) and await session.scalar(personal)
        assert len((await session.execute(select(CallCenter))).scalars().all()) == 2
        assert len((await session.execute(select(HuntGroup))).scalar_one().member_user_ids) == 2
        voicemails = (await session.execute(select(Voicemail))).scalars().all()
        assert len(voicemails) == 3
        assert {v.heard for v in voicemails} == {True, False}
        for voicemail in voicemails:
            path = data_dir / voicemail.media_path
            info = soundfile.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
            assert abs(info.frames * 1000 / 8000 - voicemail.duration_ms) <= 1
            assert info.frames > 8000  # at least a second of sound
            samples, _ = soundfile.read(path)
            assert abs(samples).max() > 0.05  # not silence

    hipper.query(check)
    # No temporary files left behind by the atomic writer.
    assert not [p for p in (data_dir / "media").rglob("*") if p.name.startswith(".tmp")]


def test_without_espeak_the_messages_are_a_tone(monkeypatch: pytest.MonkeyPatch) -> None:
    spoken, spoken_ms = message_wav("Hallo")
    monkeypatch.setenv("PATH", "/nonexistent")  # neither espeak-ng nor sox can be found now
    tone, tone_ms = message_wav("Hallo")
    assert tone != spoken
    assert tone_ms == 2000
    info = soundfile.info(io.BytesIO(tone))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    assert spoken_ms > 0
