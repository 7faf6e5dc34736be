"""Every service shares one route shape; these tests check it on forwarding and DND."""

from tests.conftest import UserFactory


async def test_forwarding_round_trip_with_step_up(make_user: UserFactory) -> None:
    user = await make_user()
    assert (await user.get("/me/services/call-forwarding-always")).json()["active"] is False
    body = {"active": True, "destination": "06 87654321"}
    refused = await user.put("/me/services/call-forwarding-always", json=body)
    assert refused.status_code == 403
    assert refused.json()["code"] == "step_up_required"
    await user.step_up()
    saved = await user.put("/me/services/call-forwarding-always", json=body)
    assert saved.status_code == 200, saved.text
    assert saved.json()["destination"] == "+31687654321"
    assert (await user.get("/me/services/call-forwarding-always")).json()["destination"] == "+31687654321"


async def test_invalid_input_names_the_field(make_user: UserFactory) -> None:
    user = await make_user()
    await user.step_up()
    response = await user.put("/me/services/call-forwarding-busy", json={"active": True, "destination": "abc"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "destination"
    loop = await user.put("/me/services/call-forwarding-busy", json={"active": True, "destination": "201"})
    assert loop.status_code == 422
    assert "own number" in loop.json()["detail"][0]["msg"]


async def test_unlicensed_service_answers_403_with_reason(make_user: UserFactory) -> None:
    user = await make_user(["do-not-disturb"])
    response = await user.get("/me/services/call-forwarding-always")
    assert response.status_code == 403
    assert response.json()["code"] == "not_licensed"
    assert (await user.put("/me/services/call-forwarding-always", json={})).status_code == 403
    assert (await user.get("/me/services")).json()["services"] == ["do-not-disturb"]


async def test_users_never_see_each_others_settings(make_user: UserFactory) -> None:
    alice = await make_user()
    bob = await make_user()
    assert (await alice.put("/me/services/do-not-disturb", json={"active": True})).status_code == 200
    assert (await bob.get("/me/services/do-not-disturb")).json()["active"] is False
    assert (await alice.get("/me/services/do-not-disturb")).json()["active"] is True
