"""Voicemail deposit (SPEC H3): the caller hears the user's greeting and a tone, then leaves a message.

The message is recorded by the media engine into a spool file (the engine writes it to a hidden temp name and
renames it only when the recording is stopped), then handed to `store.voicemails.deposit`, which writes it
durably under media/voicemail (temp, fsync, rename, fsync the directory) and only then commits the row with its
`voicemail.deposited` event. A process killed mid-message therefore leaves at most a `.part` file in the spool,
which is never a message: no row exists without its complete file (docs/voicemail.md).

The recording ends when the caller hangs up, after `voicemail_silence_seconds` without sound (the silent tail is
cut off again, keeping a moment of it), or at `voicemail_max_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hipper.domain.greetings import GreetingCase, greeting_case
from hipper.domain.routing.plan import DiversionReason
from hipper.media.engine import SILENCE_LEVEL, MediaError, Started, StartRecording, StopRecording
from hipper.media.g711 import SAMPLE_RATE
from hipper.media.prompts import PromptError, prompt_path, sentence, tone_path
from hipper.media.wavfile import WavFormatError, read_wav, write_wav
from hipper.offload import run_cpu
from hipper.store import greetings, media_files, voicemails

if TYPE_CHECKING:
    from hipper.engine.call import Call

log = logging.getLogger(__name__)

SPOOL_DIR = "spool"
# Silence kept at the end of a message that ended on silence (a cut right after the last word sounds abrupt).
KEEP_SILENCE_SECONDS = 1.0
# Shorter than this is a caller who hung up at the tone: no message.
MIN_MESSAGE_SECONDS = 0.5
POLL_SECONDS = 0.2
# Spool files untouched this long belong to no running recording (a call recording may last hours).
STALE_SPOOL_SECONDS = 86400.0


def spool_directory(data_dir: Path) -> Path:
    return data_dir / SPOOL_DIR / "voicemail"


def sweep_spool(data_dir: Path, older_than_seconds: float = STALE_SPOOL_SECONDS) -> int:
    """Remove spool files a killed process left behind (hidden `.part` temp files and finished files it never
    stored), once they are older than any running recording could be. Returns how many were removed."""
    removed = 0
    cutoff = time.time() - older_than_seconds
    for path in (data_dir / SPOOL_DIR).rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def system_greeting(language: str, number: str, case: GreetingCase = "no_answer") -> tuple[Path, ...]:
    """ "The person you are calling, 2 0 2, is unavailable (is busy). Please leave a message after the tone." """
    digits: list[Path] = []
    for digit in number:
        if digit.isdigit():
            with contextlib.suppress(PromptError):
                digits.append(prompt_path(language, f"n{digit}"))
    reason = "reason_busy" if case == "busy" else "reason_unavailable"
    return (
        sentence(language, ["person_you_are_calling"])
        + tuple(digits)
        + sentence(language, ["is", reason, "leave_message_after_tone"])
    )


async def greeting_files(call: Call, user_id: int, called_number: str, case: GreetingCase) -> tuple[Path, ...]:
    """The user's greeting for `case` (busy falls back to no answer), or the system greeting naming the number."""
    data_dir = call.settings.data_dir
    async with call.b2bua.sessions() as session:
        active = await greetings.active_for(session, user_id, case)
    if active is not None:
        try:
            path = media_files.resolve(data_dir, active.media_path)
            if path.is_file():
                return (path,)
        except media_files.MediaPathError:
            pass
        log.warning("voicemail.greeting_missing", extra={"user_id": user_id, "greeting_id": active.id})
    return system_greeting(call.settings.prompt_language, called_number, case)


