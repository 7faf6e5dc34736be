"""GET /me/routing/explain on SQLite and PostgreSQL: the plan built from the user's stored settings and
registrations, with its branches and reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from hipper.domain.routing import RoutingPlan
from hipper.sip.digest import Credentials
from hipper.store import devices
from hipper.store.models import User
from hipper.store.registrations import Binding, BindingChange, Device, LocationStore
from tests.conftest import LoggedIn, UserFactory

CALLER = "+31301234567"


async def explain(user: LoggedIn, **params: Any) -> dict[str, Any]:
    response = await user.get("/me/routing/explain", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def register_desk_phone(app: FastAPI, user: LoggedIn, *, seconds: int = 3600, name: str = "desk") -> int:
    """Create a device and register it through the registrar's own store."""
    sessions = app.state.hipper.sessions
    async with sessions() as session:
        owner = await session.get(User, user.id)
        assert owner is not None
        device = await devices.create_device(
            session, owner, auth_username=f"{user.username}-{name}", password="secret-pass-1", realm="hipper"
        )
        await session.commit()
        device_id, credentials = device.id, Credentials(device.auth_username, "hipper", device.ha1_md5, "")
    now = datetime.now(UTC)
    binding = Binding(
        device_id=device_id,
        user_id=user.id,
        contact=f"<sip:{name}@192.0.2.1:5060>",
        source="udp:192.0.2.1:5060",
        expires_at=now + timedelta(seconds=seconds),
        call_id=f"reg-{name}",
        cseq=1,
    )
    await LocationStore(sessions).change(
        Device(device_id, user.id, credentials), lambda _live: BindingChange(upserts=[binding], removals=[])
    )
    return device_id


async def test_default_plan_rings_the_mobile_when_no_desk_phone_is_registered(make_user: UserFactory) -> None:
    user = await make_user()
    body = await explain(user, caller=CALLER)
    plan = body["plan"]
    ring = plan["steps"][0]
    assert ring["action"] == "ring"
    assert [t["kind"] for t in ring["targets"]] == ["mobile"]
    assert ring["timeout_seconds"] == 20  # voicemail after 4 rings of 5 s
    assert [s["action"] for s in ring["on_no_answer"]] == ["voicemail"]
    assert (ring["on_busy"][0]["action"], ring["on_busy"][0]["status"]) == ("reject", 486)
    assert any("desk phone is not registered" in note for note in plan["notes"])
    assert "  if busy:" in body["summary"]
    assert "  if no answer:" in body["summary"]
    assert "  if not reachable:" in body["summary"]
    # The stored form of a plan is this JSON.
    assert RoutingPlan.model_validate(plan).steps[0].action == "ring"


async def test_registered_desk_phone_rings_and_expired_ones_do_not(app: FastAPI, make_user: UserFactory) -> None:
    user = await make_user()
    desk = await register_desk_phone(app, user)
    await register_desk_phone(app, user, seconds=-10, name="gone")
    ring = (await explain(user, caller=CALLER))["plan"]["steps"][0]
    assert [(t["kind"], t["device_ids"]) for t in ring["targets"]] == [("desk", [desk]), ("mobile", [])]


async def test_nothing_reachable_goes_straight_to_voicemail(make_user: UserFactory) -> None:
    user = await make_user()
    saved = await user.put("/me/services/fixed-mobile", json={"fixed_rings": "desk", "mobile_rings": "both"})
    assert saved.status_code == 200, saved.text
    steps = (await explain(user, caller=CALLER))["plan"]["steps"]
    assert [(s["action"], s.get("cause")) for s in steps] == [("voicemail", "unavailable")]
    # A call to the mobile number still rings the mobile.
    mobile = (await explain(user, caller=CALLER, called="mobile"))["plan"]["steps"][0]
    assert [t["kind"] for t in mobile["targets"]] == ["mobile"]


async def test_do_not_disturb_follows_forward_on_busy(app: FastAPI, make_user: UserFactory) -> None:
    user = await make_user()
    await register_desk_phone(app, user)
    await user.step_up()
    assert (await user.put("/me/services/do-not-disturb", json={"active": True})).status_code == 200
    steps = (await explain(user, caller=CALLER))["plan"]["steps"]
    assert [(s["action"], s.get("status")) for s in steps] == [("reject", 486)]
    forward = await user.put("/me/services/call-forwarding-busy", json={"active": True, "destination": "0687654321"})
    assert forward.status_code == 200, forward.text
    steps = (await explain(user, caller=CALLER))["plan"]["steps"]
    assert steps[0]["action"] == "forward"
    assert steps[0]["destination"] == "+31687654321"
    assert steps[0]["diversion"]["reason"] == "do-not-disturb"
    assert steps[0]["diversion"]["history_info_cause"] == 486


async def test_personal_assistant_by_time_and_exception(make_user: UserFactory) -> None:
    user = await make_user()
    await user.step_up()
    until = datetime.now(UTC) + timedelta(hours=2)
    settings = {
        "active": True,
        "presence": "lunch",
        "until": until.isoformat(),
        "transfer_to": "+31201234888",
        "exceptions": [{"name": "Boss", "number": "030 123 4567"}],
    }
    saved = await user.put("/me/services/personal-assistant", json=settings)
    assert saved.status_code == 200, saved.text
    assistant = (await explain(user, caller="+31201234999"))["plan"]["steps"][0]
    assert assistant["action"] == "personal_assistant"
    assert assistant["presence"] == "lunch"
    assert assistant["on_zero"]["destination"] == "+31201234888"
    assert "at lunch" in assistant["reason"]
    # The boss rings through.
    assert (await explain(user, caller=CALLER))["plan"]["steps"][0]["action"] == "ring"
    # Three hours from now the assistant has ended.
    later = (until + timedelta(hours=1)).isoformat()
    assert (await explain(user, caller="+31201234999", at=later))["plan"]["steps"][0]["action"] == "ring"


