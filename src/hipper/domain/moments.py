"""Moments in time as the exchange keeps them: timezone-aware, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def aware(moment: datetime) -> datetime:
    """`moment` with its time zone; a naive one is UTC. SQLite hands back naive datetimes even for
    `timezone=True` columns, and everything the exchange stores was written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
