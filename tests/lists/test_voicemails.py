"""Voicemail list (SPEC C2): list, play (with Range), heard/new, delete with files; licence and isolation."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from hipper.media.audio_files import AudioRejected, pcm16_to_wav
from hipper.store import voicemails
from hipper.store.models import Event, Voicemail
from tests.conftest import UserFactory
from tests.lists.conftest import Exchange, dominant_frequency, telephony_wav


def media_files_of(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "media").rglob("*") if p.is_file())


async def test_list_play_mark_delete(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user()
    first = await exchange.voicemail(user.id, frequency=440)
    second = await exchange.voicemail(user.id, number="0201234567", frequency=1000)
    listing = (await user.get("/me/voicemails")).json()
    assert listing["new_count"] == 2
    assert [m["id"] for m in listing["messages"]] == [second.id, first.id]
    assert listing["messages"][1]["whatsapp"] is True and listing["messages"][0]["whatsapp"] is False
    audio = await user.get(f"/me/voicemails/{second.id}/audio")
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/wav"
    assert "attachment" in audio.headers["content-disposition"]
    assert dominant_frequency(audio.content) == pytest.approx(1000, abs=2)

    ranged = await user.client.get(
        f"/api/v1/me/voicemails/{second.id}/audio", headers={**user.headers, "Range": "bytes=0-11"}
    )
    assert ranged.status_code == 206
    assert ranged.content == audio.content[:12]
    assert ranged.content[:4] == b"RIFF" and ranged.content[8:12] == b"WAVE"

    heard = await user.client.patch(f"/api/v1/me/voicemails/{first.id}", json={"heard": True}, headers=user.headers)
    assert heard.status_code == 200 and heard.json()["heard"] is True
    assert (await user.get("/me/voicemails", params={"status": "heard"})).json()["messages"][0]["id"] == first.id
    assert [m["id"] for m in (await user.get("/me/voicemails", params={"status": "new"})).json()["messages"]] == [
        second.id
    ]
    assert (await user.get("/me")).json()["new_voicemails"] == 1
    again = await user.client.patch(f"/api/v1/me/voicemails/{first.id}", json={"heard": False}, headers=user.headers)
    assert again.json()["heard"] is False

    data_dir = exchange.state.settings.data_dir
    assert len(media_files_of(data_dir)) == 2
    deleted = await user.post("/me/voicemails/delete", json={"ids": [first.id, second.id]})
    assert deleted.status_code == 204
    assert (await user.get("/me/voicemails")).json() == {"new_count": 0, "messages": []}
    assert media_files_of(data_dir) == []
    async with exchange.state.sessions() as session:
        types = list((await session.execute(select(Event.type).where(Event.user_id == user.id))).scalars())
    assert types.count("voicemail.deposited") == 2
    assert "voicemail.changed" in types and "voicemail.deleted" in types


async def test_invalid_input_names_the_field(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user()
    message = await exchange.voicemail(user.id)
    bad = await user.client.patch(f"/api/v1/me/voicemails/{message.id}", json={"heard": "maybe"}, headers=user.headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "heard"]
    status = await user.get("/me/voicemails", params={"status": "old"})
    assert status.status_code == 422 and status.json()["detail"][0]["loc"][-1] == "status"
    ids = await user.post("/me/voicemails/delete", json={"ids": []})
    assert ids.status_code == 422 and ids.json()["detail"][0]["loc"][:2] == ["body", "ids"]


async def test_unlicensed_user_gets_403_everywhere(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user(["do-not-disturb"])
    message = await exchange.voicemail(user.id)
    for response in (
        await user.get("/me/voicemails"),
        await user.get(f"/me/voicemails/{message.id}/audio"),
        await user.client.patch(f"/api/v1/me/voicemails/{message.id}", json={"heard": True}, headers=user.headers),
        await user.post("/me/voicemails/delete", json={"ids": [message.id]}),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "not_licensed"


async def test_another_user_can_neither_see_play_mark_nor_delete(make_user: UserFactory, exchange: Exchange) -> None:
    alice = await make_user()
    bob = await make_user()
    message = await exchange.voicemail(alice.id)
    missing_id = message.id + 1000
    assert (await bob.get("/me/voicemails")).json() == {"new_count": 0, "messages": []}
    for target in (message.id, missing_id):
        play = await bob.get(f"/me/voicemails/{target}/audio")
        mark = await bob.client.patch(f"/api/v1/me/voicemails/{target}", json={"heard": True}, headers=bob.headers)
        # Someone else's message and a message that does not exist answer exactly alike.
        assert (play.status_code, play.json()) == (404, {"detail": "no such voicemail message", "code": "not_found"})
        assert (mark.status_code, mark.json()) == (404, {"detail": "no such voicemail message", "code": "not_found"})
    assert (await bob.post("/me/voicemails/delete", json={"ids": [message.id]})).status_code == 204
    listing = (await alice.get("/me/voicemails")).json()
    assert [(m["id"], m["heard"]) for m in listing["messages"]] == [(message.id, False)]
    assert (await alice.get(f"/me/voicemails/{message.id}/audio")).status_code == 200


async def test_deposit_writes_the_file_durably_before_the_row(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user()
    data_dir = exchange.state.settings.data_dir
    wav = telephony_wav(700)
    seen_before_row: list[bool] = []
    async with exchange.state.sessions() as session:
        original_flush = session.flush

        async def flush_checking_file(*args: object, **kwargs: object) -> None:
            # At the moment the row reaches the database the file must already be complete on disk.
            pending = [o for o in session.new if isinstance(o, Voicemail)]
            for row in pending:
                path = data_dir / row.media_path
                seen_before_row.append(path.is_file() and path.read_bytes() == wav)
            await original_flush(*args, **kwargs)  # type: ignore[arg-type]

        session.flush = flush_checking_file  # type: ignore[method-assign]
        row = await voicemails.deposit(
            session, data_dir, user.id, wav, received_at=exchange.tick(), duration_ms=1000, caller_number="201"
        )
    assert seen_before_row == [True]
    directory = (data_dir / row.media_path).parent
    assert [p.name for p in directory.iterdir()] == [Path(row.media_path).name]  # no temporary file left


async def test_failed_commit_removes_the_written_file(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user()
    data_dir = exchange.state.settings.data_dir
    async with exchange.state.sessions() as session:
        with pytest.raises(Exception):  # noqa: B017  # the database refuses a row for a user that does not exist
            await voicemails.deposit(
                session, data_dir, user.id + 999, telephony_wav(), received_at=exchange.tick(), duration_ms=1000
            )
    assert media_files_of(data_dir) == []


async def test_deposit_measures_the_message_and_refuses_what_is_no_audio(
    make_user: UserFactory, exchange: Exchange
) -> None:
    user = await make_user()
    data_dir = exchange.state.settings.data_dir
    async with exchange.state.sessions() as session:
        row = await voicemails.deposit(
            session, data_dir, user.id, pcm16_to_wav(bytes(2 * 8000 * 3)), received_at=exchange.tick()
        )
    assert row.duration_ms == 3000
    async with exchange.state.sessions() as session:
        with pytest.raises(AudioRejected):
            await voicemails.deposit(session, data_dir, user.id, b"not a wav", received_at=exchange.tick())
    assert len(media_files_of(data_dir)) == 1
