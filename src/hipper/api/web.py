"""Serve the Hipper+ app (the PWA in `hipper/web`) at the site root, beside the API under /api/v1.

No build step (a fresh `pip install -e .` serves the app as it is in the tree), so what a build would do happens
here, once per process:

- Compression: every text file is compressed with Brotli and gzip the first time it is asked for and kept in
  memory (the whole app is about 200 KB), then sent as the browser's Accept-Encoding prefers (`Vary`).
- Versioned names: the page refers to its CSS and modules under `/v/<version>/…`, where the version is a hash
  of every file of the app. Those answers may be cached for a year (`immutable`): a changed file changes the
  version, so the next page load asks for new names. The modules import each other relatively ("./api.js")
  and read the language files relative to themselves, so the whole graph lives under the same version.
- The page itself, the service worker script and the unversioned names stay `no-cache` (revalidated with the
  ETag: a cheap 304), so an update is seen on the next load. The worker's offline shell lists the versioned
  names (its cache name carries the version too, so an update replaces the old shell).
"""

from __future__ import annotations

import gzip
import hashlib
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import anyio
import brotli  # type: ignore[import-untyped]
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

# Icons never change under the same name; versioned names never change at all.
LONG_LIVED_PREFIXES = ("icons/",)
IMMUTABLE = "public, max-age=31536000, immutable"
TEXT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json",
}
VERSIONED = re.compile(r"^v/([0-9a-f]{1,32})/(.*)$")
# What the page refers to under the version: its stylesheet and its modules.
PAGE_ASSETS = re.compile(r'(href|src)="/(app\.css|js/[a-z_]+\.js)"')


def app_version(root: Path = WEB_ROOT) -> str:
    """A short hash of every file of the app: it changes whenever any of them does."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Asset:
    media_type: str
    etag: str
    raw: bytes
    gzip: bytes
    brotli: bytes

    @classmethod
    def of(cls, body: bytes, media_type: str) -> Asset:
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        squeezed = brotli.compress(body, quality=11, mode=brotli.MODE_TEXT)
        return cls(media_type, etag, body, gzip.compress(body, 9, mtime=0), squeezed)


def preferred_encoding(accept: str) -> str | None:
    """br before gzip, as offered by Accept-Encoding (RFC 9110 §12.5.3; a q=0 refuses a coding)."""
    offered: dict[str, float] = {}
    for part in accept.split(","):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        match = re.search(r"q=([0-9.]+)", params)
        if match:
            try:
                quality = float(match.group(1))
            except ValueError:
                quality = 0.0
        offered[name.strip().lower()] = quality
    for coding in ("br", "gzip"):
        if offered.get(coding, offered.get("*", 0.0)) > 0:
            return coding
    return None


class AppFiles(StaticFiles):
    def __init__(self, *, directory: Path, replacements: dict[str, Path] | None = None) -> None:
        super().__init__(directory=directory, html=True)
        self.resolved_root = directory.resolve()
        self.version = app_version(directory)
        self.assets: dict[str, Asset] = {}
        # Files an operator replaces by configuration (the terms page): served from their own path.
        self.replacements = replacements or {}

    def _rewrite(self, name: str, body: bytes) -> bytes:
        prefix = f"/v/{self.version}"
        if name == "index.html":
            return PAGE_ASSETS.sub(lambda m: f'{m.group(1)}="{prefix}/{m.group(2)}"', body.decode()).encode()
        if name == "sw.js":
            return body.decode().replace('const VERSION = "";', f'const VERSION = "{prefix}";', 1).encode()
        return body

    def _asset(self, name: str, path: Path) -> Asset:
        asset = self.assets.get(name)
        if asset is None:
            body = self._rewrite(name, path.read_bytes())
            media_type = TEXT_TYPES.get(path.suffix, TEXT_TYPES[".html"])  # an operator's page may be .htm
            asset = self.assets[name] = Asset.of(body, media_type)
        return asset

    async def get_response(self, path: str, scope: Scope) -> Response:
        version_match = VERSIONED.match(path.replace("\\", "/"))
        name = version_match.group(2) if version_match else path
        if name in ("", "."):
            name = "index.html"
        full, found = await anyio.to_thread.run_sync(self.lookup_path, name)
        if name in self.replacements:
            response = await self._text_response(name, self.replacements[name], scope)
        elif found is not None and stat.S_ISREG(found.st_mode) and Path(full).suffix in TEXT_TYPES:
            name = Path(full).relative_to(self.resolved_root).as_posix()
            response = await self._text_response(name, Path(full), scope)
        else:
            response = await super().get_response(name, scope)
        if version_match and version_match.group(1) == self.version:
            response.headers["Cache-Control"] = IMMUTABLE
        elif name.startswith(LONG_LIVED_PREFIXES):
            response.headers["Cache-Control"] = "public, max-age=604800"
        else:
            response.headers["Cache-Control"] = "no-cache"
        if name == "sw.js":
            # The worker controls the whole site although it lives at the root anyway; say so explicitly.
            response.headers["Service-Worker-Allowed"] = "/"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    async def _text_response(self, name: str, path: Path, scope: Scope) -> Response:
        asset = self.assets.get(name)
        if asset is None:  # the first time: read and compress off the event loop
            asset = await anyio.to_thread.run_sync(self._asset, name, path)
        headers = Headers(scope=scope)
        coding = preferred_encoding(headers.get("accept-encoding", ""))
        etag = asset.etag if coding is None else f'{asset.etag[:-1]}-{coding}"'
        sent = {"ETag": etag, "Vary": "Accept-Encoding"}
        if etag in [tag.strip() for tag in headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=sent)
        body = {"br": asset.brotli, "gzip": asset.gzip}.get(coding or "", asset.raw)
        if coding is not None:
            sent["Content-Encoding"] = coding
        return Response(body, media_type=asset.media_type, headers=sent)


def mount(app: FastAPI, terms_page: Path | None = None) -> None:
    """Mount last: routes added before it (the API) win, everything else is a file of the app."""
    if terms_page is not None and not terms_page.is_file():
        raise FileNotFoundError(f"terms_page: no such file {terms_page}")
    replacements = {"terms.html": terms_page} if terms_page is not None else {}
    app.mount("/", AppFiles(directory=WEB_ROOT, replacements=replacements), name="web")
