from tests.conftest import UserFactory


async def test_login_with_wrong_password_is_refused(make_user: UserFactory) -> None:
    user = await make_user()
    response = await user.client.post("/api/v1/auth/login", json={"username": user.username, "password": "x"})
    assert response.status_code == 401


async def test_repeated_wrong_passwords_lock_the_account(make_user: UserFactory) -> None:
    user = await make_user()
    for _ in range(5):
        response = await user.client.post("/api/v1/auth/login", json={"username": user.username, "password": "wrong"})
        assert response.status_code == 401
    response = await user.client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert response.status_code == 429


async def test_first_login_asks_for_a_pin_and_refuses_trivial_ones(make_user: UserFactory) -> None:
    user = await make_user(pin=None)
    response = await user.client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert response.json()["pin_required"] is True
    assert (await user.put("/auth/pin", json={"pin": "1234"})).status_code == 422
    assert (await user.put("/auth/pin", json={"pin": "7391"})).status_code == 204
    assert (await user.get("/me")).json()["pin_set"] is True
    # Changing it later needs the current PIN.
    assert (await user.put("/auth/pin", json={"pin": "8462"})).status_code == 403
    assert (await user.put("/auth/pin", json={"pin": "8462", "current_pin": "7391"})).status_code == 204


async def test_wrong_pins_lock_the_step_up(make_user: UserFactory) -> None:
    user = await make_user()
    for _ in range(5):
        assert (await user.post("/auth/step-up", json={"pin": "9999"})).status_code == 403
    assert (await user.post("/auth/step-up", json={"pin": "2580"})).status_code == 429


async def test_logout_ends_the_session(make_user: UserFactory) -> None:
    user = await make_user()
    assert (await user.post("/auth/logout")).status_code == 204
    assert (await user.get("/me")).status_code == 401


async def test_change_password(make_user: UserFactory) -> None:
    user = await make_user()
    bad = await user.put("/auth/password", json={"current_password": "nope", "new_password": "new pass 2"})
    assert bad.status_code == 403
    weak = await user.put("/auth/password", json={"current_password": user.password, "new_password": "short"})
    assert weak.status_code == 422
    ok = await user.put("/auth/password", json={"current_password": user.password, "new_password": "new pass 2"})
    assert ok.status_code == 204
    login = await user.client.post("/api/v1/auth/login", json={"username": user.username, "password": "new pass 2"})
    assert login.status_code == 200


async def test_profile_shows_numbers_and_licensed_services(make_user: UserFactory) -> None:
    user = await make_user(["basic"])
    profile = (await user.get("/me")).json()
    assert profile["extension"] == "201"
    assert profile["numbers"] == {
        "company": "+31201234000",
        "direct": "+31201234101",
        "mobile": "+31612345601",
    }
    assert "call-forwarding-always" in profile["services"]
    assert "personal-assistant" not in profile["services"]
    assert profile["new_voicemails"] == 0


async def test_no_token_no_access(make_user: UserFactory) -> None:
    user = await make_user()
    assert (await user.client.get("/api/v1/me")).status_code == 401
    bogus = await user.client.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"})
    assert bogus.status_code == 401


async def test_unknown_usernames_answer_exactly_like_real_ones(make_user: UserFactory) -> None:
    """No enumeration: an unknown name gets the same 401s, then the same lockout, as a real account."""
    user = await make_user()
    for name in (user.username, "nobody-here"):
        answers = []
        for _ in range(6):
            response = await user.client.post("/api/v1/auth/login", json={"username": name, "password": "wrong"})
            answers.append((response.status_code, response.json()["detail"]))
        assert [status for status, _ in answers] == [401] * 5 + [429], name
    assert answers[0][1] == "wrong username or password"


async def test_wrong_current_passwords_lock_the_account_too(make_user: UserFactory) -> None:
    user = await make_user()
    for _ in range(5):
        response = await user.put("/auth/password", json={"current_password": "guess", "new_password": "new pass 2"})
        assert response.status_code == 403
    locked = await user.put("/auth/password", json={"current_password": user.password, "new_password": "new pass 2"})
    assert locked.status_code == 429


async def test_a_new_password_ends_the_other_sessions(make_user: UserFactory) -> None:
    user = await make_user()
    other = await user.client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    other_headers = {"Authorization": f"Bearer {other.json()['token']}"}
    changed = await user.put("/auth/password", json={"current_password": user.password, "new_password": "new pass 2"})
    assert changed.status_code == 204
    assert (await user.client.get("/api/v1/me", headers=other_headers)).status_code == 401
    assert (await user.get("/me")).status_code == 200
