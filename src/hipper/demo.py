"""Demo data: a company with users of different licence sets, so every screen has something to show.

Everything is created through `hipper.store.admin` (the same rules as the admin API) in one transaction, and only
when the demo company does not exist yet: running `hipper demo` twice changes nothing the second time.
Voicemail audio is real 8 kHz mono WAV (spoken by espeak-ng when installed, a tone otherwise), written durably
before its row (DESIGN "media files are written atomically before their database row").
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import soundfile
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.config import Settings
from hipper.passwords import Hasher
from hipper.store import admin, devices, media_files
from hipper.store.models import CallCenterMember, CallLog, Company, User, Voicemail

DEMO_COMPANY = "Hipper Demo BV"
DEMO_PASSWORD = "hipper-demo-1"
DEMO_DEVICE_PASSWORD = "hipper-sip-1"
DEMO_PIN_HINT = "set at first login"
SAMPLE_RATE = 8000


@dataclass(frozen=True)
class DemoUser:
    username: str
    description: str


@dataclass(frozen=True)
class DemoDevice:
    auth_username: str
    username: str
    kind: str


DEMO_USERS = (
    DemoUser("anna", "everything, fixed-mobile and call center included"),
    DemoUser("bram", "basic: forwarding, voicemail, do-not-disturb"),
    DemoUser("carla", "call-center agent"),
    DemoUser("admin", "the administrator"),
)

DEMO_DEVICES = (
    DemoDevice("anna-desk", "anna", "desk"),
    DemoDevice("anna-soft", "anna", "softphone"),
    DemoDevice("bram-desk", "bram", "desk"),
    DemoDevice("carla-soft", "carla", "softphone"),
)

_ENTERPRISE_LIST = (
    {"company_name": "Taxi Centrale Amsterdam", "number": "+31206777777"},
    {"first_name": "Jeroen", "last_name": "Smit", "company_name": "Smit ICT", "number": "+31301234567"},
    {"first_name": "Huisartsenpraktijk", "last_name": "Centrum", "number": "+31205551234"},
    {"company_name": "Facilitaire dienst", "number": "+31201239999", "email": "facilitair@example.com"},
)

_PERSONAL_LISTS = {
    "anna": (
        {"first_name": "Mark", "last_name": "de Vries", "number": "+31687654321"},
        {"first_name": "Sanne", "last_name": "Peters", "company_name": "Peters Advies", "number": "+31104445566"},
    ),
    "bram": ({"first_name": "Loes", "last_name": "Jansen", "number": "+31611223344"},),
}

# (username, kind, remote number, remote name, minutes ago, talk seconds)
_CALLS = (
    ("anna", "received", "+31104445566", "Sanne Peters", 35, 184),
    ("anna", "placed", "+31687654321", "Mark de Vries", 90, 62),
    ("anna", "missed", "+31301234567", "Jeroen Smit", 150, 0),
    ("anna", "placed", "202", "Bram Jansen", 60 * 26, 45),
    ("anna", "missed", "+31612345678", "", 60 * 30, 0),
    ("bram", "received", "201", "Anna de Vries", 60 * 26, 45),
    ("bram", "missed", "+31206777777", "Taxi Centrale Amsterdam", 20, 0),
    ("bram", "placed", "+31611223344", "Loes Jansen", 75, 301),
    ("carla", "received", "+31209876543", "", 12, 240),
    ("carla", "received", "+31401112233", "", 48, 95),
    ("carla", "missed", "+31501112233", "", 66, 0),
)

# (username, caller number, caller name, minutes ago, heard, spoken text)
_VOICEMAILS = (
    ("anna", "+31301234567", "Jeroen Smit", 148, False, "Hallo Anna, met Jeroen van Smit I C T. Bel je me terug?"),
    ("anna", "+31104445566", "Sanne Peters", 60 * 28, True, "Hoi Anna, met Sanne. De offerte is verstuurd."),
    ("bram", "+31206777777", "Taxi Centrale Amsterdam", 19, False, "Goedemiddag, uw taxi staat voor de deur."),
)


def _tone(seconds: float = 2.0) -> np.ndarray:
    # Two short beeps at 440 Hz: audibly a placeholder, still a real message to play.
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    envelope = ((t % 1.0) < 0.4).astype(np.float64)
    return 0.3 * np.sin(2 * np.pi * 440 * t) * envelope


def _spoken(text: str) -> np.ndarray | None:
    """Speech from espeak-ng, resampled to 8 kHz mono by sox (a proper anti-aliasing filter); None if absent."""
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak is None or sox is None:
        return None
    with tempfile.TemporaryDirectory(prefix="hipper-demo-") as directory:
        raw, narrow = Path(directory) / "raw.wav", Path(directory) / "8k.wav"
        try:
            subprocess.run([espeak, "-v", "nl", "-s", "150", "-w", str(raw), text], check=True, timeout=30)
            subprocess.run(
                [sox, str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(narrow)], check=True, timeout=30
            )
        except (subprocess.SubprocessError, OSError):
            return None
        samples, _rate = soundfile.read(narrow, dtype="float64")
        return np.asarray(samples, dtype=np.float64)


def message_wav(text: str) -> tuple[bytes, int]:
    """A voicemail message as 8 kHz mono 16-bit WAV bytes and its duration in milliseconds."""
    samples = _spoken(text)
    if samples is None or len(samples) == 0:
        samples = _tone()
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue(), int(len(samples) * 1000 / SAMPLE_RATE)


async def create_demo(session: AsyncSession, hasher: Hasher, settings: Settings) -> bool:
    """Create the demo company once; return False (and change nothing) when it exists already.

    The caller commits. Voicemail files are written before the rows that name them; should the commit fail,
    they are left as orphans, never as rows without a file.
    """
    existing = await session.execute(select(Company.id).where(Company.name == DEMO_COMPANY))
    if existing.first() is not None:
        return False
    company = await admin.create_company(
        session, DEMO_COMPANY, "+31201230000", day_destination="500", night_destination="201"
    )
    sales = await admin.create_group(session, company, "Verkoop", "+31201230100", night_destination="201")
    support = await admin.create_group(session, company, "Support", "+31201230200", night_destination="203")
    users: dict[str, User] = {}
    users["anna"] = await admin.create_user(
        session, hasher, username="anna", password=DEMO_PASSWORD, company=company, group=sales,
        first_name="Anna", last_name="de Vries", email="anna@example.com", extension="201",
        direct_number="+31201230201", mobile_number="+31612340201", licences=["full"],
    )  # fmt: skip
    users["bram"] = await admin.create_user(
        session, hasher, username="bram", password=DEMO_PASSWORD, company=company, group=sales,
        first_name="Bram", last_name="Jansen", email="bram@example.com", extension="202",
        direct_number="+31201230202", licences=["basic"],
    )  # fmt: skip
    users["carla"] = await admin.create_user(
        session, hasher, username="carla", password=DEMO_PASSWORD, company=company, group=support,
        first_name="Carla", last_name="Bakker", email="carla@example.com", extension="203",
        direct_number="+31201230203", mobile_number="+31612340203", licences=["agent"],
    )  # fmt: skip
    await admin.create_user(
        session, hasher, username="admin", password=DEMO_PASSWORD, company=company, role="admin",
        first_name="Beheer", last_name="", licences=[],
    )  # fmt: skip

    for device in DEMO_DEVICES:
        await devices.create_device(
            session,
            users[device.username],
            auth_username=device.auth_username,
            password=DEMO_DEVICE_PASSWORD,
            realm=settings.sip_realm,
            kind=device.kind,
            name=f"{users[device.username].first_name} {device.kind}",
        )

    service = await admin.create_call_center(
        session, company, "Klantenservice", number="+31201230300", extension="300", wrap_up_seconds=30
    )
    sales_queue = await admin.create_call_center(
        session, company, "Verkooplijn", number="+31201230400", extension="400", wrap_up_seconds=15
    )
    for call_center, username in ((service, "anna"), (service, "carla"), (sales_queue, "anna"), (sales_queue, "carla")):
        await admin.add_call_center_member(session, call_center, users[username])
    # Carla has left the sales line for now, so the agent screen shows a queue to join (SPEC J3).
    member = await session.get(CallCenterMember, (sales_queue.id, users["carla"].id))
    if member is not None:
        member.joined = False
    await admin.create_hunt_group(
        session, company, "Receptie", number="+31201230500", extension="500", policy="simultaneous",
        member_user_ids=[users["anna"].id, users["bram"].id],
    )  # fmt: skip

    for values in _ENTERPRISE_LIST:
        await admin.create_directory_entry(session, company, values)
    for username, entries in _PERSONAL_LISTS.items():
        for values in entries:
            await admin.create_directory_entry(session, company, values, user=users[username])

    now = datetime.now(UTC).replace(microsecond=0)
    own_identity = {name: user.direct_number or "" for name, user in users.items()}
    for index, (username, kind, remote, name, minutes_ago, talk) in enumerate(_CALLS):
        started = now - timedelta(minutes=minutes_ago)
        answered = started + timedelta(seconds=8) if kind != "missed" else None
        session.add(
            CallLog(
                user_id=users[username].id,
                call_id=f"demo-{index}@hipper.demo",
                direction=kind,
                remote_number=remote,
                remote_name=name,
                local_identity=own_identity[username],
                started_at=started,
                answered_at=answered,
                ended_at=(answered + timedelta(seconds=talk)) if answered else started + timedelta(seconds=25),
                outcome="answered" if kind != "missed" else "no_answer",
            )
        )

    for username, caller, caller_name, minutes_ago, heard, text in _VOICEMAILS:
        user = users[username]
        wav, duration_ms = message_wav(text)
        relative = media_files.new_relative_path("voicemail", user.id)
        await media_files.write_atomically(settings.data_dir, relative, wav)
        session.add(
            Voicemail(
                user_id=user.id,
                caller_number=caller,
                caller_name=caller_name,
                received_at=now - timedelta(minutes=minutes_ago),
                duration_ms=duration_ms,
                heard=heard,
                media_path=relative,
            )
        )
    await session.flush()
    return True
