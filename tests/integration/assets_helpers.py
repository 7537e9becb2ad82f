"""A real asset platform for the lifecycle tests: `tusd-py serve --assets` plus an account,
project and key made with the admin CLI, the asset API, raw tus requests, the ledger, and
tus-js-client through tests/js/upload.mjs."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tusd_py.cli import main as cli_main

if TYPE_CHECKING:
    from tests.conftest import RunningServer

    ServerFactory = Callable[..., RunningServer]

TESTS_DIR = Path(__file__).resolve().parent.parent
JS_DIR = TESTS_DIR / "js"
# media_factory lives beside the media unit tests; tests are not a package.
if str(TESTS_DIR / "assets") not in sys.path:
    sys.path.insert(0, str(TESTS_DIR / "assets"))
media_factory = importlib.import_module("media_factory")

TUS = {"Tus-Resumable": "1.0.0"}
ADMIN_TOKEN = "admin-token-for-tests"
# The seed's pattern for `duration`.
DURATION_PATTERN = re.compile(r"^(?!^[-+.]*$)[+-]?0*\d*\.?\d*$")
ASSET_FIELDS = {
    "id",
    "project_id",
    "kind",
    "state",
    "extension",
    "size",
    "mime_type",
    "duration",
    "language",
    "created_at",
    "error_code",
    "error_message",
    "upload_url",
}
# (kind, extension, mime_type) the API must report per generated format.
EXPECTED_TYPE: dict[str, tuple[str, str, str]] = {
    "mp3": ("audio", "mp3", "audio/mpeg"),
    "wav": ("audio", "wav", "audio/wav"),
    "flac": ("audio", "flac", "audio/flac"),
    "ogg": ("audio", "ogg", "audio/ogg"),
    "opus": ("audio", "opus", "audio/ogg"),
    "m4a": ("audio", "m4a", "audio/mp4"),
    "mp4": ("video", "mp4", "video/mp4"),
    "webm": ("video", "webm", "video/webm"),
}
SETTLED = ("ready", "pending_payment", "failed")


# The admin CLI's own entry point, given the same arguments as on a shell, once per command.
# One interpreter runs them all: its start-up (over a second) is then paid once per platform.
_PROVISION = """
import contextlib, io, json, sys
from tusd_py.cli import main

upload_dir, balance = sys.argv[1], int(sys.argv[2])


