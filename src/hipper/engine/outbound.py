"""The call path's one question before a call leaves through the trunk: barred, or over a limit?

Reads the company's and the user's outbound policy (store/outbound.py), asks the pure gate (domain/barring.py),
logs and counts a refusal; ``B2bua.finished`` releases the call. docs/security.md "Toll fraud".
"""

from __future__ import annotations

import logging

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.config import Settings
from hipper.domain.barring import Limits, OutboundGate, Refusal
from hipper.store.outbound import policies_of

log = logging.getLogger(__name__)

OUTBOUND_REFUSED = Counter(
    "hipper_outbound_calls_refused_total",
    "Outbound calls refused by call barring or a concurrent-call limit, by rule",
    ["rule"],
)


def limits_of(settings: Settings) -> Limits:
    return Limits(
        per_user=settings.outbound_max_calls_per_user or None,
        per_company=settings.outbound_max_calls_per_company or None,
        per_trunk=settings.trunk_max_calls or None,
        status=settings.outbound_limit_status,
    )


class OutboundGuard:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.gate = OutboundGate(limits_of(settings))

    async def admit(self, call_id: str, number: str, user_id: int, company_id: int | None) -> Refusal | None:
        """None: the call may go out and counts until `release`; else the refusal to answer the caller with."""
        async with self.sessions() as session:
            company, user = await policies_of(session, user_id, company_id, self.settings.outbound_barred_default)
        refusal = self.gate.admit(call_id, number, user_id, company_id, self.settings.default_region, company, user)
        if refusal is not None:
            OUTBOUND_REFUSED.labels(refusal.rule).inc()
            log.warning(
                "call.outbound_refused",
                extra={
                    "call_id": call_id,
                    "user_id": user_id,
                    "company_id": company_id,
                    "rule": refusal.rule,
                    "detail": refusal.detail,
                    "status": refusal.status,
                },
            )
        return refusal

    def release(self, call_id: str) -> None:
        self.gate.release(call_id)
