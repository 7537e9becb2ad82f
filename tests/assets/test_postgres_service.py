"""The asset database on a real PostgreSQL beside SQLite: the schema, several instances (one
engine each) creating it, settling, topping up and claiming processing work at once, and
leases of dead instances taken over.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from media_factory import make_audio
from sqlalchemy import insert, inspect, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tusd_py.assets.db import accounts, assets, create_engine, create_schema, database_url, ledger, metadata, now_us
from tusd_py.assets.errors import ApiError
from tusd_py.assets.service import LEASE_OWNER, MAX_BALANCE, MAX_TOP_UP, PROCESSING, AssetService
from tusd_py.assets.worker import Processor
from tusd_py.stores import FileStore, NewUpload

PRICE = 10
MINUTE = Decimal(60)
WAIT = 30.0

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new empty database of each kind."""
    if request.param == "sqlite":
        return database_url(None, tmp_path)
    return database_url(request.getfixturevalue("postgres_server").create_database(), tmp_path)


@pytest.fixture
def pg_database(postgres_server: Any, tmp_path: Path) -> str:
    return database_url(postgres_server.create_database(), tmp_path)


@dataclass
class Instances:
    """Services on one database, each with its own engine: what separate servers have."""

    services: list[AssetService]
    account_id: str
    project_id: str

    @property
    def first(self) -> AssetService:
        return self.services[0]

    async def processing(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            asset = await self.first.open_asset(self.account_id, self.project_id, 1000, None)
            assert await self.first.finish_upload(asset.id, 1000)
            ids.append(str(asset.id))
        return ids

    async def charges(self) -> Counter[str]:
        _, rows = await self.first.balance_and_ledger(self.account_id)
        return Counter(row.charged_asset_id for row in rows if row.kind == "charge")

    async def assert_books_balance(self) -> int:
        balance, rows = await self.first.balance_and_ledger(self.account_id)
        top_ups = sum(row.amount for row in rows if row.kind == "top_up")
        charges = sum(row.amount for row in rows if row.kind == "charge")
        assert balance == top_ups - charges >= 0
        return balance


InstancesFactory = Callable[[int], Awaitable[Instances]]


@pytest.fixture
async def instances(database: str) -> AsyncIterator[InstancesFactory]:
    engines: list[AsyncEngine] = []

    async def make(count: int) -> Instances:
        for _ in range(count):
            engines.append(create_engine(database))
        await asyncio.gather(*(create_schema(engine) for engine in engines))
        services = [AssetService(engine, price_per_minute=PRICE) for engine in engines]
        account = await services[0].create_account("listener")
        project = await services[0].create_project(account["id"], "episodes")
        return Instances(services, account["id"], project["id"])

    try:
        yield make
    finally:
        for engine in engines:
            await engine.dispose()


async def gather(*jobs: Awaitable[Any]) -> list[Any]:
    return list(await asyncio.wait_for(asyncio.gather(*jobs), timeout=WAIT))


# -- the schema ---------------------------------------------------------------------------


async def test_times_money_and_ledger_ids_are_64_bit_columns(pg_database: str) -> None:
    engine = create_engine(pg_database)
    try:
        await create_schema(engine)
        async with engine.connect() as db:
            columns = await db.run_sync(
                lambda sync: {
                    (table, column["name"]): str(column["type"])
                    for table in metadata.tables
                    for column in inspect(sync).get_columns(table)
                }
            )
    finally:
        await engine.dispose()
    wide = [
        ("accounts", "balance"),
        ("accounts", "created_at"),
        ("assets", "created_at"),
        ("assets", "lease_until"),
        ("assets", "charge"),
        ("assets", "declared_size"),
        ("assets", "size"),
        ("ledger", "id"),
        ("ledger", "amount"),
        ("api_keys", "revoked_at"),
    ]
    assert {name: columns[name] for name in wide} == dict.fromkeys(wide, "BIGINT")


async def test_the_largest_balance_fits_and_one_more_is_refused(instances: InstancesFactory) -> None:
    books = await instances(1)
    assert (await books.first.top_up(books.account_id, MAX_TOP_UP))["balance"] == MAX_TOP_UP
    rest = MAX_BALANCE - MAX_TOP_UP
    assert (await books.first.top_up(books.account_id, rest))["balance"] == MAX_BALANCE
    with pytest.raises(ApiError) as refused:
        await books.first.top_up(books.account_id, 1)
    assert (refused.value.status, refused.value.code) == (422, "balance_overflow")
    assert await books.assert_books_balance() == MAX_BALANCE


async def test_instances_starting_together_create_the_schema_once(pg_database: str) -> None:
    # Without serializing, most of these fail on a duplicate catalog entry.
    engines = [create_engine(pg_database) for _ in range(5)]
    try:
        await gather(*(create_schema(engine) for engine in engines))
        async with engines[0].connect() as db:
            tables = await db.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert tables == set(metadata.tables)
        # A later start finds it all there.
        await create_schema(engines[1])
    finally:
        for engine in engines:
            await engine.dispose()


async def test_readers_cannot_write_on_postgres(pg_database: str) -> None:
    engine = create_engine(pg_database)
    try:
        await create_schema(engine)
        service = AssetService(engine)
        row = {"id": "acct_x", "name": "n", "balance": 0, "created_at": now_us()}
        async with service.reader.connect() as db:
            with pytest.raises(DBAPIError, match="read-only transaction"):
                await db.execute(insert(accounts).values(row))
        async with engine.begin() as db:
            await db.execute(insert(accounts).values(row))
    finally:
        await engine.dispose()


async def test_ids_no_database_stores_are_not_found(instances: InstancesFactory) -> None:
    """PostgreSQL refuses NUL in text where SQLite compares it: both answer 404, never 500."""
    books = await instances(1)
    service = books.first
    for bad in ("asset\x00", "", "x" * 129, "a b", "\udc80"):
        with pytest.raises(ApiError) as refused:
            await service.get_asset(bad)
        assert refused.value.status == 404
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: service.open_asset(books.account_id, "proj\x00", 10, None),
        lambda: service.list_assets(books.account_id, "proj\x00", None, 10, None),
        lambda: service.top_up("acct\x00", 10),
        lambda: service.create_project("acct\x00", "p"),
        lambda: service.revoke_key("key\x00"),
    ]
    for call in calls:
        with pytest.raises(ApiError) as refused:
            await call()
        assert refused.value.status == 404


