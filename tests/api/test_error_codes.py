"""Every error answer carries a stable `code` (and a 422 its field paths) and never echoes what was sent."""

from tests.conftest import UserFactory


async def test_a_422_names_field_and_code_and_never_echoes_the_input(make_user: UserFactory) -> None:
    user = await make_user()
    secret = "hunter2-" + "x" * 300
    response = await user.put("/auth/password", json={"current_password": secret, "new_password": secret})
    assert response.status_code == 422
    body = response.json()
    assert "hunter2" not in response.text
    assert body["code"] == "validation_failed"
    item = body["detail"][0]
    assert (item["field"], item["code"], item["limits"]) == ("current_password", "too_long", {"max_length": 200})
    assert "input" not in item and "ctx" not in item


async def test_field_codes_of_service_settings_and_list_items(make_user: UserFactory) -> None:
    user = await make_user()
    await user.post("/auth/step-up", json={"pin": "2580"})
    bad = await user.put("/me/services/remote-office", json={"active": True, "destination": "abc"})
    assert bad.status_code == 422
    assert "abc" not in bad.text
    assert [(item["field"], item["code"]) for item in bad.json()["detail"]] == [("destination", "phone_number")]
    twice = {"active": True, "targets": [{"number": "+31207654321"}, {"number": "+31207654321"}]}
    listed = await user.put("/me/services/simultaneous-ring", json=twice)
    assert [(item["field"], item["code"]) for item in listed.json()["detail"]] == [("targets.1.number", "duplicate")]
    pin = await user.put("/auth/pin", json={"pin": "1234", "current_pin": "2580"})
    assert [(item["field"], item["code"]) for item in pin.json()["detail"]] == [("pin", "pin_consecutive")]


async def test_other_errors_carry_their_own_code(make_user: UserFactory) -> None:
    user = await make_user()
    assert (await user.post("/auth/step-up", json={"pin": "9999"})).json()["code"] == "wrong_pin"
    wrong = await user.put("/auth/password", json={"current_password": "nope", "new_password": "new pass 2"})
    assert wrong.json()["code"] == "wrong_password"
    assert (await user.get("/me/voicemails/99999/audio")).json()["code"] == "not_found"
    logged_out = await user.client.get("/api/v1/me")
    assert (logged_out.status_code, logged_out.json()["code"]) == (401, "not_logged_in")
    assert logged_out.headers["WWW-Authenticate"] == "Bearer"
