"""Serve the Hipper+ app (the PWA in `hipper/web`) at the site root, beside the API under /api/v1.

The app's files keep stable names (no build step gives them content hashes), so browsers must revalidate them
on every load: `no-cache` with the ETag Starlette sends makes that a cheap 304. The service worker keeps the
offline shell; its own script must never be cached by HTTP or updates would be missed for a day.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

# Icons never change under the same name; everything else is revalidated.
LONG_LIVED_PREFIXES = ("icons/",)


class AppFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if path.startswith(LONG_LIVED_PREFIXES):
            response.headers["Cache-Control"] = "public, max-age=604800"
        else:
            response.headers["Cache-Control"] = "no-cache"
        if path.endswith(".webmanifest"):
            response.headers["Content-Type"] = "application/manifest+json"
        if path == "sw.js":
            # The worker controls the whole site although it lives at the root anyway; say so explicitly.
            response.headers["Service-Worker-Allowed"] = "/"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def mount(app: FastAPI) -> None:
    """Mount last: routes added before it (the API) win, everything else is a file of the app."""
    app.mount("/", AppFiles(directory=WEB_ROOT, html=True), name="web")
