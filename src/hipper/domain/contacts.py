"""Contacts (SPEC E1, E2, E4): the three company lists, searching and sorting them, and personal entries.

The group list is the user's colleagues (users of the same company), the enterprise phone list is the
company's directory, the personal phone list is the user's own. All three answer with the same `Contact`
shape, so the app shows them alike. A number on a personal entry is only a contact, never a routing target,
so it is normalised but needs no step-up.
"""

from __future__ import annotations

import builtins
import re
import unicodedata
from collections.abc import Iterable
from typing import Any, Literal

import vobject
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from hipper.domain.errors import InvalidSetting
from hipper.domain.numbers import NumberError, PhoneNumber, is_dutch_mobile, normalise
from hipper.domain.services.base import first_error

ContactList = Literal["group", "enterprise", "personal"]
CONTACT_LISTS: tuple[ContactList, ...] = ("group", "enterprise", "personal")
SortKey = Literal["first_name", "last_name"]
NumberKind = Literal["extension", "direct", "mobile", "work", "other"]

MAX_PERSONAL_ENTRIES = 1000
MAX_VCARD_BYTES = 1_000_000


class ContactNumber(BaseModel):
    kind: NumberKind
    number: str
    # WhatsApp works on Dutch mobile numbers only (06 / +316), SPEC E4.
    whatsapp: bool


class Contact(BaseModel):
    list: ContactList
    id: int
    first_name: str
    last_name: str
    company_name: str = ""
    email: str | None = None
    extension: str | None = None
    # `builtins.`: inside this class `list` is the field above.
    numbers: builtins.list[ContactNumber]
    whatsapp: bool

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented way to output a property
    @property
    def display_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or self.company_name


def contact_number(kind: NumberKind, number: str) -> ContactNumber:
    return ContactNumber(kind=kind, number=number, whatsapp=kind != "extension" and is_dutch_mobile(number))


def make_contact(
    list_: ContactList,
    id_: int,
    *,
    first_name: str,
    last_name: str,
    numbers: Iterable[tuple[NumberKind, str | None]],
    company_name: str = "",
    email: str | None = None,
    extension: str | None = None,
) -> Contact:
    found = [contact_number(kind, number) for kind, number in numbers if number]
    return Contact(
        list=list_,
        id=id_,
        first_name=first_name,
        last_name=last_name,
        company_name=company_name,
        email=email,
        extension=extension,
        numbers=found,
        whatsapp=any(n.whatsapp for n in found),
    )


def _fold(text: str) -> str:
    # "José" is found by "jose": compare without accents and case, the way people type in a search box.
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def matches(contact: Contact, query: str) -> bool:
    """Every word of the query must appear in a name, the company, or (as digits) in a number."""
    words = _fold(query).split()
    names = _fold(" ".join((contact.first_name, contact.last_name, contact.company_name, contact.email or "")))
    numbers = [_digits(n.number) for n in contact.numbers]
    # 0612345678 must find +31612345678: also compare with the national form's digits.
    numbers += ["0" + d[2:] for d in numbers if d.startswith("31")]
    for word in words:
        digits = _digits(word)
        if word in names:
            continue
        if digits and len(digits) == len(word.lstrip("+")) and any(digits in n for n in numbers):
            continue
        return False
    return True


# Dutch surname particles (tussenvoegsels): "de Vries" is filed under V, as Dutch directories do.
_PARTICLES = re.compile(r"^(?:(?:van|von|de|den|der|het|'t|te|ter|ten|in|op|aan|uit|bij|la|le|du|d')\s+)+")


def surname_key(last_name: str) -> str:
    """The part of a surname it sorts by: without its leading particles ("van der Berg" → "berg")."""
    folded = _fold(last_name)
    return _PARTICLES.sub("", folded) or folded


def sort_contacts(contacts: Iterable[Contact], by: SortKey) -> list[Contact]:
    def key(contact: Contact) -> tuple[str, str, str, int]:
        first, last = _fold(contact.first_name), surname_key(contact.last_name)
        primary, secondary = (first, last) if by == "first_name" else (last, first)
        # Entries without the chosen name sort by the other one, then by company, never first as "".
        return (primary or secondary or _fold(contact.company_name), secondary, contact.list, contact.id)

    return sorted(contacts, key=key)


