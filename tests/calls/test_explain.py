"""The explain endpoint agrees with what the call did: the plan on the call-log row is the one it shows."""

from __future__ import annotations

import httpx
import pytest

from hipper.api.app import create_app
from tests.calls.conftest import Exchange, phone, place_call, scenario

pytestmark = pytest.mark.sip


# The endpoint plans with the standard ring length; the exchange runs with the same one here.
@pytest.mark.parametrize("exchange", [{"seconds_per_ring": 5}], indirect=True)
async def test_the_plan_on_the_call_log_row_is_the_one_explain_shows(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee_refuses.xml", status=486))
    alice = await place_call(exchange, "alice", "202", "final_rejected.xml", status=486)
    await alice.succeeded()
    await bob.succeeded()
    await exchange.next_call()
    [row] = await exchange.call_logs("bob")
    assert row.plan is not None

    app = create_app(exchange.settings, run_migrations=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            login = await http.post("/api/v1/auth/login", json={"username": "bob", "password": "correct horse 1"})
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            explained = await http.get("/api/v1/me/routing/explain", params={"caller": "201"}, headers=headers)
            assert explained.status_code == 200, explained.text
            logs = await http.get("/api/v1/me/call-logs", headers=headers)
            assert logs.status_code == 200, logs.text
    finally:
        await app.state.hipper.engine.dispose()
    shown = explained.json()["plan"]
    stored = dict(row.plan)
    assert {k: v for k, v in shown.items() if k != "at"} == {k: v for k, v in stored.items() if k != "at"}
    assert shown["steps"][0]["action"] == "ring" and shown["steps"][0]["on_busy"][0]["status"] == 486
    calls = logs.json()["calls"]  # the row is visible to Bob through the app's list
    assert [(c["kind"], c["remote_number"], c["outcome"]) for c in calls] == [("missed", "201", "busy")]
