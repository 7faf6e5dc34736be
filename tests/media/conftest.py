from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from hipper.media.engine import MediaEngine


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    # A random slice of a high port range, so parallel test runs (and other developers' tests) rarely collide;
    # the engine skips ports it cannot bind anyway.
    base = random.randrange(40000, 59000, 2)
    media = MediaEngine(port_min=base, port_max=base + 200, rtp_timeout_seconds=1.0)
    async with media:
        yield media
