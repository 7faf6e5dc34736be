"""E-mail with a new voicemail attached (SPEC H1, H3; manual §7.4), sent with aiosmtplib.

A message that cannot be delivered right now (server away, a 4xx answer, a timeout) is tried again a bounded
number of times with a doubling wait; a permanent refusal (5xx) is not repeated. Either way the failure is
logged and nothing else is affected: the voicemail itself was stored before anyone thought of mailing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Literal
from zoneinfo import ZoneInfo

import aiosmtplib
from babel.dates import format_datetime as babel_datetime

from hipper.config import Settings

log = logging.getLogger(__name__)

Language = Literal["nl", "en"]


@dataclass(frozen=True)
class VoicemailMail:
    to: str
    language: Language
    caller_number: str
    caller_name: str
    received_at: datetime
    duration_ms: int
    wav: bytes


def _caller(mail: VoicemailMail) -> str:
    if mail.caller_number and mail.caller_name:
        return f"{mail.caller_name} ({mail.caller_number})"
    if mail.caller_number or mail.caller_name:
        return mail.caller_number or mail.caller_name
    return "een onbekend nummer" if mail.language == "nl" else "an unknown number"


def _when(moment: datetime, language: Language, zone: str) -> str:
    local = moment.astimezone(ZoneInfo(zone))
    pattern = "d MMMM y 'om' HH:mm" if language == "nl" else "d MMMM y 'at' HH:mm"
    return str(babel_datetime(local, pattern, locale=language))


def _duration(milliseconds: int) -> str:
    seconds = max(0, round(milliseconds / 1000))
    return f"{seconds // 60}:{seconds % 60:02d}"


def sender(settings: Settings) -> str:
    return settings.smtp_from or f"hipper@{settings.sip_realm}"


def compose(mail: VoicemailMail, settings: Settings) -> EmailMessage:
    caller = _caller(mail)
    when = _when(mail.received_at, mail.language, settings.notify_time_zone)
    length = _duration(mail.duration_ms)
    if mail.language == "nl":
        subject = f"Nieuw voicemailbericht van {caller}, {when}"
        text = (
            f"U heeft een nieuw voicemailbericht van {caller}.\n\n"
            f"Ontvangen: {when}\nDuur: {length}\n\n"
            "Het bericht zit als geluidsbestand bij deze e-mail. U kunt het ook beluisteren in de Hipper+ app.\n"
        )
    else:
        subject = f"New voicemail from {caller}, {when}"
        text = (
            f"You have a new voicemail from {caller}.\n\n"
            f"Received: {when}\nLength: {length}\n\n"
            "The message is attached as a sound file. You can also listen to it in the Hipper+ app.\n"
        )
    message = EmailMessage()
    message["From"] = sender(settings)
    message["To"] = mail.to
    message["Subject"] = subject
    message["Date"] = format_datetime(mail.received_at)
    message["Message-ID"] = make_msgid(domain=settings.sip_realm)
    # RFC 3834: vacation responders and the like must not answer a machine's message.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    stamp = mail.received_at.astimezone(ZoneInfo(settings.notify_time_zone)).strftime("%Y%m%d-%H%M%S")
    message.add_attachment(mail.wav, maintype="audio", subtype="wav", filename=f"voicemail-{stamp}.wav")
    return message


def _permanent(exc: Exception) -> bool:
    """5xx answers will not change by asking again (RFC 5321 §4.2.1); everything else might."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(refusal.code >= 500 for refusal in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code >= 500
    return False


async def send(
    message: EmailMessage,
    settings: Settings,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bool:
    """Deliver with bounded retries; True when the server accepted it. Never raises for delivery problems."""
    attempts = max(1, settings.notify_email_attempts)
    wait = settings.notify_retry_seconds
    for attempt in range(1, attempts + 1):
        try:
            await aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username or None,
                password=settings.smtp_password or None,
                use_tls=settings.smtp_security == "tls",
                start_tls=settings.smtp_security == "starttls",
                timeout=settings.smtp_timeout_seconds,
                cert_bundle=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            permanent = _permanent(exc)
            last = permanent or attempt == attempts
            log.warning(
                "voicemail e-mail to %s: attempt %d of %d failed (%s: %s)%s",
                message["To"],
                attempt,
                attempts,
                type(exc).__name__,
                str(exc)[:200],
                " — giving up" if last else f" — trying again in {wait:g} s",
            )
            if last:
                return False
            await sleep(wait)
            wait *= 2
        else:
            log.info("voicemail e-mail sent to %s", message["To"])
            return True
    return False