async def test_keys_authenticate_until_revoked(instances: InstancesFactory) -> None:
    books = await instances(2)
    issuer, other = books.services
    key = await issuer.create_key(books.account_id)
    assert await other.authenticate(key["key"]) == books.account_id
    assert await other.revoke_key(key["id"]) == {"id": key["id"], "revoked": True}
    assert await issuer.revoke_key(key["id"]) == {"id": key["id"], "revoked": True}
    with pytest.raises(ApiError) as refused:
        await issuer.authenticate(key["key"])
    assert refused.value.status == 401
    with pytest.raises(ApiError) as refused:
        await issuer.revoke_key("key_unknown")
    assert refused.value.status == 404


async def test_pages_of_assets_come_newest_first_and_end(instances: InstancesFactory) -> None:
    books = await instances(1)
    ids = await books.processing(5)
    await books.first.delete_asset(ids[2])
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = await books.first.list_assets(books.account_id, books.project_id, None, 2, cursor)
        seen += [row.id for row in page.assets]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [ids[4], ids[3], ids[1], ids[0]]
    ready = await books.first.list_assets(books.account_id, books.project_id, "ready", 10, None)
    assert ready.assets == [] and ready.next_cursor is None


# -- billing across instances ---------------------------------------------------------------
# SQLite serializes every writer, whatever the engine (test_billing.py covers it); these
# are the races PostgreSQL runs for real.
postgres_only = pytest.mark.parametrize("database", ["postgresql"], indirect=True)


@postgres_only
async def test_instances_settling_the_same_assets_charge_each_once(instances: InstancesFactory) -> None:
    books = await instances(4)
    await books.first.top_up(books.account_id, 6 * PRICE)
    ids = await books.processing(8)
    outcomes = await gather(*(service.settle(a, MINUTE) for a in ids for service in books.services))
    assert sorted(o for o in outcomes if o is not None) == ["pending_payment"] * 2 + ["ready"] * 6
    charges = await books.charges()
    assert set(charges.values()) == {1} and len(charges) == 6
    states = {a: (await books.first.get_asset(a)).state for a in ids}
    assert {a for a, state in states.items() if state == "ready"} == set(charges)
    assert await books.assert_books_balance() == 0