def _trimmed_wav(path: Path, ended_on_silence: bool, max_seconds: float) -> tuple[bytes, int]:
    """The recorded file's bytes, and its duration in ms (0 when nothing but silence was recorded: a caller who
    said nothing leaves no message). A message that ended on silence keeps `KEEP_SILENCE_SECONDS` of it after
    the last sound, and no message is longer than `max_seconds`: both measured on the samples themselves, not on
    when the recording was stopped, which may be later on a busy machine."""
    samples = read_wav(path)[: int(max_seconds * SAMPLE_RATE)]
    if ended_on_silence:
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SILENCE_LEVEL)
        end = int(loud[-1]) + 1 + int(KEEP_SILENCE_SECONDS * SAMPLE_RATE) if len(loud) else 0
        samples = samples[:end]
    if not len(samples) or int(np.abs(samples).max()) <= SILENCE_LEVEL:
        return b"", 0
    trimmed = path.with_name(path.name + ".trimmed.wav")
    write_wav(trimmed, samples)
    data = trimmed.read_bytes()
    trimmed.unlink(missing_ok=True)
    return data, len(samples) * 1000 // SAMPLE_RATE


async def record_message(call: Call, endpoint_id: str) -> tuple[Path, bool] | None:
    """Record what the caller says until hang-up, silence or the maximum; the spool file and whether it ended
    on silence (its silent tail is then cut). None when the recording could not start."""
    settings = call.settings
    spool = spool_directory(settings.data_dir) / f"{uuid.uuid4().hex}.wav"
    try:
        started = await call.media.execute(StartRecording((endpoint_id,), spool))
    except MediaError:
        log.exception("voicemail.record_failed", extra={"call_id": call.call_id})
        return None
    assert isinstance(started, Started)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.voicemail_max_seconds
    ended_on_silence = False
    try:
        while not call.over.is_set():
            if loop.time() >= deadline:
                break
            quiet = call.media.recording_quiet_seconds(started.id)
            if quiet >= settings.voicemail_silence_seconds:
                ended_on_silence = True
                break
            await call.race(asyncio.sleep(POLL_SECONDS), POLL_SECONDS * 2)
    finally:
        await call.media.execute(StopRecording(started.id))
    return spool, ended_on_silence


async def leave_message(call: Call, user_id: int, called_number: str, cause: DiversionReason) -> None:
    """The whole deposit: answer, greeting, tone, record, store; then say goodbye if the caller is still there.

    `cause` is why the call came to voicemail (the plan's `VoicemailStep.cause`): it picks the greeting."""
    await call.answer_caller()
    endpoint_id = call.a.endpoint_id
    assert endpoint_id is not None
    language = call.settings.prompt_language
    case = greeting_case(cause)
    log.info("voicemail.greeting", extra={"call_id": call.call_id, "cause": cause, "case": case})
    files = await greeting_files(call, user_id, called_number, case)
    await call.play_to_end(endpoint_id, (*files, tone_path("beep")))
    if call.over.is_set():
        return
    received_at = datetime.now(UTC)
    recorded = await record_message(call, endpoint_id)
    if recorded is None:
        call.over.set()
        return
    spool, ended_on_silence = recorded
    try:
        data, duration_ms = await run_cpu(_trimmed_wav, spool, ended_on_silence, call.settings.voicemail_max_seconds)
        if duration_ms >= MIN_MESSAGE_SECONDS * 1000:
            async with call.b2bua.sessions() as session:
                row = await voicemails.deposit(
                    session,
                    call.settings.data_dir,
                    user_id,
                    data,
                    received_at=received_at,
                    duration_ms=duration_ms,
                    caller_number=(call.caller.number or "")[:64],
                    caller_name=call.caller.display[:200],
                )
            log.info("voicemail.deposited", extra={"call_id": call.call_id, "voicemail_id": row.id})
    except (OSError, WavFormatError):
        log.exception("voicemail.deposit_failed", extra={"call_id": call.call_id})
    finally:
        await run_cpu(spool.unlink, True)
    if not call.over.is_set():
        await call.play_to_end(endpoint_id, sentence(language, ["goodbye"]))
    call.over.set()
