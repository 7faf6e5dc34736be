"""The app is served at / beside the API, with caching that lets updates through, and stays small."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import httpx

from hipper.api.app import create_app
from hipper.config import Settings

WEB = Path(__file__).resolve().parents[2] / "src" / "hipper" / "web"
FIRST_LOAD_BUDGET = 150 * 1024


async def test_app_shell_is_served_and_revalidated(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert re.search(r'<script type="module" src="/v/[0-9a-f]{12}/js/app.js">', page.text)
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


async def test_text_files_go_out_compressed_and_versioned_names_are_cached_for_a_year(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert page.headers["content-encoding"] == "br"
    assert page.headers["vary"] == "Accept-Encoding"
    module = re.search(r'src="(/v/[0-9a-f]{12}/js/app.js)"', page.text)
    assert module is not None
    versioned = await client.get(module.group(1), headers={"Accept-Encoding": "gzip"})
    assert versioned.status_code == 200
    assert versioned.headers["content-encoding"] == "gzip"
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.text == (WEB / "js" / "app.js").read_text()
    # Without an encoding the plain file, revalidated by its own ETag (each encoding has its own).
    plain = await client.get("/js/app.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["cache-control"] == "no-cache"
    assert plain.headers["etag"] != versioned.headers["etag"]
    unchanged = await client.get(
        "/js/app.js", headers={"Accept-Encoding": "gzip", "If-None-Match": versioned.headers["etag"]}
    )
    assert unchanged.status_code == 304
    # The offline shell caches the versioned names the page asks for.
    worker = await client.get("/sw.js")
    assert f'const VERSION = "{module.group(1).removesuffix("/js/app.js")}";' in worker.text
    # The language files are read relative to the module, so under the same version.
    dutch = await client.get(module.group(1).replace("js/app.js", "i18n/nl.json"), headers={"Accept-Encoding": "br"})
    assert dutch.json()["action.save"] == "Opslaan"
    # Nothing outside the app is served by a versioned name either.
    assert (await client.get(module.group(1).replace("js/app.js", "../../pyproject.toml"))).status_code == 404


async def test_the_terms_page_ships_and_an_operator_replaces_it(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    shipped = await client.get("/terms.html")
    assert shipped.status_code == 200
    assert "Gebruiksvoorwaarden en privacyverklaring" in shipped.text
    # The app's Content-Security-Policy (style-src 'self') applies: no inline styles, its own stylesheet.
    assert "<style" not in shipped.text and (await client.get("/terms.css")).status_code == 200
    own = tmp_path / "voorwaarden.html"
    own.write_text("<!doctype html><title>Voorwaarden van Acme</title><p>Acme's own terms.</p>")
    app = create_app(settings.model_copy(update={"terms_page": own}), run_migrations=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as other:
            replaced = await other.get("/terms.html")
            assert replaced.headers["content-type"].startswith("text/html")
            assert "Acme's own terms." in replaced.text
    finally:
        await app.state.hipper.engine.dispose()
