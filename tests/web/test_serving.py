"""The app is served at / beside the API, with caching that lets updates through, and stays small."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import httpx

WEB = Path(__file__).resolve().parents[2] / "src" / "hipper" / "web"
FIRST_LOAD_BUDGET = 150 * 1024


async def test_app_shell_is_served_and_revalidated(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert '<script type="module" src="/js/app.js">' in page.text
    assert page.headers["cache-control"] == "no-cache"
    again = await client.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304

    worker = await client.get("/sw.js")
    assert worker.headers["cache-control"] == "no-cache"
    assert "javascript" in worker.headers["content-type"]

    manifest = await client.get("/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    for icon in manifest.json()["icons"]:
        answer = await client.get(icon["src"])
        assert answer.status_code == 200, icon["src"]
        assert "max-age" in answer.headers["cache-control"]


async def test_the_api_is_not_shadowed_by_the_app(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/me")).status_code == 401
    assert (await client.get("/api/v1/openapi.json")).status_code == 200
    assert (await client.get("/no-such-file.js")).status_code == 404


def test_first_load_stays_under_budget() -> None:
    # Every module is imported statically from app.js, so the first load is all JS, the CSS and one language.
    files = [*WEB.glob("js/*.js"), WEB / "app.css", WEB / "index.html", WEB / "i18n" / "nl.json"]
    compressed = sum(len(gzip.compress(path.read_bytes(), 9)) for path in files)
    assert compressed < FIRST_LOAD_BUDGET, compressed


def test_the_offline_shell_lists_every_module() -> None:
    worker = (WEB / "sw.js").read_text()
    for module in WEB.glob("js/*.js"):
        assert f'"/js/{module.name}"' in worker, f"{module.name} is missing from the offline shell"


def test_dutch_and_english_have_the_same_texts() -> None:
    dutch = json.loads((WEB / "i18n" / "nl.json").read_text())
    english = json.loads((WEB / "i18n" / "en.json").read_text())
    assert dutch.keys() == english.keys()
    # Every literal key the code asks for exists (dynamic keys are covered by the browser walk).
    used = set()
    for module in WEB.glob("js/*.js"):
        used |= set(re.findall(r"\bt\(\"([a-z_.\-]+)\"", module.read_text()))
    assert used - dutch.keys() == set()
