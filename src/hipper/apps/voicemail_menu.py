"""Voicemail by phone (SPEC H3/M3): listen to, save and delete messages with the keypad (docs/voicemail.md).

- From one's own registered phone: dial the access code (`voicemail_access_code`, default *86): no PIN, the
  device's digest login already proves who it is.
- From outside (the trunk or a mobile), dial the voicemail number (`voicemail_number`): the mailbox (the user's
  direct number or mobile number, as dialled in the country) then #, then the PIN then #. Three wrong tries end
  the call; wrong PINs count against the user like the app's PIN (`pin_attempts`, then locked for
  `pin_lockout_seconds`). Users without the voicemail licence have no mailbox here.

Then: "You have N new messages (and M saved messages)"; the new messages play oldest first, then the saved ones,
each as "Message received on <date> at <time>", the message, and the choices:

    1  play the message again      7  delete it        9  save it (mark heard)
    #  next message                *  end

A key pressed while something plays interrupts it. Saving and deleting go through `store.voicemails`, which
writes the outbox events MWI and the app follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from hipper.domain.licences import licensed_services
from hipper.domain.moments import aware
from hipper.engine.call import Party
from hipper.engine.directory import resolve
from hipper.media.engine import Disconnect, DtmfReceived, MediaError, PlaybackFinished
from hipper.media.prompts import say_datetime, sentence, voicemail_count
from hipper.passwords import Hasher
from hipper.store import lockouts, media_files, voicemails
from hipper.store.models import User, Voicemail

if TYPE_CHECKING:
    from hipper.engine.call import Call

log = logging.getLogger(__name__)

KEY_WAIT_SECONDS = 10.0  # after the choices, how long we wait for a key before ending
DIGIT_GAP_SECONDS = 5.0  # between the digits of a mailbox number or PIN
LICENCE = "voicemail"
PROMPT_LIMIT_SECONDS = 300.0  # a message plays at most this long (longest voicemail plus the prompts)
LOGIN_TRIES = 3
MAX_DIGITS = 20
# The other side of the call, in the caller's call log.
SERVICE_NAME = "Voicemail"


class Keypad:
    """Prompts with barge-in, and keys, on the caller's endpoint."""

    def __init__(self, call: Call) -> None:
        assert call.a.endpoint_id is not None
        self.call = call
        self.endpoint_id = call.a.endpoint_id
        self.events = call.events[self.endpoint_id]
        self.language = call.settings.prompt_language

    async def say(self, files: tuple[Path, ...]) -> str | None:
        """Play `files`; a key pressed meanwhile stops the playback and is returned. None: played to the end."""
        playback = await self.call.play(self.endpoint_id, files)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROMPT_LIMIT_SECONDS
        while True:
            event = await self.call.race(self.events.get(), max(0.0, deadline - loop.time()))
            if event is None:
                return None
            if isinstance(event, PlaybackFinished) and event.playback_id == playback:
                return None
            if isinstance(event, DtmfReceived):
                with contextlib.suppress(MediaError):
                    await self.call.media.execute(Disconnect(self.endpoint_id))
                return event.digit

    async def key(self, limit: float) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            event = await self.call.race(self.events.get(), max(0.0, deadline - loop.time()))
            if event is None:
                return None
            if isinstance(event, DtmfReceived):
                return event.digit

    async def digits(self, prompt: tuple[Path, ...]) -> str | None:
        """A number ended by #, typed during or after `prompt`. None when nothing came in time."""
        typed = ""
        digit = await self.say(prompt)
        while True:
            if digit is None:
                digit = await self.key(DIGIT_GAP_SECONDS if typed else KEY_WAIT_SECONDS)
                if digit is None:
                    return typed or None
            if digit == "#":
                return typed
            if digit.isdigit() and len(typed) < MAX_DIGITS:
                typed += digit
            digit = None

    async def words(self, keys: list[str]) -> str | None:
        return await self.say(sentence(self.language, keys))


async def _messages(call: Call, user_id: int) -> list[Voicemail]:
    """New messages oldest first, then the saved (heard) ones oldest first."""
    async with call.b2bua.sessions() as session:
        rows = await voicemails.list_for(session, user_id)
    rows.reverse()
    return [row for row in rows if not row.heard] + [row for row in rows if row.heard]


async def _mark_heard(call: Call, user_id: int, message_id: int) -> None:
    async with call.b2bua.sessions() as session:
        await voicemails.mark(session, user_id, [message_id], True)
        await session.commit()


async def _delete(call: Call, user_id: int, message_id: int) -> None:
    async with call.b2bua.sessions() as session:
        paths = await voicemails.delete_many(session, user_id, [message_id])
        await session.commit()
    # Row first, file after: a crash in between leaves an orphan file, never a row without its audio.
    await media_files.remove(call.settings.data_dir, paths)


