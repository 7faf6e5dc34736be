"""Call recording in the five modes of SPEC I, and the in-call DTMF codes that drive it (and the three-way call).

Until the live-call-control API exists, a user drives recording and conferencing from the phone's keypad during
an answered call (RFC 4733 digits; documented in docs/call-recording.md):

    *1            record: keep this call's recording (on demand) / start recording now (on demand, user start)
    *2            pause the recording (modes with pause/resume)
    *3            resume it
    *7<number>#   add a third party (they ring; you talk to them while the other party waits)
    *8            merge everyone into a three-way conference

Modes (the administrator's `call-recording` setting of the user):

- always: recorded from the answer to the end; *2/*3 do nothing.
- always_pause_resume: the same, with pause and resume.
- on_demand: recorded from the answer, but kept only when the user pressed *1 during the call.
- on_demand_user_start: recorded from the moment the user presses *1.
- never: not recorded.

A recording holds both directions mixed. A paused stretch is written as silence, so the recording keeps the
call's timeline. The engine records into a spool file (hidden temp name, renamed when stopped); a kept recording
is then stored like a voicemail message (`store.recordings.add`: file atomically, then the row), a discarded one
is removed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hipper.apps.conference import ThreeWay
from hipper.domain.services.call_recording import PAUSE_RESUME_MODES, CallRecording
from hipper.engine.waiting import race_until
from hipper.media.engine import (
    DtmfReceived,
    MediaError,
    MediaEvent,
    PauseRecording,
    ResumeRecording,
    Started,
    StartRecording,
    StopRecording,
)
from hipper.media.g711 import SAMPLE_RATE
from hipper.media.wavfile import read_wav
from hipper.offload import run_cpu
from hipper.store import recordings

if TYPE_CHECKING:
    from hipper.config import Settings
    from hipper.engine.call import Call, CallHost
    from hipper.engine.leg import CalleeLeg
    from hipper.engine.waiting import Ending

log = logging.getLogger(__name__)

# Digits of one code must follow each other within this time; a lone * is forgotten after it.
CODE_GAP_SECONDS = 5.0
MAX_NUMBER_DIGITS = 20


@dataclass(frozen=True)
class Code:
    action: str  # record | pause | resume | add | merge
    number: str = ""


class CodeReader:
    """Turns single DTMF digits into in-call codes (*1, *2, *3, *7<number>#, *8)."""

    def __init__(self) -> None:
        self.buffer = ""
        self.last = 0.0

    def feed(self, digit: str, now: float) -> Code | None:
        if self.buffer and now - self.last > CODE_GAP_SECONDS:
            self.buffer = ""
        self.last = now
        if not self.buffer:
            self.buffer = "*" if digit == "*" else ""
            return None
        if self.buffer == "*":
            simple = {"1": "record", "2": "pause", "3": "resume", "8": "merge"}.get(digit)
            if simple is not None:
                self.buffer = ""
                return Code(simple)
            self.buffer = "*7" if digit == "7" else ("*" if digit == "*" else "")
            return None
        # Collecting *7<number>#
        if digit == "#":
            number, self.buffer = self.buffer[2:], ""
            return Code("add", number) if number else None
        if digit.isdigit() and len(self.buffer) < 2 + MAX_NUMBER_DIGITS:
            self.buffer += digit
        else:
            self.buffer = "*" if digit == "*" else ""
        return None


class Recorded(Protocol):
    """What a recording follows: a call (a callback from the app too: apps/click_to_dial.py records its two legs)."""

    @property
    def b2bua(self) -> CallHost: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def over(self) -> Ending: ...

    @property
    def call_id(self) -> str: ...


# Each call's running recorders by user: live call control (apps/call_control.py) drives the same recorder as the
# keypad codes. A recorder removes itself when its owner closes it (`CallRecorder.close`). The keys cannot be weak: a
# recorder holds its call, so a weak key would never die, and every recorded call would stay in memory for good.
_RECORDERS: dict[Recorded, dict[int, CallRecorder]] = {}


def recorders_of(call: Recorded) -> dict[int, CallRecorder]:
    return _RECORDERS.get(call, {})


async def recording_for(
    call: Recorded, user_id: int, endpoints: tuple[str, str], remote_number: str
) -> CallRecorder | None:
    """The user's recorder for this call per their mode (None: "never"), known to call control; started at
    once unless the user starts it. `close` it when the call ends."""
    # Cached with the user's routing snapshot and dropped by the same outbox events (engine/snapshots.py). Raced
    # with the call's end: it is read in the call's own task, whose teardown (the other party's BYE) must not wait
    # for a slow database; once started, a recording is finished whole.
    settings = await race_until(call.b2bua.snapshots.document(user_id, CallRecording), call.over, None)
    if settings is None:
        return None
    assert isinstance(settings, CallRecording)
    if settings.mode == "never":
        return None
    recorder = CallRecorder(call, user_id, settings.mode, endpoints, remote_number)
    _RECORDERS.setdefault(call, {})[user_id] = recorder
    if settings.mode != "on_demand_user_start":
        try:
            await recorder.start()
        except BaseException:  # cancelled with the call: nobody will close it, so it closes itself
            await recorder.close()
            raise
    return recorder


async def user_part_over(call: Recorded, user_id: int) -> None:
    """The user left the call while it goes on (transferred, or out of a three-way call, either merge): their
    recording stops now — it holds nothing of the others' talk after they left — and is stored (or dropped, per
    their mode) in a task of the node's. The one way both the app (apps/call_control.py) and the phone's three-way
    call (apps/conference.py `Merged`) end it."""
    recorder = recorders_of(call).get(user_id)
    if recorder is not None:
        await recorder.close()


def spool_directory(data_dir: Path) -> Path:
    return data_dir / "spool" / "recordings"


class CallRecorder:
    """One user's recording of one call, following their mode."""

    def __init__(self, call: Recorded, user_id: int, mode: str, endpoints: tuple[str, str], remote_number: str) -> None:
        self.call = call
        self.user_id = user_id
        self.mode = mode
        self.endpoints = endpoints
        self.remote_number = remote_number
        self.recording_id: str | None = None
        self.path: Path | None = None
        self.started_at: datetime | None = None
        self.keep = mode in ("always", "always_pause_resume")
        self.paused = False

    async def start(self) -> None:
        if self.recording_id is not None or self.call.over.is_set():
            return
        path = spool_directory(self.call.settings.data_dir) / f"{uuid.uuid4().hex}.wav"
        try:
            started = await self.call.b2bua.media.execute(StartRecording(self.endpoints, path))
        except MediaError:
            log.exception("recording.start_failed", extra={"call_id": self.call.call_id})
            return
        assert isinstance(started, Started)
        self.recording_id, self.path, self.started_at = started.id, path, datetime.now(UTC)
        log.info("recording.started", extra={"call_id": self.call.call_id, "user_id": self.user_id})

    async def on_code(self, code: Code) -> None:
        if code.action == "record":
            if self.mode == "on_demand":
                self.keep = True
            elif self.mode == "on_demand_user_start":
                self.keep = True
                await self.start()
        elif code.action in ("pause", "resume") and self.mode in PAUSE_RESUME_MODES:
            if self.recording_id is None:
                return
            pause = code.action == "pause"
            if pause != self.paused:
                await self.set_paused(pause)

    async def set_paused(self, pause: bool) -> None:
        """Pause or resume the running recording (the keypad's *2/*3, the app's buttons)."""
        assert self.recording_id is not None
        command = PauseRecording(self.recording_id) if pause else ResumeRecording(self.recording_id)
        await self.call.b2bua.media.execute(command)
        self.paused = pause

    async def close(self) -> None:
        """The user's part in the call is over: stop now (while its endpoints are live), and call control no longer
        finds the recorder. Storing it goes on in a task of the node's, so the call's teardown — the other party's
        BYE — does not wait for the file and its database row."""
        try:
            storing = await self._stop()
            if storing is not None:
                self.call.b2bua.spawn(storing)
        finally:
            recorders = _RECORDERS.get(self.call)
            if recorders is not None and recorders.get(self.user_id) is self:
                del recorders[self.user_id]
                if not recorders:
                    del _RECORDERS[self.call]

    async def finish(self) -> None:
        """Stop; store the recording when it is to be kept, else remove it (the user may start another)."""
        storing = await self._stop()
        if storing is not None:
            await storing

    async def _stop(self) -> Coroutine[Any, Any, None] | None:
        """Stop the running recording; what stores (or discards) its file, None when nothing was recording."""
        if self.recording_id is None or self.path is None or self.started_at is None:
            return None
        recording_id, self.recording_id = self.recording_id, None
        try:
            await self.call.b2bua.media.execute(StopRecording(recording_id))
        except MediaError:
            log.exception("recording.stop_failed", extra={"call_id": self.call.call_id})
            return None
        return self._store(self.path, self.started_at, keep=self.keep)

    async def _store(self, path: Path, started_at: datetime, *, keep: bool) -> None:
        """Keep the stopped recording's file (moved to the media directory, then its row committed) or drop it."""
        try:
            if not keep:
                log.info("recording.discarded", extra={"call_id": self.call.call_id, "user_id": self.user_id})
                return
            data = await run_cpu(path.read_bytes)
            samples = await run_cpu(read_wav, path)
            async with self.call.b2bua.sessions() as session:
                await recordings.add(
                    session,
                    self.call.settings.data_dir,
                    self.user_id,
                    data,
                    call_id=self.call.call_id,
                    remote_number=self.remote_number,
                    started_at=started_at,
                    duration_ms=len(samples) * 1000 // SAMPLE_RATE,
                )
        except Exception:  # a disk or database error: logged (the task storing it has nobody to tell)
            log.exception("recording.store_failed", extra={"call_id": self.call.call_id})
        finally:
            await run_cpu(path.unlink, True)


class KeypadCodes:
    """One user's side of an answered call: their keypad codes (a three-way call's Add and Merge, their recording's
    *1/*2/*3) and their recording. Plain state, no task: the call hands it the user's media events through its
    inbox (`Call.listen`), one after the other with the call's requests.

    Adding a party rings it for up to half a minute: that runs in a task of the call's of its own (its end cancels
    it), so the inbox goes on meanwhile — a BYE, a hold, the recording's codes. The Add and Merge codes that follow
    it wait for it, in order (a Merge pressed while the added party rings merges once it answered)."""

    def __init__(self, call: Call, user_id: int, own: str, other: str, recorder: CallRecorder | None) -> None:
        self.call = call
        self.user_id = user_id
        self.recorder = recorder
        self.conference = ThreeWay(call, user_id, own, other, user_part_over)
        self.reader = CodeReader()
        self.adding = False  # an Add's task runs (the Add/Merge codes after it wait in `waiting`)
        self.waiting: deque[Code] = deque()

    async def on_media(self, event: MediaEvent) -> None:
        if not isinstance(event, DtmfReceived):
            return
        code = self.reader.feed(event.digit, asyncio.get_running_loop().time())
        if code is None:
            return
        log.info("call.code", extra={"call_id": self.call.call_id, "user_id": self.user_id, "code": code.action})
        if code.action not in ("add", "merge"):
            await self._run(code)
        elif self.adding:
            self.waiting.append(code)
        elif code.action == "add":
            self.adding = True
            self.call.spawn(self._conference(code))
        else:
            await self._run(code)

    async def _conference(self, code: Code) -> None:
        try:
            await self._run(code)
            while self.waiting:
                await self._run(self.waiting.popleft())
        finally:
            self.adding = False

    async def _run(self, code: Code) -> None:
        try:
            if code.action == "add":
                await self.conference.add(code.number)
            elif code.action == "merge":
                await self.conference.merge()
            elif self.recorder is not None:
                await self.recorder.on_code(code)
        except Exception:  # e.g. no media port for the added party: the call and its other codes go on
            log.exception("call.code_failed", extra={"call_id": self.call.call_id, "code": code.action})


async def user_side(
    call: Call, user_id: int, own: str, other: str, remote_number: str, *, record: bool = True
) -> KeypadCodes | None:
    """Set up one user's side of an answered call: their recording first (unless another part records it; closed
    at the call's end, `Call.at_end`), then their keypad codes — digits pressed meanwhile are handled after it."""
    if own not in call.events:
        return None
    recorder = None
    if record:
        try:
            recorder = await recording_for(call, user_id, (own, other), remote_number)
        except Exception:  # the settings could not be read: the call goes on unrecorded, its keypad codes work
            log.exception("call.in_call_failed", extra={"call_id": call.call_id, "user_id": user_id})
        if recorder is not None:
            call.at_end(recorder.close)
    codes = KeypadCodes(call, user_id, own, other, recorder)
    call.listen(own, codes.on_media)
    return codes


async def in_call(call: Call, leg: CalleeLeg) -> None:
    """When a call is answered (engine/call.py `connect`): the side of each involved user."""
    if call.a.endpoint_id is None or leg.endpoint_id is None:
        return
    if call.caller.user_id is not None and call.caller.user_present:
        # A callback's far leg comes back to the exchange as a call of the user's (click_to_dial.loopback_target):
        # the user's keypad codes arrive here, but the callback records the user's two legs itself.
        user_side_of = (call.caller.user_id, call.a.endpoint_id, leg.endpoint_id, leg.to.uri.user or "")
        await user_side(call, *user_side_of, record=not call.caller.for_callback)
    if leg.user_id is not None and leg.user_id != call.caller.user_id:
        await user_side(call, leg.user_id, leg.endpoint_id, call.a.endpoint_id, call.caller.number or "")
