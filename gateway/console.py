"""The operators' web console at ``/ui``: static files shipped in the package (``gateway/ui/``).

The console is a client of the Admin API under ``/api/``, like the CLI: it has no routes or
data of its own, so it cannot drift from what gRPC admin clients see. Its files are read once
when the app is built, so only they can be served (no path from a request ever reaches the
file system) and a request costs a dict lookup.

Every answer carries headers that make injected markup inert even if a bug let some through:
a Content-Security-Policy allowing only this origin's scripts and styles (no inline script or
style, no eval, nothing framed), ``nosniff``, no referrer and frame denial.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

UI_DIR = Path(__file__).resolve().parent / "ui"
PREFIX = "/ui"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # uPlot draws on canvas; data: for the favicon only
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(root: Path = UI_DIR) -> dict[str, Asset]:
    """Every servable file under ``root`` by its path relative to it (``js/app.js``)."""
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        content_type = _TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[path.relative_to(root).as_posix()] = Asset(body, content_type, etag)
    return assets


def console_routes(assets: dict[str, Asset] | None = None) -> list[Route]:
    files = load_assets() if assets is None else assets

    async def index(request: Request) -> Response:
        return _serve(request, files.get("index.html"))

    async def asset(request: Request) -> Response:
        return _serve(request, files.get(request.path_params["path"]))

    async def to_index(_request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=308, headers=SECURITY_HEADERS)

    return [
        Route(PREFIX, to_index, methods=["GET", "HEAD"]),
        Route(f"{PREFIX}/", index, methods=["GET", "HEAD"]),
        Route(f"{PREFIX}/{{path:path}}", asset, methods=["GET", "HEAD"]),
    ]


def _serve(request: Request, found: Asset | None) -> Response:
    if found is None:
        return Response("not found\n", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
    # no-cache: the browser revalidates (a 304 costs nothing), so an upgrade shows at once.
    headers = {**SECURITY_HEADERS, "etag": found.etag, "cache-control": "no-cache"}
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.content_type, headers=headers)
