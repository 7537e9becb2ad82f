"""`tusd-py serve --assets --database postgresql://...`: two real servers on one real
PostgreSQL, provisioned by the admin CLI with the same `--database`, a tus client uploading
a wav to one of them, and the asset ready, charged once, on both.

The two share a data directory (one host's workers: file store, file locks, the hook
outbox on local disk); whichever claims the processing job finds the bytes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assets_helpers import admin_cli, media_factory, wait_for_state
from tusclient.client import TusClient

if TYPE_CHECKING:
    from assets_helpers import ServerFactory

PRICE = 7
ADMIN_TOKEN = "admin-token-for-tests"


def test_a_wav_uploaded_by_a_tus_client_is_ready_and_charged_once_on_postgres(
    server_factory: ServerFactory, postgres_server: Any, tmp_path: Path
) -> None:
    database = postgres_server.create_database()
    flags = ("--assets", "--database", database, "--price-per-minute", str(PRICE), "--admin-token", ADMIN_TOKEN)
    data = tmp_path / "data"
    with ThreadPoolExecutor(2) as pool:
        # Both start, each creating the schema if it is not there yet, while the CLI provisions.
        starting = [pool.submit(server_factory, *flags, "--locker", "file", upload_dir=data) for _ in range(2)]
        admin_dir = tmp_path / "admin"
        account = admin_cli(database, admin_dir, "accounts", "create", "acme")
        project = admin_cli(database, admin_dir, "projects", "create", "--account", account["id"], "podcasts")
        key = admin_cli(database, admin_dir, "keys", "create", "--account", account["id"])["key"]
        assert admin_cli(database, admin_dir, "billing", "top-up", account["id"], "100")["balance"] == 100
        first, second = (future.result(timeout=60) for future in starting)

    wav = media_factory.make_audio(tmp_path / "talk.wav", "wav", 3.0)
    client = TusClient(first.endpoint, headers={"Authorization": f"Bearer {key}"})
    uploader = client.uploader(
        file_path=str(wav), chunk_size=16 * 1024, metadata={"project_id": project["id"], "filename": "talk.wav"}
    )
    uploader.upload()
    assert uploader.url is not None and uploader.url.startswith(first.endpoint)
    asset_id = uploader.url.rstrip("/").rsplit("/", 1)[-1]

    # Either instance may have processed it; both read it from the shared database.
    ready = wait_for_state(second.origin, asset_id, key, "ready")
    assert ready["state"] == "ready", ready
    assert (ready["kind"], ready["extension"], ready["mime_type"]) == ("audio", "wav", "audio/wav")
    assert ready["size"] == wav.stat().st_size
    assert float(ready["duration"]) == 3.0
    assert wait_for_state(first.origin, asset_id, key, "ready") == ready

    charges = postgres_server.psql(
        f"SELECT charged_asset_id, amount FROM ledger WHERE kind = 'charge' AND account_id = '{account['id']}'",
        database.rsplit("/", 1)[1],
    )
    assert charges.split() == [f"{asset_id}|{PRICE}"]
    balance = postgres_server.psql(
        f"SELECT balance FROM accounts WHERE id = '{account['id']}'", database.rsplit("/", 1)[1]
    )
    assert int(balance) == 100 - PRICE
    # The hook outbox stays on local disk; no SQLite asset database was made beside it.
    assert (data / ".hooks" / "outbox.sqlite3").exists()
    assert not (data / "assets.sqlite3").exists()