@postgres_only
async def test_instances_topping_up_at_once_activate_each_pending_asset_once(instances: InstancesFactory) -> None:
    books = await instances(4)
    ids = await books.processing(6)
    for asset_id in ids:
        assert await books.first.settle(asset_id, MINUTE) == "pending_payment"
    results = await gather(*(service.top_up(books.account_id, 9) for service in books.services for _ in range(3)))
    assert all(result["balance"] >= 0 for result in results)
    # 108 credited, 6 x 10 charged, oldest first.
    assert await books.charges() == Counter(ids)
    assert [(await books.first.get_asset(a)).state for a in ids] == ["ready"] * 6
    assert await books.assert_books_balance() == 108 - 60


@postgres_only
async def test_instances_settling_and_topping_up_together_keep_the_books_straight(
    instances: InstancesFactory,
) -> None:
    books = await instances(3)
    ids = await books.processing(6)
    jobs = [service.settle(a, MINUTE * (i + 1)) for i, a in enumerate(ids) for service in books.services]
    jobs += [service.top_up(books.account_id, 25) for service in books.services for _ in range(2)]
    await gather(*jobs)
    charges = await books.charges()
    assert set(charges.values()) <= {1}
    for i, asset_id in enumerate(ids):
        row = await books.first.get_asset(asset_id)
        assert row.state in ("ready", "pending_payment")
        assert (asset_id in charges) == (row.state == "ready")
        assert row.charge == (i + 1) * PRICE
    await books.assert_books_balance()


async def test_a_charge_the_ledger_already_holds_is_refused_by_its_unique_key(instances: InstancesFactory) -> None:
    """The UNIQUE on charged_asset_id is the last guard: its violation (sqlite3's or asyncpg's)
    means settled already, and the payment taken in the same transaction is undone."""
    books = await instances(1)
    await books.first.top_up(books.account_id, 100)
    (asset_id,) = await books.processing(1)
    async with books.first.engine.begin() as db:
        await db.execute(
            insert(ledger).values(
                account_id=books.account_id, kind="charge", amount=0, charged_asset_id=asset_id, created_at=now_us()
            )
        )
    assert await books.first.settle(asset_id, MINUTE) is None
    balance, _ = await books.first.balance_and_ledger(books.account_id)
    assert balance == 100
    assert (await books.first.get_asset(asset_id)).state == PROCESSING


# -- claiming processing work ---------------------------------------------------------------


async def set_lease(service: AssetService, asset_id: str, owner: str, until: int) -> None:
    async with service.engine.begin() as db:
        await db.execute(update(assets).where(assets.c.id == asset_id).values(lease_owner=owner, lease_until=until))


async def test_instances_claiming_at_once_never_claim_one_asset_twice(instances: InstancesFactory) -> None:
    books = await instances(4)
    ids = await books.processing(10)
    claims = await gather(*(service.claim_processing(60) for service in books.services for _ in range(4)))
    claimed = [row.id for row in claims if row is not None]
    assert sorted(claimed) == sorted(ids)
    assert await gather(*(service.claim_processing(60) for service in books.services)) == [None] * 4
    for asset_id in ids:
        row = await books.first.get_asset(asset_id)
        assert (row.attempts, row.lease_owner) == (1, LEASE_OWNER)
        assert row.lease_until > now_us() + 50e6


async def test_claims_go_oldest_first_and_skip_deleted_and_settled_assets(instances: InstancesFactory) -> None:
    books = await instances(1)
    await books.first.top_up(books.account_id, 100)
    deleted, settled, older, newer = await books.processing(4)
    await books.first.delete_asset(deleted)
    assert await books.first.settle(settled, MINUTE) == "ready"
    first, second = await books.first.claim_processing(60), await books.first.claim_processing(60)
    assert first is not None and second is not None
    assert (first.id, second.id) == (older, newer)
    assert await books.first.claim_processing(60) is None