class PersonalEntry(BaseModel):
    """A personal phone list entry as the user writes it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    first_name: str = Field("", max_length=100)
    last_name: str = Field("", max_length=100)
    company_name: str = Field("", max_length=200)
    number: PhoneNumber
    email: EmailStr | None = None

    @model_validator(mode="after")
    def _named(self) -> PersonalEntry:
        if not (self.first_name or self.last_name or self.company_name):
            raise InvalidSetting("first_name", "give a first name, a last name or a company name", "name_required")
        return self

    @field_validator("email", mode="before")
    @classmethod
    def _empty_email_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


def validate_entry(data: Any) -> PersonalEntry:
    if not isinstance(data, dict):
        raise InvalidSetting("", "expected a JSON object")
    try:
        return PersonalEntry.model_validate(data)
    except InvalidSetting:
        raise
    except ValidationError as exc:
        raise first_error(exc) from exc


def change_entry(current: PersonalEntry, proposed: Any) -> PersonalEntry:
    """A partial update: fields left out keep their value."""
    if not isinstance(proposed, dict):
        raise InvalidSetting("", "expected a JSON object")
    return validate_entry({**current.model_dump(mode="json"), **proposed})


class Skipped(BaseModel):
    card: int  # 1-based position of the card in the file
    reason: str


def parse_vcards(text: str) -> tuple[list[PersonalEntry], list[Skipped]]:
    """Personal entries from a vCard file (2.1, 3.0, 4.0), one entry per usable phone number of a card.

    vobject does the parsing (folded lines, quoted-printable, parameters); a card whose numbers cannot be
    understood is reported, not fatal, so one bad card does not spoil an address-book export.
    """
    entries: list[PersonalEntry] = []
    skipped: list[Skipped] = []
    try:
        cards = list(vobject.readComponents(text, ignoreUnreadable=True))
    except Exception as exc:  # vobject raises ParseError and assorted ValueErrors on broken files
        raise InvalidSetting("", f"this is not a vCard file: {exc}", "not_a_vcard") from exc
    if not cards:
        raise InvalidSetting("", "no vCard (BEGIN:VCARD … END:VCARD) found", "not_a_vcard")
    for position, card in enumerate(cards, start=1):
        if card.name != "VCARD":
            skipped.append(Skipped(card=position, reason=f"not a vCard but {card.name}"))
            continue
        first, last = _card_names(card)
        org = card.contents.get("org")
        company_name = ""
        if org and isinstance(org[0].value, list) and org[0].value:
            company_name = str(org[0].value[0]).strip()
        emails = card.contents.get("email")
        email = str(emails[0].value).strip() if emails else None
        numbers: list[str] = []
        for tel in card.contents.get("tel", []):
            raw = str(tel.value).strip().removeprefix("tel:")
            try:
                number = normalise(raw)
            except NumberError:
                skipped.append(Skipped(card=position, reason=f"'{raw}' is not a phone number"))
                continue
            if number not in numbers:
                numbers.append(number)
        if not numbers and not card.contents.get("tel"):
            skipped.append(Skipped(card=position, reason="the card has no phone number"))
        for number in numbers:
            try:
                entries.append(
                    validate_entry(
                        {
                            "first_name": first[:100],
                            "last_name": last[:100],
                            "company_name": company_name[:200],
                            "number": number,
                            "email": email,
                        }
                    )
                )
            except InvalidSetting as exc:
                # An unusable e-mail address must not cost the number: keep the entry without it.
                if exc.field != "email":
                    skipped.append(Skipped(card=position, reason=exc.reason))
                    continue
                entries.append(
                    validate_entry(
                        {
                            "first_name": first[:100],
                            "last_name": last[:100],
                            "company_name": company_name[:200],
                            "number": number,
                        }
                    )
                )
    return entries, skipped


def _card_names(card: Any) -> tuple[str, str]:
    n = card.contents.get("n")
    if n:
        given = n[0].value.given
        family = n[0].value.family
        first = " ".join(given) if isinstance(given, list) else str(given or "")
        last = " ".join(family) if isinstance(family, list) else str(family or "")
        if first.strip() or last.strip():
            return first.strip(), last.strip()
    fn = card.contents.get("fn")
    if fn:
        # Without a structured name, the formatted name's last word is the best guess for the family name.
        words = str(fn[0].value).split()
        if len(words) > 1:
            return " ".join(words[:-1]), words[-1]
        if words:
            return words[0], ""
    return "", ""