async def test_on_call_with_call_waiting_off_is_busy(make_user: UserFactory) -> None:
    user = await make_user()
    assert (await user.put("/me/services/call-waiting", json={"active": False})).status_code == 200
    steps = (await explain(user, caller=CALLER, on_call="true"))["plan"]["steps"]
    assert [(s["action"], s.get("status")) for s in steps] == [("reject", 486)]
    assert "call waiting is off" in steps[0]["reason"]


async def test_bad_input_names_the_field(make_user: UserFactory) -> None:
    user = await make_user(["basic"])
    bad_caller = await user.get("/me/routing/explain", params={"caller": "abc"})
    assert bad_caller.status_code == 422
    assert bad_caller.json()["detail"][0]["loc"] == ["query", "caller"]
    bad_called = await user.get("/me/routing/explain", params={"called": "desk"})
    assert bad_called.status_code == 422
    assert bad_called.json()["detail"][0]["loc"][-1] == "called"
    # Without fixed-mobile, calls to the mobile number never reach the exchange.
    no_fmi = await user.get("/me/routing/explain", params={"called": "mobile"})
    assert no_fmi.status_code == 422
    assert no_fmi.json()["detail"][0]["loc"] == ["query", "called"]
    bad_at = await user.get("/me/routing/explain", params={"at": "tomorrow"})
    assert bad_at.status_code == 422
    assert bad_at.json()["detail"][0]["loc"][-1] == "at"


async def test_needs_login_and_sees_only_own_settings(make_user: UserFactory) -> None:
    alice = await make_user()
    bob = await make_user()
    assert (await alice.client.get("/api/v1/me/routing/explain")).status_code == 401
    assert (await bob.put("/me/services/do-not-disturb", json={"active": True})).status_code == 200
    assert (await explain(alice))["plan"]["steps"][0]["action"] == "ring"
    bob_plan = (await explain(bob))["plan"]
    assert bob_plan["steps"][0]["action"] == "reject"
    assert bob_plan["user_id"] == bob.id
    assert bob_plan["caller"] is None


async def outgoing(user: LoggedIn, **params: Any) -> Any:
    return await user.get("/me/routing/outgoing-identity", params=params)


async def test_outgoing_identity_follows_settings_and_choice(make_user: UserFactory) -> None:
    user = await make_user()
    shown = await outgoing(user, dialled="030 123 4567")
    assert shown.status_code == 200, shown.text
    assert (shown.json()["kind"], shown.json()["from_user"], shown.json()["privacy"]) == (
        "direct",
        "+31201234101",
        None,
    )
    assert (await user.put("/me/services/outgoing-identity", json={"fixed": "company"})).status_code == 200
    assert (await outgoing(user, dialled=CALLER)).json()["number"] == "+31201234000"
    chosen = await outgoing(user, dialled=CALLER, identity="mobile", device="mobile")
    assert chosen.json()["number"] == "+31612345601"


async def test_anonymous_call_asserts_identity_only_to_the_trunk(make_user: UserFactory) -> None:
    user = await make_user()
    assert (await user.put("/me/services/anonymous", json={"desk": True})).status_code == 200
    body = (await outgoing(user, dialled=CALLER)).json()
    assert body["anonymous"] is True
    assert (body["from_user"], body["from_host"], body["privacy"]) == ("anonymous", "anonymous.invalid", "id")
    assert body["asserted_identity"] == "+31201234101"


async def test_colleagues_see_the_extension(make_user: UserFactory) -> None:
    alice = await make_user()
    bob = await make_user()
    assert (await alice.put("/me/services/anonymous", json={"desk": True})).status_code == 200
    by_extension = (await outgoing(alice, dialled="202")).json()
    assert (by_extension["kind"], by_extension["from_user"], by_extension["anonymous"]) == ("extension", "201", False)
    assert bob.id != alice.id
    # An extension nobody in the company has is not internal.
    assert (await outgoing(alice, dialled="299")).json()["kind"] == "direct"


async def test_outgoing_bad_input_names_the_field(make_user: UserFactory) -> None:
    user = await make_user(["basic"])
    for params, field in (
        ({"dialled": "abc"}, "dialled"),
        ({"dialled": CALLER, "device": "mobile"}, "device"),
        ({"dialled": CALLER, "identity": "call_center"}, "identity"),
        ({"dialled": CALLER, "identity": "boss"}, "identity"),
    ):
        response = await outgoing(user, **params)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["loc"][-1] == field


async def test_openapi_documents_the_plan(make_user: UserFactory) -> None:
    user = await make_user()
    schema = (await user.client.get("/api/v1/openapi.json")).json()
    assert "/api/v1/me/routing/explain" in schema["paths"]
    assert "/api/v1/me/routing/outgoing-identity" in schema["paths"]
    assert {"RingStep", "ForwardStep", "VoicemailStep", "PersonalAssistantStep", "RoutingPlan"} <= set(
        schema["components"]["schemas"]
    )