async def test_a_run_out_lease_is_taken_over_by_another_instance(instances: InstancesFactory) -> None:
    books = await instances(2)
    dead, alive = books.services
    (asset_id,) = await books.processing(1)
    claimed = await dead.claim_processing(0.3)
    assert claimed is not None and claimed.id == asset_id
    # The lease is the holder's until it runs out, whoever else asks.
    assert await alive.claim_processing(60) is None
    await asyncio.sleep(0.4)
    taken = await alive.claim_processing(60)
    assert taken is not None and taken.id == asset_id
    assert taken.attempts == 2


async def test_leases_of_other_hosts_are_kept_and_of_dead_local_processes_void(instances: InstancesFactory) -> None:
    books = await instances(1)
    service = books.first
    elsewhere, here_dead, here_alive = await books.processing(3)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead_pid = int(finished.stdout)
    later = now_us() + 60_000_000
    # A process on another host may be alive: only its lease running out frees its work.
    await set_lease(service, elsewhere, "another-host.example:1:00000000", later)
    await set_lease(service, here_dead, f"{socket.gethostname()}:{dead_pid}:00000000", later)
    await set_lease(service, here_alive, LEASE_OWNER, later)
    taken = await service.claim_processing(60)
    assert taken is not None and taken.id == here_dead
    assert await service.claim_processing(60) is None
    await set_lease(service, elsewhere, "another-host.example:1:00000000", now_us() - 1)
    taken = await service.claim_processing(60)
    assert taken is not None and taken.id == elsewhere


async def test_a_claim_on_postgres_skips_rows_another_transaction_holds(pg_database: str) -> None:
    engine = create_engine(pg_database)
    holder = create_engine(pg_database)
    try:
        await create_schema(engine)
        service = AssetService(engine)
        account = await service.create_account("a")
        project = await service.create_project(account["id"], "p")
        ids = []
        for _ in range(2):
            asset = await service.open_asset(account["id"], project["id"], 10, None)
            await service.finish_upload(asset.id, 10)
            ids.append(asset.id)
        async with holder.begin() as db:
            # Another instance in the middle of claiming the oldest.
            await db.execute(select(assets.c.id).where(assets.c.id == ids[0]).with_for_update())
            taken = await asyncio.wait_for(service.claim_processing(60), timeout=5)
            assert taken is not None and taken.id == ids[1]
            assert await asyncio.wait_for(service.claim_processing(60), timeout=5) is None
        taken = await service.claim_processing(60)
        assert taken is not None and taken.id == ids[0]
    finally:
        await engine.dispose()
        await holder.dispose()


# -- processors of several instances ----------------------------------------------------------


class CountingProcessor(Processor):
    """A real processor that also counts the assets it processes."""

    def __init__(self, service: AssetService, store: FileStore, calls: Counter[str], **options: Any) -> None:
        super().__init__(service, store, poll_interval=0.05, **options)
        self.calls = calls

    async def process(self, row: Row[Any]) -> None:
        self.calls[row.id] += 1
        await super().process(row)


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_audio(tmp_path_factory.mktemp("media") / "one.wav", "wav", 1.5).read_bytes()


async def stored_uploads(books: Instances, store: FileStore, data: bytes, count: int) -> list[str]:
    """`count` assets whose bytes are stored whole: processing work."""

    async def body() -> AsyncIterator[bytes]:
        yield data

    ids = await books.processing(count)
    for asset_id in ids:
        await store.create(NewUpload(id=asset_id, size=len(data)))
        assert await store.append(asset_id, 0, body()) == len(data)
    return ids


