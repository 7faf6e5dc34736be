"""The step-up PIN ("cijfercode", SPEC A2): 4–8 digits, nothing a passer-by would guess."""

from __future__ import annotations

import itertools

from hipper.domain.errors import InvalidSetting

MIN_LENGTH = 4
MAX_LENGTH = 8


def check_pin(pin: str) -> None:
    if not pin.isdigit() or not MIN_LENGTH <= len(pin) <= MAX_LENGTH:
        raise InvalidSetting("pin", f"a PIN is {MIN_LENGTH} to {MAX_LENGTH} digits", "pin_format")
    if len(set(pin)) == 1:
        raise InvalidSetting("pin", "a PIN of one repeated digit is too easy to guess", "pin_repeated")
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    if steps in ({1}, {-1}):
        raise InvalidSetting("pin", "a PIN of consecutive digits is too easy to guess", "pin_consecutive")
    half = len(pin) // 2
    if len(pin) % 2 == 0 and pin[:half] == pin[half:] and len(set(pin[:half])) <= 2 and half <= 2:
        raise InvalidSetting("pin", "a PIN of a repeated pair is too easy to guess", "pin_repeated")


def check_password(password: str) -> None:
    if len(password) < 8:
        raise InvalidSetting("password", "a password has at least 8 characters", "password_too_short")
    if password.isdigit() or password.isalpha():
        raise InvalidSetting("password", "a password mixes letters with digits or symbols", "password_too_simple")
