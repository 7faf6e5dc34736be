"""Block diversion (Anywhere, manual §7.2.10): keep a call to the fixed number out of the mobile's own voicemail.

A mobile network diverts a call it cannot deliver (busy, not reachable, no reply) to the subscriber's voicemail,
which then answers — and the caller would leave a message in a mailbox the exchange knows nothing about while
the desk phone was still ringing. There is no request-side inhibitor networks honour: ISUP's "call diversion
treatment indicators: call diversion not allowed" (ITU-T Q.763 §3.72) has no SIP mapping in 3GPP TS 29.163, and
RFC 5806's Diversion `limit` is historic and advisory. So the exchange does not ask; it recognises the diverted
answer on the branch and refuses it (docs/call-routing.md "Block diversion"):

- `181 Call Is Being Forwarded` (RFC 3261 §21.1.3; the mobile network's CDIV sends it when it diverts, 3GPP TS
  24.604 §4.5.2.6.2) → the branch is cancelled at once;
- a 2xx reporting more diversions than our INVITE carried (History-Info entries with an RFC 4458 `cause`,
  RFC 7044 §9, or Diversion entries) → the target that answered is not the location: ACK, then BYE;
- a 2xx sooner than `block_diversion_min_answer_seconds` after the INVITE → ACK, then BYE: the network's busy and
  not-reachable voicemail answers at once, while a person needs a moment to take a mobile out of a pocket.

Pure functions of the messages and the elapsed time; the leg (engine/leg.py) acts on their verdict.
"""

from __future__ import annotations

from hipper.engine.peers import diversions_so_far
from hipper.sip.message import Request, Response

CALL_IS_BEING_FORWARDED = 181


def diverting(response: Response) -> str | None:
    """Why this provisional response shows the network diverting the branch, or None."""
    if response.status == CALL_IS_BEING_FORWARDED:
        return "the network is forwarding the call (181 Call Is Being Forwarded)"
    return None


def refused_answer(request: Request, response: Response, elapsed: float, min_answer_seconds: float) -> str | None:
    """Why this 2xx is the mobile network's voicemail rather than the person at the location, or None."""
    ours = diversions_so_far(request)
    reported = diversions_so_far(response)
    if reported > ours:
        return f"the answer reports {reported - ours} more diversion(s) than the call carried (History-Info/Diversion)"
    if elapsed < min_answer_seconds:
        return f"answered {elapsed:.1f} s after the call went out: too soon for a person, the network's voicemail"
    return None