async def wait_until_processed(service: AssetService, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while await service.count(PROCESSING):
            await asyncio.sleep(0.05)


async def run_until_processed(service: AssetService, processors: Sequence[Processor], timeout: float = WAIT) -> None:
    """Run `processors` until `service` sees no asset left in processing."""
    for processor in processors:
        processor.start()
    try:
        await wait_until_processed(service, timeout)
    finally:
        for processor in processors:
            await processor.stop()


async def test_processors_of_several_instances_process_each_asset_once(
    instances: InstancesFactory, tmp_path: Path, wav: bytes
) -> None:
    books = await instances(3)
    store = FileStore(tmp_path / "uploads")
    await books.first.top_up(books.account_id, 1000)
    ids = await stored_uploads(books, store, wav, 12)
    calls: Counter[str] = Counter()
    processors = [CountingProcessor(service, FileStore(tmp_path / "uploads"), calls) for service in books.services]
    await run_until_processed(books.first, processors)
    assert calls == Counter(ids)
    assert await books.charges() == Counter(ids)
    for asset_id in ids:
        row = await books.first.get_asset(asset_id)
        assert (row.state, row.attempts, Decimal(row.duration)) == ("ready", 1, Decimal("1.5"))
    assert await books.assert_books_balance() == 1000 - 12 * PRICE


async def test_a_dead_instances_lease_runs_out_and_another_processes_the_asset(
    instances: InstancesFactory, tmp_path: Path, wav: bytes
) -> None:
    books = await instances(2)
    dead, alive = books.services
    store = FileStore(tmp_path / "uploads")
    await books.first.top_up(books.account_id, 1000)
    (asset_id,) = await stored_uploads(books, store, wav, 1)
    # The first instance claims the asset, then dies before processing it.
    assert await dead.claim_processing(1.0) is not None
    await dead.engine.dispose()
    calls: Counter[str] = Counter()
    processor = CountingProcessor(alive, store, calls)
    processor.start()
    try:
        await asyncio.sleep(0.5)
        assert (await alive.get_asset(asset_id)).state == PROCESSING
        await wait_until_processed(alive, timeout=10)
    finally:
        await processor.stop()
    assert calls == Counter([asset_id])
    row = await alive.get_asset(asset_id)
    assert (row.state, row.attempts) == ("ready", 2)
    assert await books.charges() == Counter([asset_id])


class FailingOnceProcessor(CountingProcessor):
    """Its first attempt at each asset fails the way a dropped database connection does."""

    async def process(self, row: Row[Any]) -> None:
        self.calls[row.id] += 1
        if self.calls[row.id] == 1:
            raise DBAPIError("UPDATE assets ...", None, ConnectionResetError("connection was closed"))
        await Processor.process(self, row)


async def test_a_database_error_while_processing_is_retried_after_the_lease(
    instances: InstancesFactory, tmp_path: Path, wav: bytes
) -> None:
    books = await instances(1)
    store = FileStore(tmp_path / "uploads")
    await books.first.top_up(books.account_id, 1000)
    ids = await stored_uploads(books, store, wav, 2)
    calls: Counter[str] = Counter()
    await run_until_processed(books.first, [FailingOnceProcessor(books.first, store, calls, lease=0.3)], timeout=10)
    assert calls == Counter(ids * 2)
    for asset_id in ids:
        row = await books.first.get_asset(asset_id)
        assert (row.state, row.attempts) == ("ready", 2)
    assert await books.charges() == Counter(ids)


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("postgresql://u@db.example/assets", "postgresql+asyncpg://u@db.example/assets"),
        ("postgres://u:p%40ss@db.example:6432/assets", "postgresql+asyncpg://u:p%40ss@db.example:6432/assets"),
        ("postgresql://u@db.example/a?sslmode=require", "postgresql+asyncpg://u@db.example/a?ssl=require"),
        (
            "postgresql+asyncpg://u@db.example/a?sslmode=verify-full&application_name=x",
            "postgresql+asyncpg://u@db.example/a?application_name=x&ssl=verify-full",
        ),
    ],
)
def test_postgres_urls_get_the_asyncpg_driver_and_its_spelling_of_sslmode(given: str, url: str) -> None:
    assert database_url(given, "/unused") == url


async def test_sql_runs_as_written_on_postgres(postgres_server: Any, tmp_path: Path) -> None:
    """The driver is asyncpg and the database PostgreSQL (not a SQLite fallback); a libpq
    style sslmode in the URL is understood."""
    engine = create_engine(database_url(postgres_server.create_database() + "?sslmode=disable", tmp_path))
    try:
        async with engine.connect() as db:
            version = await db.scalar(text("SELECT version()"))
        assert engine.dialect.driver == "asyncpg"
        assert str(version).startswith("PostgreSQL")
    finally:
        await engine.dispose()
