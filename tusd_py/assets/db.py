"""The asset database: schema and engine. SQLAlchemy Core, so the same tables and queries
run on SQLite (the default, a file under the data directory) and PostgreSQL (asyncpg),
which several instances share.

Times are integer microseconds since the epoch and money is integer minor units: portable,
exact and sortable, and BIGINT wherever they are stored (PostgreSQL's INTEGER is 32-bit).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = MetaData()
# Execution option marking connections that only read.
READ_ONLY = "tusd_read_only"
# Key of the PostgreSQL advisory lock under which the schema is created ("tusd" in ASCII).
SCHEMA_LOCK_KEY = 0x74757364

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", Text, nullable=False),
    Column("balance", BigInteger, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    # SHA-256 of the key: keys are 256 random bits, so a fast hash is as safe as a slow one.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

assets = Table(
    "assets",
    metadata,
    # Also the tus upload id, so the transfer URL names the asset.
    Column("id", String(64), primary_key=True),
    Column("project_id", String(40), ForeignKey("projects.id"), nullable=False),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("state", String(20), nullable=False),
    Column("kind", String(10), nullable=True),
    Column("extension", String(16), nullable=True),
    Column("mime_type", String(100), nullable=True),
    Column("declared_size", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=True),
    Column("duration", String(32), nullable=True),
    Column("language", String(2), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    # What the asset costs, fixed when processing measures it; paid once (see ledger).
    Column("charge", BigInteger, nullable=True),
    Column("lease_until", BigInteger, nullable=False, default=0),
    # "<host>:<pid>" of the worker holding the lease: a dead local holder's lease is void.
    Column("lease_owner", String(300), nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("deleted_at", BigInteger, nullable=True),
    Index("assets_by_project", "project_id", "created_at", "id"),
    Index("assets_by_state", "state", "lease_until"),
)

ledger = Table(
    "ledger",
    metadata,
    # SQLite autoincrements only an INTEGER PRIMARY KEY (which is 64-bit there anyway).
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("kind", String(10), nullable=False),
    Column("amount", BigInteger, nullable=False),
    # Set for charges only; unique, so no asset is ever charged twice.
    Column("charged_asset_id", String(64), nullable=True, unique=True),
    Column("created_at", BigInteger, nullable=False),
)


def now_us() -> int:
    return time.time_ns() // 1000


def sqlite_url(upload_dir: str | os.PathLike[str]) -> str:
    return f"sqlite+aiosqlite:///{Path(upload_dir) / 'assets.sqlite3'}"


def database_url(value: str | None, upload_dir: str | os.PathLike[str]) -> str:
    """`--database` as SQLAlchemy wants it: a plain URL or path gets its async driver."""
    if not value:
        return sqlite_url(upload_dir)
    if value.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + value[len("sqlite:///") :]
    if value.startswith(("postgres://", "postgresql://")):
        return _asyncpg_url("postgresql+asyncpg://" + value.split("://", 1)[1])
    if value.startswith("postgresql+asyncpg://"):
        return _asyncpg_url(value)
    if "://" not in value:
        return f"sqlite+aiosqlite:///{value}"
    return value


def _asyncpg_url(value: str) -> str:
    """libpq's `sslmode=...` (what PostgreSQL URLs usually carry) is asyncpg's `ssl=...`,
    with the same values; asyncpg refuses the former."""
    url = make_url(value)
    if "sslmode" not in url.query:
        return value
    mode = url.query["sslmode"]
    url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})
    return url.render_as_string(hide_password=False)


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def create_engine(url: str) -> AsyncEngine:
    """An async engine; for SQLite, transactions take the write lock when they begin."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql"):
        return create_async_engine(
            url,
            # Instances share the server's max_connections (100 by default): at most 20
            # each, and a connection the server or a proxy dropped is replaced, not used.
            pool_size=5,
            max_overflow=15,
            pool_timeout=30,
            pool_recycle=1800,
            pool_pre_ping=True,
            connect_args={"timeout": 10, "server_settings": {"application_name": "tusd-py"}},
        )
    return create_async_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let BEGIN below be ours rather than the driver's deferred one: a deferred
        # transaction that later writes can fail with 'database is locked'.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        # Writers take the write lock up front; readers see a snapshot (WAL) and never wait.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _use_wal(cursor: Any, timeout: float = 30.0) -> None:
    """Switch the database file to WAL once. Switching needs the file to itself, and SQLite
    answers 'database is locked' at once (no busy wait) while another connection is
    opening it: processes starting together on a new database retry here."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The engine for transactions that only read: on SQLite a snapshot that takes no write
    lock, on PostgreSQL a READ ONLY transaction (a stray write fails instead of landing)."""
    options: dict[str, Any] = {READ_ONLY: True}
    if is_postgres(engine):
        options["postgresql_readonly"] = True
    return engine.execution_options(**options)


async def create_schema(engine: AsyncEngine) -> None:
    """Create the missing tables. Instances starting together against one empty PostgreSQL
    database would each see no table and race to create them (one failing on a duplicate
    catalog entry); a transaction-scoped advisory lock makes them take turns, and DDL is
    transactional there, so the later ones find the tables created."""
    async with engine.begin() as connection:
        if is_postgres(engine):
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        await connection.run_sync(metadata.create_all)
