"""The upload page (`tusd-py serve --web`): `/` and its assets under `/web/`.

`WebApp` wraps the whole app and answers GET/HEAD of `/` and of the few files under
`/web/`; every other request goes on to the wrapped app. The asset names all hold a dot,
which upload ids never do, so `/web/...` cannot shadow an upload even when the tus base
path is `/` or `/web/`.
"""

from __future__ import annotations

import json
from importlib import resources

from starlette.types import ASGIApp, Receive, Scope, Send

PAGE_PATH = "/"
ASSET_PREFIX = "/web/"

# Only the page's own origin: no inline script or style, no third-party host, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SAFE_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]
_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class WebApp:
    """ASGI middleware serving the upload page in front of `app`."""

    def __init__(self, app: ASGIApp, *, base_path: str, assets: bool) -> None:
        self.app = app
        self.base_path = base_path
        self.assets = assets
        self._files = {name: (_read(name), content_type) for name, content_type in _STATIC.items()}

    def config(self, root_path: str) -> bytes:
        """What the page needs to know: where to create uploads, and whether through /v1."""
        return json.dumps(
            {"base_path": root_path + self.base_path, "api_path": root_path + "/v1", "assets": self.assets}
        ).encode()

    def _lookup(self, path: str, root_path: str) -> tuple[bytes, str] | None:
        if path == PAGE_PATH:
            return self._files["index.html"]
        if not path.startswith(ASSET_PREFIX):
            return None
        name = path[len(ASSET_PREFIX) :]
        if name == "config.json":
            return self.config(root_path), "application/json"
        if name == "index.html":
            # The page's links are relative to `/`.
            return None
        return self._files.get(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        found = self._lookup(path, root_path)
        if found is None:
            await self.app(scope, receive, send)
            return
        body, content_type = found
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *_SAFE_HEADERS,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
