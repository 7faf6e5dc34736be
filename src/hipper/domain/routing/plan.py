"""A routing plan: what happens to one incoming call, as data.

The policy (`policy.py`) decides; the call engine (`engine/call.py`) runs the steps with SIP legs and media and
never decides.
A plan is stored on the call-log row and shown by the explain endpoint, so every step says in a sentence why it
was chosen, and the whole plan serialises to JSON (`RoutingPlan.model_dump(mode="json")`) and back.

Steps run in order until one of them ends the call (forward, voicemail, reject, personal assistant, ring).
`RingStep` is the only step that waits for an outcome: its branches say what happens when every alerted target
refused busy, when nobody answered in time, or when no target could be reached at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# RFC 7044 History-Info carries the redirecting reason as a `cause` URI parameter with the values of RFC 4458 §5;
# the Diversion header (RFC 5806) carries the equivalent token. The executor copies both onto the new leg.
DiversionReason = Literal["unconditional", "user-busy", "no-answer", "unavailable", "deflection", "do-not-disturb"]
HISTORY_INFO_CAUSE: dict[str, int] = {
    "unconditional": 302,
    "user-busy": 486,
    "do-not-disturb": 486,
    "no-answer": 408,
    # RFC 4458: 503 "mobile subscriber not reachable"; the closest of its causes to "not registered anywhere".
    "unavailable": 503,
    # RFC 4458: 480 "deflection immediate response" (the Personal Assistant transfers after answering).
    "deflection": 480,
}


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Step(_Data):
    # The precedence line of docs/call-routing.md that chose the step (0: the exchange's loop rules), and the
    # user service whose setting it follows: with the step's own fields, enough for the app to say it in Dutch.
    line: int = Field(ge=0, le=9)
    service: str | None = None


class Diversion(_Data):
    """What the forwarded leg carries: Diversion / History-Info reason, cause code and the new counters."""

    reason: DiversionReason
    history_info_cause: int
    # The user whose setting diverted the call (their number goes into History-Info / Diversion).
    diverted_by: str
    # Counters the new leg carries, so the next exchange (or we ourselves) can stop a loop.
    diversion_count: int
    max_forwards: int


TargetKind = Literal["desk", "mobile", "remote_office", "simultaneous_ring", "anywhere"]


class Target(_Data):
    """One device or number alerted in parallel by a `RingStep` step (a fork branch)."""

    kind: TargetKind
    # E.164 number or extension dialled for this branch; None for the user's own registered SIP devices.
    number: str | None = None
    # Registered device ids for `desk` targets (the executor forks to each of their contacts).
    device_ids: tuple[int, ...] = ()
    # A 200 OK from this target is not an answer until the callee presses a key (DESIGN "telephony traps").
    answer_confirmation: bool = False
    # Anywhere: offer call waiting to this location as a separate call (call control).
    call_control: bool = False
    # Anywhere: refuse an answer from the mobile network's voicemail for a fixed-number call
    # (engine/diversion_guard.py).
    block_diversion: bool = False
    # The user is on a call and call waiting is on: this branch alerts as a waiting call.
    waiting: bool = False
    reason: str


class ForwardStep(_Step):
    action: Literal["forward"] = "forward"
    destination: str
    # None for company/department numbers delivered to their destination (not a user's diversion).
    diversion: Diversion | None = None
    reason: str


class VoicemailStep(_Step):
    action: Literal["voicemail"] = "voicemail"
    # Which greeting situation the voicemail application is entered for.
    cause: DiversionReason
    diversion: Diversion
    reason: str


class RejectStep(_Step):
    action: Literal["reject"] = "reject"
    status: int
    reason_phrase: str
    reason: str


class RingSplashStep(_Step):
    """A short alert on the desk phone (Alert-Info) for a call that does not ring it; the call continues."""

    action: Literal["ring_splash"] = "ring_splash"
    reason: str


class HangupStep(_Step):
    """End an answered call (the Personal Assistant finished and the user has no voicemail)."""

    action: Literal["hangup"] = "hangup"
    reason: str


class PersonalAssistantStep(_Step):
    """Answer and play the absence announcement; 0 transfers, otherwise `afterwards` ends the call."""

    action: Literal["personal_assistant"] = "personal_assistant"
    presence: str
    until: datetime | None
    # Where the caller goes on pressing 0; None when there is no transfer number (0 does nothing).
    on_zero: ForwardStep | None
    afterwards: VoicemailStep | HangupStep
    reason: str


class RingStep(_Step):
    """Alert every target at once; the first real answer wins, the other branches are cancelled."""

    action: Literal["ring"] = "ring"
    targets: tuple[Target, ...]
    # None: keep ringing until the caller gives up.
    timeout_seconds: int | None
    on_busy: tuple[Step, ...]
    on_no_answer: tuple[Step, ...]
    on_not_reachable: tuple[Step, ...]
    reason: str


Step = Annotated[
    ForwardStep | VoicemailStep | RejectStep | HangupStep | RingSplashStep | PersonalAssistantStep | RingStep,
    Field(discriminator="action"),
]


class RoutingPlan(_Data):
    user_id: int
    called: Literal["fixed", "mobile"]
    caller: str | None
    at: datetime
    steps: tuple[Step, ...]
    # Settings that were looked at and did not apply, and why (an expired Personal Assistant, an exception).
    notes: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """The plan as indented sentences, for logs and people."""
        lines: list[str] = []
        _describe(self.steps, 0, lines)
        return lines


def _describe(steps: tuple[Step, ...], depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    for step in steps:
        lines.append(f"{pad}{step.action}: {step.reason}")
        if isinstance(step, RingStep):
            for target in step.targets:
                lines.append(f"{pad}  - {target.kind} {target.number or ''}".rstrip() + f": {target.reason}")
            for label, branch in (
                ("if busy", step.on_busy),
                ("if no answer", step.on_no_answer),
                ("if not reachable", step.on_not_reachable),
            ):
                if branch:
                    lines.append(f"{pad}  {label}:")
                    _describe(branch, depth + 2, lines)


RingStep.model_rebuild()
RoutingPlan.model_rebuild()
