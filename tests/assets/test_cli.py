"""The admin commands: accounts, projects, keys and top-ups, as JSON on stdout."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asset_admin import cli_json, run_cli

from tusd_py.assets.db import create_engine, database_url
from tusd_py.assets.errors import ApiError
from tusd_py.assets.service import AssetService

DB_NAME = "assets.sqlite3"


@dataclass(frozen=True)
class Created:
    upload_dir: Path
    account: dict[str, Any]
    project: dict[str, Any]
    key: dict[str, Any]


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory) -> Created:
    """One account, project and key made through the CLI, shared by the read-only tests."""
    upload_dir = tmp_path_factory.mktemp("cli") / "data"
    account = cli_json(upload_dir, "accounts", "create", "Acme Audio")
    project = cli_json(upload_dir, "projects", "create", "--account", account["id"], "podcasts")
    key = cli_json(upload_dir, "keys", "create", "--account", account["id"])
    return Created(upload_dir, account, project, key)


@pytest.fixture(scope="module")
def refusals(created: Created) -> str:
    """An account that only ever sees refused commands: its balance stays 0."""
    return str(cli_json(created.upload_dir, "accounts", "create", "refusals")["id"])


def balance_and_ledger(upload_dir: Path, account_id: str) -> tuple[int, list[tuple[str, int]]]:
    with sqlite3.connect(upload_dir / DB_NAME) as db:
        (balance,) = db.execute("SELECT balance FROM accounts WHERE id = ?", (account_id,)).fetchone()
        rows = db.execute("SELECT kind, amount FROM ledger WHERE account_id = ?", (account_id,)).fetchall()
    return balance, sorted(rows)


def assert_json_error(stderr: str, code: str) -> None:
    body = json.loads(stderr)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def authenticate(upload_dir: Path, key: str) -> str:
    async def run() -> str:
        engine = create_engine(database_url(None, upload_dir))
        try:
            return await AssetService(engine).authenticate(key)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_accounts_create_prints_id_name_and_zero_balance(created: Created) -> None:
    assert set(created.account) == {"id", "name", "balance"}
    assert isinstance(created.account["id"], str) and created.account["id"]
    assert created.account["name"] == "Acme Audio"
    assert created.account["balance"] == 0


def test_projects_create_prints_id_account_and_name(created: Created) -> None:
    assert set(created.project) == {"id", "account_id", "name"}
    assert isinstance(created.project["id"], str) and created.project["id"]
    assert created.project["account_id"] == created.account["id"]
    assert created.project["name"] == "podcasts"


def test_keys_create_prints_id_and_secret_key(created: Created) -> None:
    assert set(created.key) == {"id", "key"}
    assert isinstance(created.key["id"], str) and created.key["id"]
    assert created.key["key"].startswith("sk_")
    # Long enough to be unguessable: at least 128 random bits in any sane encoding.
    assert len(created.key["key"]) >= 3 + 22
    assert created.key["id"] not in created.key["key"]


def test_key_authenticates_its_account(created: Created) -> None:
    assert authenticate(created.upload_dir, created.key["key"]) == created.account["id"]


def test_key_is_stored_only_as_a_hash(created: Created) -> None:
    secret = created.key["key"].encode()
    files = [path for path in created.upload_dir.rglob("*") if path.is_file()]
    assert any(path.name == DB_NAME for path in files)
    # The WAL and shared-memory files hold recent pages too, so every file is searched.
    for path in files:
        assert secret not in path.read_bytes(), f"the plaintext key is in {path.name}"
    with sqlite3.connect(created.upload_dir / DB_NAME) as db:
        rows = db.execute("SELECT * FROM api_keys WHERE id = ?", (created.key["id"],)).fetchall()
    assert len(rows) == 1
    assert all(created.key["key"] not in str(value) for value in rows[0])


def test_keys_revoke_refuses_the_key_afterwards(created: Created) -> None:
    upload_dir = created.upload_dir
    key = cli_json(upload_dir, "keys", "create", "--account", created.account["id"])
    revoked = run_cli(upload_dir, "keys", "revoke", key["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["id"] == key["id"]
    with sqlite3.connect(upload_dir / DB_NAME) as db:
        (revoked_at,) = db.execute("SELECT revoked_at FROM api_keys WHERE id = ?", (key["id"],)).fetchone()
    assert revoked_at is not None
    with pytest.raises(ApiError) as refused:
        authenticate(upload_dir, key["key"])
    assert refused.value.status == 401
    # Revoking one key leaves the account's other keys working.
    assert authenticate(upload_dir, created.key["key"]) == created.account["id"]


def test_keys_revoke_of_an_unknown_key_fails_with_a_json_error(created: Created) -> None:
    result = run_cli(created.upload_dir, "keys", "revoke", "key_does_not_exist")
    assert result.returncode != 0
    assert result.stdout == ""
    assert_json_error(result.stderr, "not_found")


def test_billing_top_up_prints_the_new_balance(created: Created) -> None:
    upload_dir = created.upload_dir
    account_id = cli_json(upload_dir, "accounts", "create", "payer")["id"]
    assert cli_json(upload_dir, "billing", "top-up", account_id, "250") == {"account_id": account_id, "balance": 250}
    assert cli_json(upload_dir, "billing", "top-up", account_id, "1") == {"account_id": account_id, "balance": 251}
    assert balance_and_ledger(upload_dir, account_id) == (251, [("top_up", 1), ("top_up", 250)])


@pytest.mark.parametrize(
    "command",
    [
        ("projects", "create", "--account", "acct_missing", "orphan"),
        ("keys", "create", "--account", "acct_missing"),
        ("billing", "top-up", "acct_missing", "10"),
    ],
    ids=["projects-create", "keys-create", "top-up"],
)
def test_unknown_account_fails_with_a_json_error(created: Created, command: tuple[str, ...]) -> None:
    result = run_cli(created.upload_dir, *command)
    assert result.returncode != 0
    assert result.stdout == ""
    assert_json_error(result.stderr, "not_found")
    with sqlite3.connect(created.upload_dir / DB_NAME) as db:
        orphans = [
            db.execute(f"SELECT count(*) FROM {table} WHERE account_id = 'acct_missing'").fetchone()[0]
            for table in ("projects", "api_keys", "ledger")
        ]
    assert orphans == [0, 0, 0]


@pytest.mark.parametrize("amount", ["0", "-3", "1.5"])
def test_top_up_refuses_an_amount_that_is_not_a_positive_integer(created: Created, refusals: str, amount: str) -> None:
    # "--" so "-3" reaches the amount argument instead of reading as an option.
    result = run_cli(created.upload_dir, "billing", "top-up", refusals, "--", amount)
    assert result.returncode != 0
    assert result.stdout == ""
    assert balance_and_ledger(created.upload_dir, refusals) == (0, [])


def test_top_up_of_an_amount_past_64_bits_is_refused_cleanly(created: Created, refusals: str) -> None:
    result = run_cli(created.upload_dir, "billing", "top-up", refusals, str(10**20))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert balance_and_ledger(created.upload_dir, refusals) == (0, [])


def test_database_flag_puts_the_database_where_it_says(tmp_path: Path) -> None:
    database = tmp_path / "elsewhere.sqlite3"
    account = cli_json(tmp_path / "data", "accounts", "create", "moved", "--database", str(database))
    with sqlite3.connect(database) as db:
        names = db.execute("SELECT name FROM accounts WHERE id = ?", (account["id"],)).fetchall()
    assert names == [("moved",)]
    assert not (tmp_path / "data" / DB_NAME).exists()
