"""Spoken prompts: the catalogue of texts, and sentences composed from the recorded words.

The WAVs under ``prompts/{en,nl}/`` are generated from ``CATALOGUE`` by ``scripts/make-prompts`` (espeak-ng,
then sox to 8 kHz mono 16-bit). A sentence is a tuple of file paths that ``engine.Play`` plays back to back, so
"<name> is on vacation until Friday 22 July at 15:00; press 0 to be transferred" needs no speech synthesis at
call time.
"""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path
from typing import Final

PROMPT_DIR: Final = Path(__file__).parent / "prompts"
LANGUAGES: Final = ("nl", "en")

# Reasons of absence of the Personal Assistant (SPEC F6), as the announcement says them after "<name> is".
PRESENCE_REASONS: Final = (
    "business_trip",
    "gone_for_the_day",
    "lunch",
    "meeting",
    "out_of_office",
    "temporarily_out",
    "training",
    "unavailable",
    "vacation",
)

_PHRASES: Final[dict[str, tuple[str, str]]] = {
    # key: (English, Dutch)
    "person_you_are_calling": ("The person you are calling", "De persoon die u belt"),
    "is": ("is", "is"),
    "reason_business_trip": ("on a business trip", "op zakenreis"),
    "reason_gone_for_the_day": ("gone for the day", "vertrokken voor vandaag"),
    "reason_lunch": ("at lunch", "aan het lunchen"),
    "reason_meeting": ("in a meeting", "in vergadering"),
    "reason_out_of_office": ("out of the office", "niet op kantoor"),
    "reason_temporarily_out": ("temporarily out", "tijdelijk afwezig"),
    "reason_training": ("in training", "op training"),
    "reason_unavailable": ("unavailable", "niet beschikbaar"),
    "reason_vacation": ("on vacation", "op vakantie"),
    # Not a Personal Assistant presence: the system voicemail greeting for a busy user ("... is busy").
    "reason_busy": ("busy", "in gesprek"),
    "until": ("until", "tot"),
    "at": ("at", "om"),
    "today": ("today", "vandaag"),
    "tomorrow": ("tomorrow", "morgen"),
    "press_0_to_transfer": ("Press 0 to be transferred.", "Toets 0 om doorverbonden te worden."),
    "leave_message_after_tone": ("Please leave a message after the tone.", "Spreek uw bericht in na de toon."),
    "voicemail_not_available": (
        "The voicemail service is not available yet.",
        "De voicemaildienst is nog niet beschikbaar.",
    ),
    "you_have": ("You have", "U heeft"),
    "new_message": ("new message", "nieuw bericht"),
    "new_messages": ("new messages", "nieuwe berichten"),
    "saved_message": ("saved message", "bewaard bericht"),
    "saved_messages": ("saved messages", "bewaarde berichten"),
    "no_new_messages": ("You have no new messages.", "U heeft geen nieuwe berichten."),
    "and": ("and", "en"),
    "menu_main": (
        "To listen to your messages, press 1. To record your greeting, press 2. To end, press star.",
        "Toets 1 om uw berichten te beluisteren. Toets 2 om uw begroeting in te spreken. Toets sterretje om te "
        "stoppen.",
    ),
    "menu_message": (
        "To play the message again, press 1. To delete it, press 7. To save it, press 9. "
        "For the next message, press hash.",
        "Toets 1 om het bericht opnieuw te beluisteren. Toets 7 om het te wissen. Toets 9 om het te bewaren. "
        "Toets hekje voor het volgende bericht.",
    ),
    "message_received_on": ("Message received on", "Bericht ontvangen op"),
    "message_deleted": ("Message deleted.", "Bericht gewist."),
    "message_saved": ("Message saved.", "Bericht bewaard."),
    "no_more_messages": ("There are no more messages.", "Er zijn geen berichten meer."),
    "record_greeting_after_tone": (
        "Record your greeting after the tone, then press hash.",
        "Spreek uw begroeting in na de toon en toets daarna hekje.",
    ),
    "greeting_saved": ("Your greeting has been saved.", "Uw begroeting is opgeslagen."),
    "invalid_choice": ("That is not a valid choice.", "Dat is geen geldige keuze."),
    "goodbye": ("Goodbye.", "Tot ziens."),
    # Voicemail by phone from outside (apps/voicemail_menu.py).
    "enter_mailbox": (
        "Please enter your mailbox number, then press hash.",
        "Toets uw mailboxnummer in, gevolgd door hekje.",
    ),
    "enter_pin": ("Please enter your PIN, then press hash.", "Toets uw pincode in, gevolgd door hekje."),
    "wrong_pin": ("That PIN is not correct.", "Die pincode is niet juist."),
    "busy": (
        "The number you are calling is busy. Please try again later.",
        "Het nummer dat u belt is in gesprek. Probeer het later nog eens.",
    ),
    "not_reachable": (
        "The number you are calling cannot be reached at the moment.",
        "Het nummer dat u belt is op dit moment niet bereikbaar.",
    ),
    "incoming_call": ("You have an incoming call.", "U heeft een inkomend gesprek."),
    "press_1_to_accept": ("Press 1 to accept the call.", "Toets 1 om het gesprek aan te nemen."),
    "please_hold": ("Please hold, you are being connected.", "Een ogenblik geduld, u wordt doorverbonden."),
    # A call-center caller waiting in the queue (apps/groups.py).
    "queue_wait": (
        "All our colleagues are busy at the moment. Please hold, your call will be answered as soon as possible.",
        "Al onze medewerkers zijn op dit moment in gesprek. Een ogenblik geduld, u wordt zo snel mogelijk geholpen.",
    ),
    # Followed by the number: the caller's place among those waiting on every node (apps/groups.py).
    "queue_position": ("You are caller number", "U bent beller nummer"),
    # Time words.
    "oclock": ("o'clock", "uur"),
    "am": ("a.m.", "'s ochtends"),
    "pm": ("p.m.", "'s middags"),
    "oh": ("oh", "nul"),
    "the": ("the", "de"),
    "of": ("of", "van"),
    "many": ("many", "veel"),
}

