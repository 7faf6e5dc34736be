"""Phone numbers as the exchange understands them.

A target is either an internal extension (short number) or a public number, normalised to E.164 with the
`phonenumbers` library. Dutch users type 06…, +31… or 0031…; all of them mean the same number.
"""

from __future__ import annotations

import re
from typing import Annotated

import phonenumbers
from pydantic import AfterValidator

from hipper.domain.errors import CodedValueError

DEFAULT_REGION = "NL"
EXTENSION_PATTERN = re.compile(r"^[1-9][0-9]{1,5}$")


class NumberError(CodedValueError):
    code = "phone_number"


def is_extension(text: str) -> bool:
    return bool(EXTENSION_PATTERN.match(text))


def normalise(text: str, region: str = DEFAULT_REGION) -> str:
    """Return an extension unchanged, or the E.164 form of a public number; raise NumberError otherwise (its
    message never repeats the text: API answers must not echo what was sent)."""
    cleaned = re.sub(r"[\s\-().]", "", text or "")
    if not cleaned:
        raise NumberError("a phone number is required")
    if is_extension(cleaned):
        return cleaned
    # phonenumbers reads letters as keypad digits (0800-FLOWERS); a settings field takes digits only, so that
    # a typo or a word never becomes a routing target.
    if not re.fullmatch(r"\+?[0-9]+", cleaned):
        raise NumberError("not a phone number: use digits only")
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    try:
        parsed = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException as exc:
        raise NumberError("not a phone number") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise NumberError("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def same_number(a: str, b: str) -> bool:
    try:
        return normalise(a) == normalise(b)
    except NumberError:
        return False


def is_dutch_mobile(text: str) -> bool:
    """Dutch mobile numbers (06 / +316), for the WhatsApp button (SPEC E4)."""
    try:
        e164 = normalise(text)
    except NumberError:
        return False
    return e164.startswith("+316")


def _validate(value: str) -> str:
    try:
        return normalise(value)
    except NumberError:
        # Raised as it is: pydantic keeps it in the error's context, and its code reaches the 422 item.
        raise


PhoneNumber = Annotated[str, AfterValidator(_validate)]
"""A pydantic field type: an extension or an E.164 number, normalised on input."""
