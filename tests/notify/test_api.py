"""The push-subscription API: each user stores, lists and deletes only their own browsers' subscriptions."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from hipper.notify import vapid
from tests.conftest import UserFactory
from tests.notify.conftest import b64url


def browser_subscription(endpoint: str | None = None) -> dict[str, Any]:
    """What `PushSubscription.toJSON()` gives in a browser."""
    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": endpoint or f"https://fcm.googleapis.com/fcm/send/{b64url(os.urandom(24))}",
        "expirationTime": None,
        "keys": {"p256dh": b64url(public), "auth": b64url(os.urandom(16))},
    }


async def test_store_list_and_delete_only_own(make_user: UserFactory) -> None:
    alice, bob = await make_user(), await make_user()
    phone, laptop, bobs = browser_subscription(), browser_subscription(), browser_subscription()
    created = []
    for user, body in ((alice, phone), (alice, laptop), (bob, bobs)):
        response = await user.post("/me/push-subscriptions", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["endpoint"] == body["endpoint"]
        created.append(response.json()["id"])
    phone_id, laptop_id, bobs_id = created

    listed = (await alice.get("/me/push-subscriptions")).json()
    assert [(s["id"], s["endpoint"]) for s in listed] == [
        (phone_id, phone["endpoint"]),
        (laptop_id, laptop["endpoint"]),
    ]
    assert [s["id"] for s in (await bob.get("/me/push-subscriptions")).json()] == [bobs_id]

    # Someone else's subscription and one that does not exist answer alike.
    assert (await alice.delete(f"/me/push-subscriptions/{bobs_id}")).status_code == 404
    assert (await alice.delete("/me/push-subscriptions/999999")).status_code == 404
    assert (await alice.delete("/me/push-subscriptions", params={"endpoint": bobs["endpoint"]})).status_code == 204
    assert [s["id"] for s in (await bob.get("/me/push-subscriptions")).json()] == [bobs_id]

    assert (await alice.delete(f"/me/push-subscriptions/{phone_id}")).status_code == 204
    assert (await alice.delete("/me/push-subscriptions", params={"endpoint": laptop["endpoint"]})).status_code == 204
    assert (await alice.get("/me/push-subscriptions")).json() == []


async def test_subscribing_again_updates_the_keys(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user()
    first = browser_subscription()
    again = browser_subscription(first["endpoint"])
    one = (await user.post("/me/push-subscriptions", json=first)).json()
    two = (await user.post("/me/push-subscriptions", json=again)).json()
    assert one["id"] == two["id"]
    from hipper.store.models import PushSubscription

    async with app.state.hipper.sessions() as session:
        row = await session.get(PushSubscription, one["id"])
        assert row is not None
        assert (row.p256dh, row.auth) == (again["keys"]["p256dh"], again["keys"]["auth"])


async def test_a_browser_that_changes_hands_follows_the_new_user(make_user: UserFactory) -> None:
    before, after = await make_user(), await make_user()
    shared = browser_subscription()
    await before.post("/me/push-subscriptions", json=shared)
    response = await after.post("/me/push-subscriptions", json=browser_subscription(shared["endpoint"]))
    assert response.status_code == 201
    assert (await before.get("/me/push-subscriptions")).json() == []
    assert [s["endpoint"] for s in (await after.get("/me/push-subscriptions")).json()] == [shared["endpoint"]]


def _with(change: dict[str, Any]) -> dict[str, Any]:
    body = browser_subscription()
    for key, value in change.items():
        if key.startswith("keys."):
            body["keys"][key.removeprefix("keys.")] = value
        else:
            body[key] = value
    return body


NOT_ON_CURVE = b64url(b"\x04" + b"\x01" * 64)


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"endpoint": "http://push.example.com/x"}, ["body", "endpoint"]),
        ({"endpoint": "not a url"}, ["body", "endpoint"]),
        ({"endpoint": "https://push.example.com/a\x00b"}, ["body", "endpoint"]),
        ({"endpoint": "https://push.example.com/é"}, ["body", "endpoint"]),
        ({"endpoint": "https://["}, ["body", "endpoint"]),
        ({"endpoint": "https://" + "a" * 1000}, ["body", "endpoint"]),
        ({"keys.p256dh": "abc"}, ["body", "keys", "p256dh"]),
        ({"keys.p256dh": NOT_ON_CURVE}, ["body", "keys", "p256dh"]),
        ({"keys.p256dh": base64.b64encode(b"\x04" + os.urandom(64)).decode()}, ["body", "keys", "p256dh"]),
        ({"keys.auth": b64url(os.urandom(8))}, ["body", "keys", "auth"]),
        ({"keys.auth": "!!!!"}, ["body", "keys", "auth"]),
        ({"keys": None}, ["body", "keys"]),
    ],
)
async def test_invalid_input_is_refused_naming_the_field(
    make_user: UserFactory, change: dict[str, Any], loc: list[str]
) -> None:
    user = await make_user()
    response = await user.post("/me/push-subscriptions", json=_with(change))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert (await user.get("/me/push-subscriptions")).json() == []


async def test_bad_ids_and_missing_login(make_user: UserFactory) -> None:
    user = await make_user()
    assert (await user.delete("/me/push-subscriptions/0")).status_code == 422
    assert (await user.delete(f"/me/push-subscriptions/{2**63}")).status_code == 422
    assert (await user.delete("/me/push-subscriptions")).status_code == 422  # no endpoint
    refused = await user.delete("/me/push-subscriptions", params={"endpoint": "https://x/\x00"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "endpoint"]
    assert (await user.client.get("/api/v1/me/push-subscriptions")).status_code == 401
    assert (await user.client.post("/api/v1/me/push-subscriptions", json=browser_subscription())).status_code == 401


async def test_vapid_public_key_is_generated_once_and_kept(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user()
    first = (await user.client.get("/api/v1/push/vapid-public-key")).json()["public_key"]
    raw = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4))
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)  # a valid P-256 point
    path = vapid.key_file(app.state.hipper.settings)
    assert path.stat().st_mode & 0o777 == 0o600
    assert vapid.load_or_create(path).public_key == first
    assert (await user.client.get("/api/v1/push/vapid-public-key")).json()["public_key"] == first
