"""GET/DELETE /me/recordings: the owner's recordings only (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import wave
from datetime import UTC, datetime

from fastapi import FastAPI

from hipper.media.tones import sine
from hipper.store import recordings
from tests.conftest import UserFactory


def wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(sine(440.0, seconds).tobytes())
    return buffer.getvalue()


async def test_owner_lists_plays_and_deletes_others_get_404(app: FastAPI, make_user: UserFactory) -> None:
    alice = await make_user()
    bob = await make_user()
    state = app.state.hipper
    data = wav_bytes(1.0)
    async with state.sessions() as session:
        row = await recordings.add(
            session, state.settings.data_dir, alice.id, data, call_id="c1", remote_number="202",
            started_at=datetime(2026, 11, 25, 10, 0, tzinfo=UTC), duration_ms=1000,
        )  # fmt: skip
        recording_id = row.id
    listed = (await alice.get("/me/recordings")).json()["recordings"]
    assert [(r["id"], r["remote_number"], r["duration_ms"]) for r in listed] == [(recording_id, "202", 1000)]
    audio = await alice.get(f"/me/recordings/{recording_id}/audio")
    assert audio.status_code == 200 and audio.content == data
    assert audio.headers["content-type"] == "audio/wav"
    # Another user neither sees, plays nor deletes it.
    assert (await bob.get("/me/recordings")).json()["recordings"] == []
    assert (await bob.get(f"/me/recordings/{recording_id}/audio")).status_code == 404
    assert (await bob.delete(f"/me/recordings/{recording_id}")).status_code == 404
    assert (await alice.get(f"/me/recordings/{recording_id}/audio")).status_code == 200
    # Bad ids are named, missing ones 404.
    assert (await alice.get("/me/recordings/0/audio")).status_code == 422
    assert (await alice.delete("/me/recordings/999999")).status_code == 404
    assert (await alice.delete(f"/me/recordings/{recording_id}")).status_code == 204
    assert (await alice.get("/me/recordings")).json()["recordings"] == []
    assert not list((state.settings.data_dir / "media" / "recordings").rglob("*.wav"))


async def test_without_the_call_recording_licence_recordings_are_not_there(make_user: UserFactory) -> None:
    user = await make_user(["basic"])
    response = await user.get("/me/recordings")
    assert response.status_code == 403
    assert response.json()["code"] == "not_licensed"
