"""A message never half-exists: the exchange process is killed with SIGKILL while a caller is speaking."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import func, select

from hipper.apps.voicemail import sweep_spool
from hipper.config import Settings
from hipper.domain.services import Voicemail
from hipper.store.db import create_engine, session_factory
from hipper.store.models import Voicemail as Message
from tests.calls.conftest import Exchange
from tests.media_apps.conftest import call_from_phone, ear, tone
from tests.media_apps.exchange_process import exchange_process

pytestmark = pytest.mark.sip


async def test_sigkill_mid_message_leaves_no_message(exchange: Exchange, tmp_path: Path) -> None:
    # The fixture's exchange only prepares the database (users, devices, services); a process of its own, on
    # the same database and data directory, takes the call and is killed.
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", Voicemail(active=True, all_calls_to_voicemail=True))
    settings: Settings = exchange.settings
    config = settings.model_dump(mode="json")
    config["voicemail_silence_seconds"] = 30.0
    config["rtp_port_min"], config["rtp_port_max"] = settings.rtp_port_max + 2, settings.rtp_port_max + 200
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(config))
    alice = await ear()
    sipp = None
    try:
        async with exchange_process(path, exchange.workdir) as (process, elsewhere_process):
            elsewhere = cast(Exchange, elsewhere_process)
            sipp = await call_from_phone(elsewhere, "alice", "202", alice, limit=30)
            await alice.wait_for_tone(1000.0, limit=30)
            await asyncio.sleep(0.5)
            await alice.talk(tone(440.0, 2.5))  # 2.5 s into the message (well past the engine's first 1 s write)
            spool = settings.data_dir / "spool" / "voicemail"
            assert [p.name for p in spool.iterdir() if p.name.endswith(".part")], "the message is being recorded"
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
    finally:
        alice.close()
        if sipp is not None:
            with contextlib.suppress(TimeoutError):
                await sipp.result(1)  # its call died with the exchange: stop it
    engine = create_engine(settings.resolved_database_url())
    try:
        async with session_factory(engine)() as session:
            count = (await session.execute(select(func.count()).select_from(Message))).scalar_one()
    finally:
        await engine.dispose()
    assert count == 0  # no row ...
    media = settings.data_dir / "media" / "voicemail"
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]  # ... and no message file
    # What is left is the engine's hidden temp file in the spool, which no listing counts as a message.
    leftovers = list((settings.data_dir / "spool" / "voicemail").iterdir())
    assert leftovers and all(p.name.startswith(".") and p.name.endswith(".part") for p in leftovers)


def test_stale_spool_files_are_swept_fresh_ones_kept(tmp_path: Path) -> None:
    spool = tmp_path / "spool" / "voicemail"
    spool.mkdir(parents=True)
    stale = spool / ".abc.wav.0123.part"
    fresh = spool / ".def.wav.4567.part"
    for path in (stale, fresh):
        path.write_bytes(b"RIFF")
    day_ago = time.time() - 2 * 86400
    os.utime(stale, (day_ago, day_ago))
    assert sweep_spool(tmp_path) == 1
    assert not stale.exists() and fresh.exists()  # a recording may still be writing the fresh one