async def listen(call: Call, user_id: int) -> None:
    """The mailbox menu for `user_id` on an answered call; ends the call."""
    keypad = Keypad(call)
    zone = ZoneInfo(call.settings.notify_time_zone)
    messages = await _messages(call, user_id)
    new = sum(1 for message in messages if not message.heard)
    key = await keypad.say(voicemail_count(keypad.language, new, len(messages) - new))
    index = 0
    ended = False
    while index < len(messages) and not call.over.is_set():
        message = messages[index]
        received = aware(message.received_at)
        when = say_datetime(keypad.language, received.astimezone(zone), datetime.now(zone))
        try:
            audio = media_files.resolve(call.settings.data_dir, message.media_path)
        except media_files.MediaPathError:
            index += 1
            continue
        files = (
            sentence(keypad.language, ["message_received_on", *when])
            + ((audio,) if audio.is_file() else ())
            + sentence(keypad.language, ["menu_message"])
        )
        key = await keypad.say(files)
        if key is None:
            key = await keypad.key(KEY_WAIT_SECONDS)
        if key is None or key == "*":
            ended = True
            break
        if key == "1":
            continue
        if key == "7":
            await _delete(call, user_id, message.id)
            await keypad.words(["message_deleted"])
            index += 1
        elif key == "9":
            await _mark_heard(call, user_id, message.id)
            await keypad.words(["message_saved"])
            index += 1
        elif key == "#":
            index += 1
        else:
            await keypad.words(["invalid_choice"])
    if messages and not ended and not call.over.is_set():
        await keypad.words(["no_more_messages"])
    if not call.over.is_set():
        await keypad.words(["goodbye"])
    call.over.set()


async def _login(call: Call, hasher: Hasher, mailbox: str, pin: str) -> int | None:
    """The mailbox owner's id when the PIN is right. Wrong PINs count on the user like the app's PIN step-up
    (`pin_attempts` within the lockout lock the PIN for `pin_lockout_seconds`, on every node), claimed atomically
    before the check (store/lockouts.py); a locked PIN fails even when right. An unknown mailbox costs the same
    hashing time as a known one."""
    settings = call.settings
    async with call.b2bua.sessions() as session:
        resolved = await resolve(session, mailbox, None, settings.default_region) if mailbox else None
        owner = None
        if resolved is not None and resolved.kind == "user" and resolved.callee is not None:
            owner = await session.get(User, resolved.callee.user_id)
        licensed = owner is not None and LICENCE in licensed_services(frozenset(owner.licences or ()))
    if owner is None or not licensed:
        await hasher.verify(None, pin)
        return None
    pin_hash = owner.pin_hash
    limit = lockouts.Limit(settings.pin_attempts, settings.pin_lockout_seconds)
    right = await lockouts.check(
        call.b2bua.sessions,
        owner.id,
        lockouts.Counter.PIN,
        limit,
        datetime.now(UTC),
        lambda: hasher.verify(pin_hash, pin),
    )
    return owner.id if right else None


async def from_outside(call: Call) -> None:
    """Mailbox number and PIN, then the menu; three wrong tries end the call."""
    await answer(call)
    keypad = Keypad(call)
    hasher = Hasher(call.settings.argon2_time_cost, call.settings.argon2_memory_cost)
    for _ in range(LOGIN_TRIES):
        mailbox = await keypad.digits(sentence(keypad.language, ["enter_mailbox"]))
        if mailbox is None or call.over.is_set():
            break
        pin = await keypad.digits(sentence(keypad.language, ["enter_pin"]))
        if pin is None or call.over.is_set():
            break
        owner_id = await _login(call, hasher, mailbox, pin)
        if owner_id is not None:
            log.info("voicemail.menu_login", extra={"call_id": call.call_id, "user_id": owner_id})
            await listen(call, owner_id)
            return
        log.info("voicemail.menu_wrong_pin", extra={"call_id": call.call_id})
        await keypad.words(["wrong_pin"])
    if not call.over.is_set():
        await keypad.words(["goodbye"])
    call.over.set()


async def _has_mailbox(call: Call, user_id: int) -> bool:
    async with call.b2bua.sessions() as session:
        user = await session.get(User, user_id)
    return user is not None and LICENCE in licensed_services(frozenset(user.licences or ()))


async def answer(call: Call) -> None:
    """Answer the caller: from here on this is an answered call like any other.

    The call's outcome becomes "answered" (before, nothing marked it so and the summary said "failed"); a caller
    who is one of our users gets an answered `placed` row in their call log ("Voicemail", the number dialled),
    is on a call for as long as they listen (a second call finds them busy or waiting, per their settings), and
    their app sees it in the live calls (`call.started`, then `call.ended` with the call log).
    """
    await call.answer_caller()
    if call.a.answered and call.answered_at is None:
        call.mark_answered()


async def handles(call: Call, dialled: str) -> bool:
    """Whether `dialled` is the voicemail service; if so the whole call is handled here."""
    settings = call.settings
    own_phone = call.caller.origin == "device" and call.caller.user_id is not None
    if dialled == settings.voicemail_access_code or (
        settings.voicemail_number and dialled == settings.voicemail_number
    ):
        if call.caller.user_id is not None and not call.caller.for_callback:
            call.placed = Party(call.caller.user_id, "placed", dialled, remote_name=SERVICE_NAME)
        if own_phone and call.caller.user_id is not None:
            if not await _has_mailbox(call, call.caller.user_id):
                # Documented (docs/voicemail.md): no mailbox without the licence, said with a final 403.
                if call.placed is not None:
                    call.placed.outcome.append("no-voicemail-licence")
                call.fail(403, "No voicemail licence")
                return True
            await answer(call)
            await listen(call, call.caller.user_id)
        else:
            await from_outside(call)
        return True
    return False