_WEEKDAYS: Final = (
    ("monday", "Monday", "maandag"),
    ("tuesday", "Tuesday", "dinsdag"),
    ("wednesday", "Wednesday", "woensdag"),
    ("thursday", "Thursday", "donderdag"),
    ("friday", "Friday", "vrijdag"),
    ("saturday", "Saturday", "zaterdag"),
    ("sunday", "Sunday", "zondag"),
)
_MONTHS: Final = (
    ("january", "January", "januari"),
    ("february", "February", "februari"),
    ("march", "March", "maart"),
    ("april", "April", "april"),
    ("may", "May", "mei"),
    ("june", "June", "juni"),
    ("july", "July", "juli"),
    ("august", "August", "augustus"),
    ("september", "September", "september"),
    ("october", "October", "oktober"),
    ("november", "November", "november"),
    ("december", "December", "december"),
)
# 0–59 are recorded whole (Dutch says 21 as "eenentwintig", one word; clocks need every minute), then the tens.
NUMBERS: Final = (*range(60), 60, 70, 80, 90, 100)


def _catalogue() -> dict[str, dict[str, str]]:
    texts: dict[str, dict[str, str]] = {"en": {}, "nl": {}}
    for key, (english, dutch) in _PHRASES.items():
        texts["en"][key], texts["nl"][key] = english, dutch
    for key, english, dutch in (*_WEEKDAYS, *_MONTHS):
        texts["en"][key], texts["nl"][key] = english, dutch
    for number in NUMBERS:
        # espeak-ng reads digits as the number in each language's own words.
        texts["en"][f"n{number}"] = texts["nl"][f"n{number}"] = str(number)
    for day in range(1, 32):
        texts["en"][f"ord{day}"] = _english_ordinal(day)
    return texts


def _english_ordinal(number: int) -> str:
    suffix = "th" if 11 <= number % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


# language -> prompt key -> the text espeak-ng speaks for it.
CATALOGUE: Final = _catalogue()


class PromptError(ValueError):
    """An unknown language or prompt key."""


def prompt_path(language: str, key: str) -> Path:
    if language not in LANGUAGES:
        raise PromptError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    if key not in CATALOGUE[language]:
        raise PromptError(f"no prompt {key!r} in {language}")
    return PROMPT_DIR / language / f"{key}.wav"