def run(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--upload-dir", upload_dir])
    if code != 0:
        sys.exit(f"tusd-py {' '.join(args)} exited {code}")
    return json.loads(out.getvalue())


account = run("accounts", "create", "acme")
project = run("projects", "create", "--account", account["id"], "podcasts")
key = run("keys", "create", "--account", account["id"])
top_up = run("billing", "top-up", account["id"], str(balance)) if balance else None
print(json.dumps({"account": account, "project": project, "key": key, "top_up": top_up}))
"""


@dataclass(frozen=True)
class Tenant:
    account_id: str
    project_id: str
    key: str


def provision(upload_dir: Path, balance: int) -> Tenant:
    """An account holding `balance`, with one project and one key, made by the admin CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROVISION, str(upload_dir), str(balance)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"provisioning failed: {done.stderr}"
    made = json.loads(done.stdout)
    account_id = made["account"]["id"]
    assert made["account"]["balance"] == 0
    assert made["project"]["account_id"] == account_id
    assert made["key"]["key"].startswith("sk_")
    if balance:
        assert made["top_up"] == {"account_id": account_id, "balance": balance}
    return Tenant(account_id, made["project"]["id"], made["key"]["key"])


@dataclass
class Platform:
    server: RunningServer
    tenant: Tenant
    price: int
    flags: tuple[str, ...]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tenant.key}"}

    @property
    def database(self) -> Path:
        return self.server.upload_dir / "assets.sqlite3"

    def create_asset(self, size: int) -> dict[str, Any]:
        response = httpx.post(
            self.server.origin + "/v1/assets",
            json={"project_id": self.tenant.project_id, "size": size},
            headers=self.auth,
            timeout=10,
        )
        assert response.status_code == 201, response.text
        asset: dict[str, Any] = response.json()
        assert asset["state"] == "pending_upload"
        assert response.headers["Location"] == asset["upload_url"]
        return asset

    def asset(self, asset_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.server.origin}/v1/assets/{asset_id}", headers=self.auth, timeout=10)
        assert response.status_code == 200, response.text
        asset: dict[str, Any] = response.json()
        return asset

    def wait_for(self, asset_id: str, states: Collection[str] = SETTLED, timeout: float = 20.0) -> dict[str, Any]:
        """Poll the asset until its state is one of `states`; the last state seen otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            asset = self.asset(asset_id)
            if asset["state"] in states or time.monotonic() > deadline:
                return asset
            time.sleep(0.05)

    def top_up(self, amount: int, token: str = ADMIN_TOKEN) -> httpx.Response:
        return httpx.post(
            f"{self.server.origin}/v1/accounts/{self.tenant.account_id}/top-ups",
            json={"amount": amount},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )

    def _query(self, sql: str, *params: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database, timeout=10) as db:
            return db.execute(sql, params).fetchall()

    def balance(self) -> int:
        rows = self._query("SELECT balance FROM accounts WHERE id = ?", self.tenant.account_id)
        return int(rows[0][0])

    def charges(self) -> list[tuple[str, int]]:
        """(charged asset id, amount) of every charge row of the account, oldest first."""
        rows = self._query(
            "SELECT charged_asset_id, amount FROM ledger WHERE account_id = ? AND kind = 'charge' ORDER BY id",
            self.tenant.account_id,
        )
        return [(str(asset_id), int(amount)) for asset_id, amount in rows]

    def top_ups(self) -> list[int]:
        rows = self._query(
            "SELECT amount FROM ledger WHERE account_id = ? AND kind = 'top_up' ORDER BY id", self.tenant.account_id
        )
        return [int(amount) for (amount,) in rows]

    def restart(self, server_factory: ServerFactory) -> None:
        self.server = server_factory(*self.flags, upload_dir=self.server.upload_dir)


def start_platform(
    server_factory: ServerFactory, upload_dir: Path, *, price: int, balance: int, flags: tuple[str, ...] = ()
) -> Platform:
    """`tusd-py serve --assets` at `price` per started minute, with a tenant holding `balance`."""
    flags = ("--assets", "--price-per-minute", str(price), "--admin-token", ADMIN_TOKEN, *flags)
    with ThreadPoolExecutor(1) as pool:
        # The CLI's interpreter start-up overlaps the server's.
        tenant = pool.submit(provision, upload_dir, balance)
        server = server_factory(*flags, upload_dir=upload_dir)
        return Platform(server, tenant.result(timeout=120), price, flags)


def admin_cli(database: str, upload_dir: Path, *args: str) -> dict[str, Any]:
    """One admin command, run as `tusd-py ARGS --database URL` would be."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main([*args, "--database", database, "--upload-dir", str(upload_dir)])
    assert code == 0, f"tusd-py {' '.join(args)} exited {code}"
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def wait_for_state(origin: str, asset_id: str, key: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{origin}/v1/assets/{asset_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert response.status_code == 200, response.text
        asset: dict[str, Any] = response.json()
        if asset["state"] == state or time.monotonic() > deadline:
            return asset
        time.sleep(0.05)


# -- tus requests ----------------------------------------------------------------------------


def patch(url: str, offset: int, data: bytes) -> httpx.Response:
    headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    return httpx.patch(url, content=data, headers=headers, timeout=60)


def upload_all(url: str, data: bytes, chunk: int) -> None:
    for offset in range(0, len(data), chunk):
        response = patch(url, offset, data[offset : offset + chunk])
        assert response.status_code == 204, f"PATCH at {offset}: {response.status_code} {response.text}"
        assert response.headers["Upload-Offset"] == str(min(offset + chunk, len(data)))


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


# -- media -----------------------------------------------------------------------------------


class MediaCache:
    """Generated media files by (format, seconds, generator options), made once per session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, fmt: str, seconds: float, **options: bool) -> Path:
        flags = "".join(f"-{name}={value}" for name, value in sorted(options.items()))
        path = self.directory / f"{seconds:g}s{flags}.{fmt}"
        if not path.exists():
            video = fmt in media_factory.VIDEO_FORMATS
            make = media_factory.make_video if video else media_factory.make_audio
            make(path, fmt, seconds, **options)
        return path

    def truncated(self, fmt: str, seconds: float, fraction: float, **options: bool) -> Path:
        """The file cut down to `fraction` of its size, like an interrupted copy."""
        whole = self(fmt, seconds, **options)
        path = whole.with_name(f"{whole.stem}-cut-{fraction:g}{whole.suffix}")
        if not path.exists():
            shutil.copyfile(whole, path)
            media_factory.truncate(path, fraction)
        return path


def started_minutes(seconds: float) -> int:
    return math.ceil(seconds / 60)


def assert_ready(asset: dict[str, Any], fmt: str, size: int, seconds: float) -> Decimal:
    """The asset is ready with the fields the seed promises; returns its duration."""
    assert set(asset) == ASSET_FIELDS
    assert asset["state"] == "ready", asset
    assert (asset["kind"], asset["extension"], asset["mime_type"]) == EXPECTED_TYPE[fmt]
    assert asset["size"] == size
    assert asset["upload_url"] is None
    assert asset["error_code"] is None
    assert asset["error_message"] is None
    duration = asset["duration"]
    assert isinstance(duration, str)
    assert DURATION_PATTERN.match(duration), duration
    measured = Decimal(duration)
    assert abs(measured - Decimal(str(seconds))) <= Decimal("0.1"), f"{fmt}: measured {measured} s for {seconds} s"
    return measured


# -- tus-js-client ---------------------------------------------------------------------------


def find_node() -> str | None:
    """The node binary, with tus-js-client installed from tests/js/package.json when missing."""
    node = shutil.which("node")
    if node is None:
        return None
    if not (JS_DIR / "node_modules" / "tus-js-client").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "node is on PATH but npm is not; cannot install tus-js-client"
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    return node


def run_js(node: str, endpoint: str, file: Path, chunk_size: int, **options: Any) -> subprocess.CompletedProcess[str]:
    """One run of upload.mjs; the caller judges its exit code and JSON output."""
    return subprocess.run(
        [node, str(JS_DIR / "upload.mjs"), endpoint, str(file), str(chunk_size), json.dumps(options)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def js_upload(node: str, endpoint: str, file: Path, chunk_size: int, **options: Any) -> dict[str, Any]:
    done = run_js(node, endpoint, file, chunk_size, **options)
    assert done.returncode == 0, f"upload.mjs exited {done.returncode}: {done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report
