"""The call path's one question before a call leaves through the trunk: barred, or over a limit?

Reads the company's and the user's outbound policy (store/outbound.py), asks the pure gate (domain/barring.py),
logs and counts a refusal; ``B2bua.finished`` releases the call. docs/security.md "Toll fraud".
"""

from __future__ import annotations

import logging

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.config import Settings
from hipper.domain.barring import Limits, OutboundGate, Policy, Refusal, barred
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
        company, user = await self._policies(user_id, company_id)
        refusal = self.gate.admit(call_id, number, user_id, company_id, self.settings.default_region, company, user)
        return self._refused(refusal, call_id, user_id, company_id)

    async def barred(self, number: str, user_id: int, company_id: int | None) -> Refusal | None:
        """Only the barring (nothing counted): for a call the app asks for before any SIP exists (a callback, a
        call via the access number), refused there and then (api/routers/calls.py)."""
        company, user = await self._policies(user_id, company_id)
        refusal = barred(number, self.settings.default_region, [company, user])
        return self._refused(refusal, "", user_id, company_id)

    async def _policies(self, user_id: int, company_id: int | None) -> tuple[Policy, Policy]:
        async with self.sessions() as session:
            return await policies_of(session, user_id, company_id, self.settings.outbound_barred_default)

    @staticmethod
    def _refused(refusal: Refusal | None, call_id: str, user_id: int, company_id: int | None) -> Refusal | None:
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