def sentence(language: str, keys: list[str]) -> tuple[Path, ...]:
    """Paths of the prompt files for ``keys``, ready for ``engine.Play(files=...)``."""
    return tuple(prompt_path(language, key) for key in keys)


def say_number(language: str, number: int) -> list[str]:
    if number < 0:
        raise PromptError("cannot say a negative number")
    if number < 60 or number in NUMBERS:
        return [f"n{number}"]
    if number < 100:
        tens, units = divmod(number, 10)
        if units == 0:
            return [f"n{number}"]
        # Dutch puts the units first: 65 = "vijf-en-zestig"; English "sixty five".
        return [f"n{units}", "and", f"n{tens * 10}"] if language == "nl" else [f"n{tens * 10}", f"n{units}"]
    return ["many"]


def say_time(language: str, moment: time) -> list[str]:
    if language == "nl":
        # 24-hour clock, as Dutch announcements say it: 15:00 "vijftien uur", 15:30 "vijftien uur dertig".
        keys = [f"n{moment.hour}", "oclock"]
        return keys + ([f"n{moment.minute}"] if moment.minute else [])
    hour = moment.hour % 12 or 12
    if moment.minute == 0:
        minutes = ["oclock"]
    elif moment.minute < 10:
        minutes = ["oh", f"n{moment.minute}"]
    else:
        minutes = [f"n{moment.minute}"]
    return [f"n{hour}", *minutes, "am" if moment.hour < 12 else "pm"]


def say_date(language: str, day: date, today: date | None = None) -> list[str]:
    if today is not None and day == today:
        return ["today"]
    if today is not None and (day - today).days == 1:
        return ["tomorrow"]
    weekday = _WEEKDAYS[day.weekday()][0]
    month = _MONTHS[day.month - 1][0]
    if language == "nl":
        return [weekday, f"n{day.day}", month]  # "vrijdag tweeëntwintig juli"
    return [weekday, "the", f"ord{day.day}", "of", month]  # "Friday the twenty-second of July"


def say_datetime(language: str, moment: datetime, now: datetime | None = None) -> list[str]:
    """ "Friday the 22nd of July at 3 p.m." / "vrijdag 22 juli om 15 uur"; "tomorrow"/"morgen" when it is."""
    today = now.date() if now is not None else None
    return [*say_date(language, moment.date(), today), "at", *say_time(language, moment.time())]


def personal_assistant_announcement(
    language: str,
    reason: str,
    until: datetime | None,
    now: datetime | None = None,
    transfer_available: bool = False,
    name_recording: Path | None = None,
) -> tuple[Path, ...]:
    """ "<name> is on vacation until Friday 22 July at 15:00. Press 0 to be transferred."

    ``name_recording`` is the user's own recorded name; without one the caller hears "The person you are calling".
    """
    if reason not in PRESENCE_REASONS:
        raise PromptError(f"reason must be one of {', '.join(PRESENCE_REASONS)}, got {reason!r}")
    keys = ["is", f"reason_{reason}"]
    if until is not None:
        keys += ["until", *say_datetime(language, until, now)]
    if transfer_available:
        keys.append("press_0_to_transfer")
    subject = (name_recording,) if name_recording is not None else sentence(language, ["person_you_are_calling"])
    return subject + sentence(language, keys)


def voicemail_count(language: str, new: int, saved: int = 0) -> tuple[Path, ...]:
    """ "You have 3 new messages (and 1 saved message)." """
    if new == 0 and saved == 0:
        return sentence(language, ["no_new_messages"])
    keys = ["you_have", *say_number(language, new), "new_message" if new == 1 else "new_messages"]
    if saved:
        keys += ["and", *say_number(language, saved), "saved_message" if saved == 1 else "saved_messages"]
    return sentence(language, keys)


def tone_path(name: str) -> Path:
    """Generated tones shared by both languages: ``beep``, ``ringback``, ``busy_tone``, ``music_on_hold``."""
    path = PROMPT_DIR / "tones" / f"{name}.wav"
    if name not in ("beep", "ringback", "busy_tone", "music_on_hold"):
        raise PromptError(f"no tone {name!r}")
    return path
