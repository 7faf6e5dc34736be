"""Follow the outbox and notify: e-mail and push for a deposited voicemail, push for a missed call.

The events are the ones the store already writes in the change's own transaction — `voicemail.deposited`
(store/voicemails.py) and `call_log.added` with kind `missed` (store/call_logs.py) — so call processing needs
to know nothing about notifications, and a notification is only ever sent for a change that was committed.

Reading position is a row in `notification_cursors`, advanced with a compare-and-set before the events are
handled: a restart resumes where it stopped, and with several nodes exactly one claims each batch. The price
is at-most-once: a node that dies between claiming and sending drops those notifications, which is better
than users getting every notification twice.

Event ids are handed out when a transaction inserts its row, not when it commits, so a lower id can become
visible after a higher one. The cursor only moves up to the newest event older than `settle_seconds` below
the first younger one; a change whose transaction stays open longer than that after writing its event could
be passed over (writers commit right away).

Cost: a commit wakes the dispatcher, but while an unsettled event is pending it sleeps until that event
settles instead of reading on every commit, and it reads payloads only of the events it handles (filtered in
SQL). Before, each wake-up re-read and decoded the whole unsettled second of the outbox, which grew with the
square of the write rate (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.api.state import AppState, EventHub
from hipper.config import Settings
from hipper.domain.app_settings import SERVICE as APP_SETTINGS
from hipper.domain.app_settings import AppSettings
from hipper.domain.licences import licensed_services
from hipper.domain.moments import aware
from hipper.domain.services.voicemail import Voicemail as VoicemailSettings
from hipper.notify import email, push, vapid
from hipper.offload import run_cpu
from hipper.store import media_files, service_settings
from hipper.store.app_settings import push_enabled
from hipper.store.models import CallLog, Event, NotificationCursor, ServiceSetting, User, Voicemail

log = logging.getLogger(__name__)

CURSOR = "notifications"
# The events `handle` acts on, chosen in SQL so that no other event's payload is ever read: most of the
# outbox is settings changes and answered or placed calls. `handle` checks the same again on the payload.
OURS = or_(
    Event.type == "voicemail.deposited",
    and_(Event.type == "call_log.added", Event.payload["kind"].as_string() == "missed"),
)


def wanted(type_: str, payload: Mapping[str, Any]) -> bool:
    """`OURS` on one event as a commit reports it (`EventHub.published`): whether a claim may find work."""
    return type_ == "voicemail.deposited" or (type_ == "call_log.added" and payload.get("kind") == "missed")


PAGE = 500
# The claim's reads, built once with bound parameters: composed per claim (and their cache keys generated) they
# were most of a claim's CPU — ≈ 1.7 ms each, four claims a second under a steady stream of calls
# (docs/performance.md "Call processing").
_CURSOR = select(NotificationCursor.last_event_id).where(NotificationCursor.name == CURSOR)
_UNSETTLED = (
    select(Event.id, Event.created_at)
    .where(Event.id > bindparam("last"), Event.created_at > bindparam("cutoff"))
    .order_by(Event.id)
    .limit(1)
)
_SETTLED = select(func.max(Event.id)).where(Event.id > bindparam("last"), Event.created_at <= bindparam("cutoff"))
_SETTLED_BELOW = _SETTLED.where(Event.id < bindparam("unsettled"))
_OURS_UP_TO = (
    select(Event.id, Event.type, Event.user_id, Event.payload)
    .where(Event.id > bindparam("last"), Event.id <= bindparam("horizon"), OURS)
    .order_by(Event.id)
    .limit(PAGE)
)
# The compare-and-set that claims: no entity of the cursor is ever loaded, so there is nothing in the session to
# synchronise (as with the literal values this had before, the UPDATE is the only statement sent).
_MOVE = (
    update(NotificationCursor)
    .where(NotificationCursor.name == CURSOR, NotificationCursor.last_event_id == bindparam("last"))
    .values(last_event_id=bindparam("passed"))
    .execution_options(synchronize_session=False)
)
Language = Literal["nl", "en"]


@dataclass(frozen=True)
class ClaimedEvent:
    id: int
    type: str
    user_id: int | None
    payload: dict[str, Any]


class Notifications:
    """The dispatcher: `run()` follows the outbox; `notify_voicemail` / `notify_missed_call` do the sending."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        *,
        hub: EventHub | None = None,
        settle_seconds: float = 1.0,
        batch_seconds: float = 1.0,
        idle_seconds: float = 5.0,
        concurrency: int = 8,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.keys = vapid.load_or_create(vapid.key_file(settings))
        self.push_config = push.PushConfig(
            keys=self.keys,
            subject=vapid.subject(settings),
            ttl_seconds=settings.push_ttl_seconds,
            timeout_seconds=settings.push_timeout_seconds,
        )
        # The outbox hub wakes us right after commits on this node and (its watcher polls) after other nodes'.
        self._hub = hub
        self.settle_seconds = settle_seconds
        # Under a steady stream of events the next one is always about to settle; waiting at least this long
        # between reads while events are pending makes that one read a second, not one per event. A read costs
        # ≈ 1.5 ms of CPU (an ORM session and the cursor's write); at 0.25 s it was ≈ 4 reads a second whatever the
        # call rate, ≈ 0.1 ms per call at 40 calls/s (docs/performance.md "Eleventh session"). A missed call's
        # push goes out within settle + batch (≤ 2 s) of its call-log row.
        self.batch_seconds = batch_seconds
        self.idle_seconds = idle_seconds
        # Separate limits: an SMTP server that is away holds its sends through minutes of retries, and missed
        # calls must still be pushed meanwhile.
        self._mail_slots = asyncio.Semaphore(concurrency)
        self._push_slots = asyncio.Semaphore(concurrency)
        # The database connections the notifications' reads hold at once: a burst of missed calls (hundreds of
        # pending jobs) must not take the pool the call path reads from (on PostgreSQL it did: calls failed with
        # `QueuePool limit`, which made more missed calls).
        self._read_slots = asyncio.Semaphore(concurrency)
        self._max_pending = max(PAGE, 4 * concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    # --- what is sent -------------------------------------------------------------------------------------

    async def notify_voicemail(self, voicemail_id: int) -> None:
        """E-mail (when the user switched it on) and push (unless switched off) for one new message."""
        async with self._read_slots, self.sessions() as session:
            message = await session.get(Voicemail, voicemail_id)
            if message is None:  # deleted before we got to it: nothing to tell
                return
            user = await session.get(User, message.user_id)
            if user is None:
                return
            if "voicemail" not in licensed_services(frozenset(user.licences or ())):
                return
            language = await self._language(session, user.id)
            settings = await service_settings.load(session, user.id, VoicemailSettings)
            wants_push = await push_enabled(session, user.id, "voicemail")
            user_id = user.id
            caller_number, caller_name = message.caller_number, message.caller_name
            received_at, duration_ms, media_path = aware(message.received_at), message.duration_ms, message.media_path
        jobs: list[Coroutine[Any, Any, object]] = []
        assert isinstance(settings, VoicemailSettings)
        if settings.email_notification and settings.email_address and self.settings.smtp_host:
            address = str(settings.email_address)
            jobs.append(
                self._mail_voicemail(
                    address, language, caller_number, caller_name, received_at, duration_ms, media_path
                )
            )
        if wants_push:
            caller = caller_name or caller_number or ("onbekend nummer" if language == "nl" else "unknown number")
            when = self._clock(received_at)
            title = "Nieuwe voicemail" if language == "nl" else "New voicemail"
            body = f"{caller} ({when})"
            jobs.append(
                self._push(
                    user_id,
                    push.PushMessage(
                        kind="voicemail",
                        title=title,
                        body=body,
                        url="/#/voicemail",
                        tag=f"voicemail-{voicemail_id}",
                        data={
                            "voicemail_id": voicemail_id,
                            "caller_number": caller_number,
                            "caller_name": caller_name,
                            "received_at": received_at.isoformat(),
                            "duration_ms": duration_ms,
                        },
                    ),
                )
            )
        # Each channel on its own: a failing e-mail must not keep the push from going out, or the reverse.
        for outcome in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("voicemail %s notification failed", voicemail_id, exc_info=outcome)

    async def notify_missed_call(self, call_log_id: int) -> None:
        """Push for a missed call, unless the user switched it off (no licence needed: SPEC L)."""
        async with self._read_slots, self.sessions() as session:
            row = await session.get(CallLog, call_log_id)
            if row is None or row.direction != "missed":
                return
            if not await push_enabled(session, row.user_id, "missed_calls"):
                return
            language = await self._language(session, row.user_id)
            user_id, number, name, started_at = row.user_id, row.remote_number, row.remote_name, aware(row.started_at)
        caller = name or number or ("onbekend nummer" if language == "nl" else "unknown number")
        title = "Gemiste oproep" if language == "nl" else "Missed call"
        await self._push(
            user_id,
            push.PushMessage(
                kind="missed_call",
                title=title,
                body=f"{caller} ({self._clock(started_at)})",
                url="/#/calls",
                tag=f"missed-call-{call_log_id}",
                data={
                    "call_log_id": call_log_id,
                    "caller_number": number,
                    "caller_name": name,
                    "started_at": started_at.isoformat(),
                },
            ),
        )

    async def _mail_voicemail(
        self,
        address: str,
        language: Language,
        caller_number: str,
        caller_name: str,
        received_at: datetime,
        duration_ms: int,
        media_path: str,
    ) -> None:
        try:
            wav = await media_files.read(self.settings.data_dir, media_path)
        except (OSError, ValueError):  # ValueError: a path outside the media directory (media_files.resolve)
            log.warning("voicemail e-mail to %s not sent: the audio file %s cannot be read", address, media_path)
            return
        mail = email.VoicemailMail(address, language, caller_number, caller_name, received_at, duration_ms, wav)
        # Building the MIME message base64-encodes the audio: a few MB at most, but still not on the loop.
        message = await run_cpu(email.compose, mail, self.settings)
        async with self._mail_slots:
            await email.send(message, self.settings)

    async def _push(self, user_id: int, message: push.PushMessage) -> None:
        async with self._push_slots:
            await push.push_to_user(self.sessions, user_id, message, self.push_config)

    async def _language(self, session: AsyncSession, user_id: int) -> Language:
        row = await session.get(ServiceSetting, (user_id, APP_SETTINGS))
        if row is None:
            return "nl"
        try:
            return AppSettings.model_validate(row.data).language
        except ValueError:
            return "nl"

    def _clock(self, moment: datetime) -> str:
        return moment.astimezone(ZoneInfo(self.settings.notify_time_zone)).strftime("%d-%m %H:%M")

    # --- following the outbox ------------------------------------------------------------------------------

    async def claim(self) -> tuple[list[ClaimedEvent], float | None]:
        """Take the next settled batch of our events; also says when to look again.

        The second value: 0.0 — at once (a full page was claimed, or another node moved the cursor first);
        seconds — when the first unsettled event settles (nothing a commit does can move the horizon before
        then); None — nothing is pending, so when woken.

        The horizon is the newest settled event below the first unsettled one (in id order, any type): events
        from a transaction that got its id earlier but commits later are still ahead of the cursor when they
        show up. Only the ids and times of the events past the cursor are read to find it; payloads are read
        only for our own events (chosen in SQL), so a burst of other events — settings changes — is never
        decoded. The cursor then moves to the horizon even when none of ours were in it, so the next read
        starts after them instead of passing them again.
        """
        async with self.sessions() as session:
            last = (await session.execute(_CURSOR)).scalar_one_or_none()
            if last is None:
                await self._start_cursor(session)
                return [], 0.0
            cutoff = datetime.now(UTC) - timedelta(seconds=self.settle_seconds)
            unsettled = (await session.execute(_UNSETTLED, {"last": last, "cutoff": cutoff})).first()
            again: float | None = None
            if unsettled is None:
                settled = await session.execute(_SETTLED, {"last": last, "cutoff": cutoff})
            else:
                settled = await session.execute(
                    _SETTLED_BELOW, {"last": last, "cutoff": cutoff, "unsettled": unsettled.id}
                )
                again = (aware(unsettled.created_at) - cutoff).total_seconds()
            horizon = settled.scalar()
            if horizon is None:
                return [], again
            rows = (await session.execute(_OURS_UP_TO, {"last": last, "horizon": horizon})).all()
            claimed = [
                ClaimedEvent(event_id, type_, user_id, payload if isinstance(payload, dict) else {})
                for event_id, type_, user_id, payload in rows
            ]
            passed = horizon
            if len(rows) == PAGE:  # more of ours below the horizon: claim this page, the next one at once
                passed, again = claimed[-1].id, 0.0
            moved = await session.execute(_MOVE, {"last": last, "passed": passed})
            if getattr(moved, "rowcount", 0) != 1:
                # Another node claimed this batch first; look again for what comes after it.
                await session.rollback()
                return [], 0.0
            await session.commit()
        return claimed, again

    async def _start_cursor(self, session: AsyncSession) -> None:
        # First start: notify about what happens from now on, not about the whole history.
        newest = (await session.execute(select(func.max(Event.id)))).scalar() or 0
        session.add(NotificationCursor(name=CURSOR, last_event_id=newest))
        try:
            await session.commit()
        except IntegrityError:  # another node made it at the same moment: theirs is as good
            await session.rollback()

    async def ensure_cursor(self) -> None:
        """Make the reading position if there is none, so events committed from now on are all notified."""
        async with self.sessions() as session:
            exists = (
                await session.execute(select(NotificationCursor.name).where(NotificationCursor.name == CURSOR))
            ).scalar_one_or_none()
            if exists is None:
                await self._start_cursor(session)

    def handle(self, event: ClaimedEvent) -> None:
        """Start sending for one event in the background; failures are logged, never raised."""
        job: Coroutine[Any, Any, None] | None = None
        if event.type == "voicemail.deposited" and isinstance(event.payload.get("id"), int):
            job = self.notify_voicemail(event.payload["id"])
        elif (
            event.type == "call_log.added"
            and event.payload.get("kind") == "missed"
            and isinstance(event.payload.get("id"), int)
        ):
            job = self.notify_missed_call(event.payload["id"])
        if job is not None:
            task = asyncio.get_running_loop().create_task(self._guarded(job, event), name=f"notify-{event.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _guarded(self, job: Coroutine[Any, Any, None], event: ClaimedEvent) -> None:
        try:
            await job
        except Exception:
            log.exception("notification for event %s (%s) failed", event.id, event.type)

    async def run(self) -> None:
        # Woken by this node's commits only when they wrote an event `handle` acts on (at 40 calls/s the answered
        # calls' commits woke it ≈ 4 times a second for nothing, ≈ 1.2 ms of CPU each); the outbox is still read
        # at least every `idle_seconds`, so the cursor keeps up with everything else.
        waiter = self._hub.subscribe(self.sessions, wanted) if self._hub is not None else asyncio.Event()
        try:
            await self._follow(waiter)
        finally:
            if self._hub is not None:
                self._hub.unsubscribe(waiter)

    async def _follow(self, waiter: asyncio.Event) -> None:
        while True:
            # Back-pressure: while a slow SMTP server or push service holds many sends, claim nothing more, so
            # pending work stays bounded (and unclaimed events are left for another node).
            while len(self._tasks) >= self._max_pending:
                await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
            # Clear before reading: a commit during the read sets it again, so no wake-up is lost.
            waiter.clear()
            try:
                events, again = await self.claim()
            except Exception:  # the database may be briefly away; try again shortly
                log.warning("notifications could not read the outbox", exc_info=True)
                events, again = [], self.idle_seconds
            for event in events:
                self.handle(event)
            if again == 0.0:
                continue
            if again is not None:
                # An unsettled event is pending: commits cannot move the horizon before it settles, so they
                # are not listened to meanwhile (one read then, not one per commit). A commit during the sleep
                # leaves `waiter` set; it is cleared and its event read on the next round all the same.
                await asyncio.sleep(max(again, self.batch_seconds))
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_seconds):
                    await waiter.wait()
            if waiter.is_set():
                # Woken by a commit: let the commits of the next moment join it, so a steady stream of calls
                # (two commits each) costs a few reads a second, not one read per commit (≈ 2 ms of CPU each,
                # docs/performance.md "Call processing").
                await asyncio.sleep(self.batch_seconds)

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self.run(), name="notifications")

    async def idle(self) -> None:
        """Wait until every notification started so far has been sent or given up (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, grace_seconds: float = 5.0) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_seconds):
                await self.idle()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def start_notifications(state: AppState) -> Notifications:
    """Start following the outbox for `hipper serve`; the caller awaits `close()` at shutdown."""
    notifications = Notifications(state.settings, state.sessions, hub=state.events)
    await notifications.ensure_cursor()
    notifications.start()
    return notifications
