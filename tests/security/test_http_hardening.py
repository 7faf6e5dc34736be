"""The low-severity HTTP findings of issue 11, each against a real exchange process over TCP.

Login timing told locked accounts from unknown names; a 409 named another company's user; the voicemail e-mail
address (where messages' audio goes) changed without a step-up; an administrator could set a password a user
may not choose; /metrics and the API documentation were open to anyone; no CSP, frame or referrer headers.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx

from tests.support.exchange_process import PASSWORD, PIN, exchange_process, seed_users

# A ceiling on each answer, not a pause: httpx's default of 5 s was too short under CI load for the exchange's first
# /api/v1/docs and openapi.json (the schema is built on the first request).
HTTP_TIMEOUT = 30.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_security_headers_on_the_app_and_the_api(tmp_path: Path) -> None:
    async with (
        exchange_process(tmp_path) as exchange,
        httpx.AsyncClient(base_url=exchange.url, timeout=HTTP_TIMEOUT) as http,
    ):
        for path in ("/", "/js/app.js", "/api/v1/health"):
            response = await http.get(path)
            assert response.status_code == 200, path
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        app_policy = (await http.get("/")).headers["content-security-policy"]
        assert "script-src 'self';" in app_policy and "object-src 'none'" in app_policy


async def test_metrics_and_api_docs_need_the_operator_token(tmp_path: Path) -> None:
    token = "operator-secret-7"
    settings = {"http_operator_access": "token", "http_operator_token": token}
    async with (
        exchange_process(tmp_path, **settings) as exchange,
        httpx.AsyncClient(base_url=exchange.url, timeout=HTTP_TIMEOUT) as http,
    ):
        for path in ("/metrics", "/api/v1/docs", "/api/v1/openapi.json"):
            assert (await http.get(path)).status_code == 403, path
            assert (await http.get(path, headers=bearer("wrong"))).status_code == 403, path
            assert (await http.get(path, headers=bearer(token))).status_code == 200, path
        assert (await http.get("/api/v1/health")).status_code == 200  # the rest of the API is unaffected


async def test_a_locked_account_answers_as_slowly_as_an_unknown_name(tmp_path: Path) -> None:
    # A real argon2 cost, so that a skipped hash shows: tens of milliseconds against one.
    settings = {"argon2_memory_cost": "65536", "argon2_time_cost": "2", "login_attempts": "3"}
    async with (
        exchange_process(tmp_path, users=["alice"], **settings) as exchange,
        httpx.AsyncClient(base_url=exchange.url, timeout=30) as http,
    ):
        for _ in range(3):
            await http.post("/api/v1/auth/login", json={"username": "alice", "password": "wrong-1"})

        async def timed(username: str) -> float:
            started = time.perf_counter()
            await http.post("/api/v1/auth/login", json={"username": username, "password": "wrong-2"})
            return time.perf_counter() - started

        # Interleaved, so that a load spike on the machine (the other test worker) falls on both alike; a skipped
        # hash would be tens of times faster, far below the bound.
        pairs = [(await timed("alice"), await timed(f"nobody{n}")) for n in range(7)]
        locked = statistics.median(pair[0] for pair in pairs)
        unknown = statistics.median(pair[1] for pair in pairs)
        assert locked > 0.5 * unknown, f"locked {locked * 1000:.1f} ms, unknown {unknown * 1000:.1f} ms"
        right = await http.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
        assert right.status_code == 429


async def test_the_voicemail_email_address_needs_a_step_up(tmp_path: Path) -> None:
    async with (
        exchange_process(tmp_path, users=["alice"]) as exchange,
        httpx.AsyncClient(base_url=exchange.url, timeout=HTTP_TIMEOUT) as http,
    ):
        headers = bearer(await exchange.login(http, "alice"))
        change = {"email_notification": True, "email_address": "attacker@example.com"}
        refused = await http.put("/api/v1/me/services/voicemail", json=change, headers=headers)
        assert refused.status_code == 403 and refused.json()["code"] == "step_up_required"
        assert (await http.post("/api/v1/auth/step-up", json={"pin": PIN}, headers=headers)).status_code == 200
        assert (await http.put("/api/v1/me/services/voicemail", json=change, headers=headers)).status_code == 200


async def test_company_admins_meet_password_rules_and_learn_no_other_tenants_names(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hipper.db'}"
    other = await seed_users(url, ["zoe-of-globex"], number_base=4500)  # another company, its number +31201234501
    async with (
        exchange_process(tmp_path, url, users=["boss", "alice"], admins=("boss",)) as exchange,
        httpx.AsyncClient(base_url=exchange.url, timeout=HTTP_TIMEOUT) as http,
    ):
        assert other
        headers = bearer(await exchange.login(http, "boss"))
        alice = f"/api/v1/admin/users/{exchange.users['alice']}"
        taken = await http.patch(alice, json={"direct_number": "+31201234501"}, headers=headers)
        assert taken.status_code == 409
        assert "zoe" not in taken.text and "globex" not in taken.text.lower()
        for weak in ("abcdefghij", "1234567890"):
            answer = await http.post(f"{alice}/password", json={"password": weak}, headers=headers)
            assert answer.status_code == 422, weak
        good = await http.post(f"{alice}/password", json={"password": "new horse 2"}, headers=headers)
        assert good.status_code == 204
