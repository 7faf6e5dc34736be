"""Answer confirmation (simultaneous ring, Anywhere): when an answer counts, and when it is given up. Pure.

A branch with answer confirmation is a phone outside the exchange's control — a mobile whose network voicemail
answers, a colleague's desk with a voicemail of its own. Its 200 is not the call's answer: the exchange ACKs it,
plays "incoming call, press 1 to accept" to whoever answered, and keeps the caller hearing ringback. As in
BroadWorks, the prompt is repeated at most twice (three plays), and an answer not confirmed within
`answer_confirmation_seconds` (docs/operations.md) is released with BYE while the other branches keep ringing:
a voicemail that answered never presses the key, and must not hold the branch until the caller gives up.
"""

from __future__ import annotations

from dataclasses import dataclass

CONFIRMATION_KEY = "1"  # the prompt says "press 1"
PROMPT_REPEATS = 2


@dataclass(frozen=True)
class AnswerConfirmation:
    seconds: float  # from the answer (the 200) to giving it up
    repeats: int = PROMPT_REPEATS

    def accepts(self, digit: str) -> bool:
        """Whether this key confirms the answer."""
        return digit == CONFIRMATION_KEY

    def play_again(self, plays: int) -> bool:
        """After the prompt ended for the `plays`-th time: play it once more?"""
        return plays <= self.repeats

    def remaining(self, elapsed: float) -> float:
        """Seconds left to confirm, `elapsed` seconds after the answer (0: release the branch now)."""
        return max(0.0, self.seconds - elapsed)


__all__ = ["CONFIRMATION_KEY", "PROMPT_REPEATS", "AnswerConfirmation"]
