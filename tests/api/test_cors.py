"""The app may be hosted on another origin: the exchange then allows exactly the configured origins."""

from pathlib import Path

import httpx
import pytest

from hipper.api.app import create_app
from hipper.config import Settings
from tests.conftest import FAST_ARGON2


@pytest.fixture
async def cors_client(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, cors_origins=["https://app.example.com"], **FAST_ARGON2
    )
    app = create_app(settings, run_migrations=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        yield client
    await app.state.hipper.engine.dispose()


async def test_preflight_from_the_configured_origin_is_allowed(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.options(
        "/api/v1/auth/login",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


async def test_other_origins_get_no_cors_grant(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.get("/api/v1/health", headers={"Origin": "https://evil.example.net"})
    assert "access-control-allow-origin" not in response.headers
