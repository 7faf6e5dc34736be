"""The `hipper` administration commands on a real database: clear messages, non-zero exit on bad input."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.store.models import Event, SipDevice, User
from tests.admin.conftest import Hipper


def test_first_administrator_company_and_users(hipper: Hipper) -> None:
    assert "no company yet" in hipper("user", "add", "anna", "--password", "long enough 1", ok=False).output
    assert "Created company 'Acme'" in hipper("company", "add", "Acme", "--number", "020 123 0000").output
    assert "+31201230000" in hipper("company", "list").output
    assert "Created administrator 'root'" in hipper("admin", "create", "root", "--password", "long enough 1").output
    created = hipper(
        "user", "add", "anna", "--password", "long enough 1", "--first-name", "Anna", "--extension", "201",
        "--direct", "020 123 0201", "--mobile", "06 1234 0201", "--licence", "basic", "--licence", "call-recording",
    )  # fmt: skip
    assert "Created user anna  (Anna)  ext 201  direct +31201230201  mobile +31612340201" in created.output
    listed = hipper("user", "list").output
    assert "anna" in listed and "root" in listed and "[admin]" in listed
    shown = hipper("user", "show", "anna").output
    assert "call-recording" in shown and "voicemail" in shown
    assert "numbers:    company +31201230000, direct +31201230201, mobile +31612340201" in shown

    # The password is asked for (twice) when not given.
    assert "Created group 'Sales'" in hipper("group", "add", "Sales", "--number", "020 123 0100").output
    assert "+31201230100" in hipper("group", "list").output
    assert "group" in hipper("user", "add", "x1", "--password", "long enough 1", "--group", "Nope", ok=False).output
    hipper("user", "add", "in-sales", "--password", "long enough 1", "--group", "Sales")
    prompted = hipper("user", "add", "bram", "--extension", "202", input="long enough 2\nlong enough 2\n")
    assert "Created user bram" in prompted.output

    for args, message in [
        (("user", "add", "anna", "--password", "long enough 1"), "username: the username 'anna' is taken"),
        (("user", "add", "carla", "--password", "long enough 1", "--extension", "201"), "already used by user 'anna'"),
        (("user", "add", "carla", "--password", "short"), "at least 8 characters"),
        (("user", "add", "carla", "--password", "long enough 1", "--direct", "abc"), "direct-number:"),
        (("user", "add", "carla", "--password", "long enough 1", "--licence", "gold"), "unknown licence"),
        (("user", "show", "nobody"), "no user 'nobody'"),
        (("company", "add", "Acme"), "exists already"),
    ]:
        result = hipper(*args, ok=False)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
    # Nothing of the refused commands was written.
    assert "carla" not in hipper("user", "list").output


def test_passwords_lockouts_licences_numbers_delete(hipper: Hipper) -> None:
    hipper("company", "add", "Acme")
    hipper("user", "add", "anna", "--password", "long enough 1", "--licence", "do-not-disturb")

    async def lock(session: AsyncSession) -> None:
        from datetime import UTC, datetime, timedelta

        user = (await session.execute(select(User).where(User.username == "anna"))).scalar_one()
        user.locked_until = datetime.now(UTC) + timedelta(minutes=5)
        user.pin_locked_until = datetime.now(UTC) + timedelta(minutes=5)
        await session.commit()

    hipper.query(lock)
    assert "locked:" in hipper("user", "show", "anna").output
    assert "Unlocked 'anna'" in hipper("user", "unlock", "anna").output
    assert "locked:" not in hipper("user", "show", "anna").output

    before = hipper.query(lambda s: _password_hash(s, "anna"))
    assert "sessions have ended" in hipper("user", "passwd", "anna", "--password", "another pass").output
    assert hipper.query(lambda s: _password_hash(s, "anna")) != before

    added = hipper("user", "licences", "anna", "--add", "agent").output
    assert "call-center-agent" in added and "do-not-disturb" in added
    removed = hipper("user", "licences", "anna", "--remove", "do-not-disturb").output
    assert "do-not-disturb" not in removed
    assert hipper("user", "licences", "anna", "--set", "voicemail").output.strip().endswith("voicemail")

    numbers = hipper("number", "set", "anna", "--direct", "0201230201", "--mobile", "+31 6 1234 0201").output
    assert "direct +31201230201, mobile +31612340201" in numbers
    assert "mobile -" in hipper("number", "set", "anna", "--mobile", "none").output
    assert hipper("number", "set", "anna", ok=False).exit_code != 0
    assert "extension" in hipper("number", "set", "anna", "--direct", "201", ok=False).output

    mixed = hipper("user", "licences", "anna", "--set", "basic", "--add", "agent", ok=False)
    assert mixed.exit_code == 2 and "--set alone" in mixed.output
    refused = hipper("user", "delete", "anna", input="n\n", ok=False)
    assert refused.exit_code != 0
    assert "anna" in hipper("user", "list").output
    assert "Deleted 'anna'" in hipper("user", "delete", "anna", "--yes").output
    assert "No users yet." in hipper("user", "list").output


async def _password_hash(session: AsyncSession, username: str) -> str:
    return (await session.execute(select(User.password_hash).where(User.username == username))).scalar_one()


def test_sip_devices(hipper: Hipper) -> None:
    hipper("company", "add", "Acme")
    hipper("user", "add", "anna", "--password", "long enough 1")
    added = hipper("device", "add", "anna", "anna-desk", "--password", "sip secret 1", "--name", "Desk")
    assert "Created SIP device 'anna-desk'" in added.output
    assert "SIP password: sip secret 1" in added.output
    realm = hipper.settings.sip_realm

    async def stored(session: AsyncSession) -> SipDevice:
        return (await session.execute(select(SipDevice).where(SipDevice.auth_username == "anna-desk"))).scalar_one()

    device = hipper.query(stored)
    assert device.ha1_md5 == hashlib.md5(f"anna-desk:{realm}:sip secret 1".encode()).hexdigest()
    assert device.ha1_sha256 == hashlib.sha256(f"anna-desk:{realm}:sip secret 1".encode()).hexdigest()

    generated = hipper("device", "add", "anna", "anna-soft", "--kind", "softphone").output
    password = generated.split("SIP password: ")[1].split()[0]

    async def soft_ha1(session: AsyncSession) -> str | None:
        return await session.scalar(select(SipDevice.ha1_md5).where(SipDevice.auth_username == "anna-soft"))

    assert hipper.query(soft_ha1) == hashlib.md5(f"anna-soft:{realm}:{password}".encode()).hexdigest()

    assert "taken" in hipper("device", "add", "anna", "anna-desk", "--password", "x" * 10, ok=False).output
    assert "at least 8" in hipper("device", "add", "anna", "anna-x", "--password", "short", ok=False).output
    renewed = hipper("device", "passwd", "anna-soft", "--password", "renewed sip 1").output
    assert "New SIP password for 'anna-soft': renewed sip 1" in renewed
    assert hipper.query(soft_ha1) == hashlib.md5(f"anna-soft:{realm}:renewed sip 1".encode()).hexdigest()
    listed = hipper("device", "list", "anna").output
    assert "anna-desk" in listed and "anna-soft" in listed
    assert "Deleted SIP device 'anna-desk'" in hipper("device", "delete", "anna-desk").output
    assert "anna-desk" not in hipper("device", "list").output
    assert "no SIP device" in hipper("device", "delete", "anna-desk", ok=False).output


def test_call_centers_and_night_mode(hipper: Hipper) -> None:
    hipper("company", "add", "Acme", "--number", "0201230000")
    hipper("user", "add", "carla", "--password", "long enough 1", "--licence", "agent", "--extension", "203")
    hipper("user", "add", "bram", "--password", "long enough 1", "--licence", "basic")
    created = hipper(
        "callcenter", "add", "Helpdesk", "--number", "020 123 0300", "--extension", "300", "--wrap-up", "20"
    )
    assert "Created call center 'Helpdesk'" in created.output and "+31201230300" in created.output
    assert "already used by user 'carla'" in hipper("callcenter", "add", "Other", "--extension", "203", ok=False).output
    assert "now an agent" in hipper("callcenter", "member", "add", "Helpdesk", "carla").output
    assert "already" in hipper("callcenter", "member", "add", "Helpdesk", "carla", ok=False).output
    assert "call-center-agent" in hipper("callcenter", "member", "add", "Helpdesk", "bram", ok=False).output
    assert "agents: carla" in hipper("callcenter", "list").output
    assert "no longer an agent" in hipper("callcenter", "member", "remove", "1", "carla").output
    assert "agents: -" in hipper("callcenter", "list").output
    assert "no call center 'Nope'" in hipper("callcenter", "member", "add", "Nope", "carla", ok=False).output

    assert "Night mode on for 'Acme'" in hipper("night", "on").output
    assert "night mode ON" in hipper("company", "list").output
    assert "Night mode off" in hipper("night", "off").output
    hipper("company", "add", "Beta")
    assert "several companies" in hipper("night", "on", ok=False).output
    assert "Night mode on for 'Beta'" in hipper("night", "on", "--company", "Beta").output


async def test_a_user_made_by_the_cli_logs_in_through_the_api(hipper: Hipper, client: httpx.AsyncClient) -> None:
    # The CLI runs its own event loop, so it runs in a thread here, next to the API's loop.
    await asyncio.to_thread(hipper, "company", "add", "Acme")
    await asyncio.to_thread(hipper, "user", "add", "anna", "--password", "long enough 1", "--licence", "basic")
    login = await client.post("/api/v1/auth/login", json={"username": "anna", "password": "long enough 1"})
    assert login.status_code == 200, login.text


def test_events_purge(hipper: Hipper) -> None:
    hipper("company", "add", "Acme")
    hipper("user", "add", "anna", "--password", "long enough 1")

    async def age(session: AsyncSession) -> list[int]:
        old = datetime.now(UTC) - timedelta(days=3)
        await session.execute(Event.__table__.update().values(created_at=old))
        await session.commit()
        return list((await session.execute(select(Event.id).order_by(Event.id))).scalars())

    ids = hipper.query(age)
    assert len(ids) >= 2
    assert "Deleted 0 events" in hipper("events", "purge").output  # 3 days < the default 7
    purged = hipper("events", "purge", "--older-than-days", "2").output
    # All but the newest row (kept, so that SQLite never gives an id out twice).
    assert f"Deleted {len(ids) - 1} events; every event up to id {ids[-2]} is gone" in purged
    assert hipper.query(_event_ids) == ids[-1:]
    assert "--older-than-days" in hipper("events", "purge", "--older-than-days", "0", ok=False).output


async def _event_ids(session: AsyncSession) -> list[int]:
    return list((await session.execute(select(Event.id).order_by(Event.id))).scalars())


def test_media_sweep(hipper: Hipper) -> None:
    """A file no row names (here: a crash between writing a voicemail and committing its row) goes once it is
    old enough; the files rows name stay."""
    import os

    data_dir = hipper.settings.data_dir
    orphan = data_dir / "media/voicemail/1/abc.wav"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"RIFF")
    assert "Removed 0 media files" in hipper("media", "sweep").output  # just written: a commit may follow
    old = orphan.stat().st_mtime - 7200
    os.utime(orphan, (old, old))
    swept = hipper("media", "sweep").output
    assert "removed media/voicemail/1/abc.wav" in swept and "Removed 1 media files" in swept
    assert not orphan.exists()


def test_user_delete_removes_their_voicemails_files(hipper: Hipper) -> None:
    from hipper.store import voicemails
    from tests.lists.conftest import telephony_wav

    hipper("company", "add", "Acme")
    hipper("user", "add", "anna", "--password", "long enough 1")
    data_dir = hipper.settings.data_dir

    async def deposit(session: AsyncSession) -> str:
        user = (await session.execute(select(User).where(User.username == "anna"))).scalar_one()
        message = await voicemails.deposit(session, data_dir, user.id, telephony_wav(), received_at=datetime.now(UTC))
        return message.media_path

    path = data_dir / hipper.query(deposit)
    assert path.is_file()
    hipper("user", "delete", "anna", "--yes")
    assert not path.exists()
