"""Settlement and top-ups on AssetService over a real SQLite file and a real PostgreSQL
database: each asset charged once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from tusd_py.assets.db import create_engine, create_schema, database_url
from tusd_py.assets.errors import ApiError
from tusd_py.assets.service import AssetService

PRICE = 10
MINUTE = Decimal(60)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Books:
    service: AssetService
    account_id: str
    project_id: str

    async def processing(self, size: int = 1000) -> str:
        """A new asset whose last byte is stored: what the worker settles."""
        asset = await self.service.open_asset(self.account_id, self.project_id, size, None)
        assert await self.service.finish_upload(asset.id, size)
        return str(asset.id)

    async def state(self, asset_id: str) -> str:
        return str((await self.service.get_asset(asset_id)).state)

    async def balance(self) -> int:
        balance, _ = await self.service.balance_and_ledger(self.account_id)
        return balance

    async def charges(self) -> dict[str, int]:
        """charged asset id -> amount, failing on a second charge of any asset."""
        _, rows = await self.service.balance_and_ledger(self.account_id)
        charged: dict[str, int] = {}
        for row in rows:
            if row.kind == "charge":
                assert row.charged_asset_id not in charged, f"{row.charged_asset_id} charged twice"
                charged[row.charged_asset_id] = row.amount
        return charged

    async def assert_books_balance(self) -> None:
        """The balance is what the ledger says: top-ups minus charges, and never below zero."""
        balance, rows = await self.service.balance_and_ledger(self.account_id)
        top_ups = sum(row.amount for row in rows if row.kind == "top_up")
        charges = sum(row.amount for row in rows if row.kind == "charge")
        assert {row.kind for row in rows} <= {"top_up", "charge"}
        assert balance == top_ups - charges
        assert balance >= 0


@pytest.fixture(params=["sqlite", "postgresql"])
async def books(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Books]:
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    engine = create_engine(database_url(url, tmp_path))
    await create_schema(engine)
    service = AssetService(engine, price_per_minute=PRICE)
    account = await service.create_account("listener")
    project = await service.create_project(account["id"], "episodes")
    try:
        yield Books(service, account["id"], project["id"])
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("seconds", "minutes"),
    [("0.001", 1), ("1", 1), ("59.999", 1), ("60", 1), ("60.001", 2), ("119.5", 2), ("120", 2), ("3600.000001", 61)],
)
async def test_covered_asset_is_ready_and_charged_per_started_minute(books: Books, seconds: str, minutes: int) -> None:
    await books.service.top_up(books.account_id, 1000)
    asset_id = await books.processing()
    assert await books.service.settle(asset_id, Decimal(seconds)) == "ready"
    row = await books.service.get_asset(asset_id)
    assert row.state == "ready"
    assert Decimal(row.duration) == Decimal(seconds)
    assert await books.balance() == 1000 - minutes * PRICE
    assert await books.charges() == {asset_id: minutes * PRICE}
    await books.assert_books_balance()


async def test_exact_balance_covers_the_charge(books: Books) -> None:
    await books.service.top_up(books.account_id, 2 * PRICE)
    asset_id = await books.processing()
    assert await books.service.settle(asset_id, Decimal("90")) == "ready"
    assert await books.balance() == 0


async def test_short_balance_leaves_the_asset_pending_payment_and_the_balance_alone(books: Books) -> None:
    await books.service.top_up(books.account_id, PRICE - 1)
    # Billing counts minutes of media, not bytes: a huge file of 30 s costs one minute.
    asset_id = await books.processing(size=10**9)
    assert await books.service.settle(asset_id, Decimal("30")) == "pending_payment"
    row = await books.service.get_asset(asset_id)
    assert row.state == "pending_payment"
    assert row.duration is not None
    assert await books.balance() == PRICE - 1
    assert await books.charges() == {}
    await books.assert_books_balance()


async def test_zero_balance_pends_even_a_tiny_asset(books: Books) -> None:
    asset_id = await books.processing(size=1)
    assert await books.service.settle(asset_id, Decimal("0.001")) == "pending_payment"
    assert await books.balance() == 0


async def test_top_up_activates_pending_assets_oldest_first_and_stops_at_the_first_uncovered(books: Books) -> None:
    # Charges in creation order: 30, 10, 10.
    big, small, last = [await books.processing() for _ in range(3)]
    for asset_id, seconds in ((big, "150"), (small, "20"), (last, "60")):
        assert await books.service.settle(asset_id, Decimal(seconds)) == "pending_payment"

    # 25 cannot pay the oldest (30): nothing after it is paid either, though 10 would fit.
    assert await books.service.top_up(books.account_id, 25) == {"account_id": books.account_id, "balance": 25}
    assert [await books.state(a) for a in (big, small, last)] == ["pending_payment"] * 3
    assert await books.charges() == {}

    # 45: the oldest (30) and the next (10) are paid; 5 is left, short of the last one.
    assert (await books.service.top_up(books.account_id, 20))["balance"] == 5
    assert [await books.state(a) for a in (big, small, last)] == ["ready", "ready", "pending_payment"]
    assert await books.charges() == {big: 30, small: 10}

    assert (await books.service.top_up(books.account_id, 5))["balance"] == 0
    assert await books.state(last) == "ready"
    assert await books.charges() == {big: 30, small: 10, last: 10}
    await books.assert_books_balance()


async def test_a_deleted_pending_asset_is_not_activated_by_a_top_up(books: Books) -> None:
    asset_id = await books.processing()
    assert await books.service.settle(asset_id, MINUTE) == "pending_payment"
    await books.service.delete_asset(asset_id)
    assert (await books.service.top_up(books.account_id, 100))["balance"] == 100
    assert await books.charges() == {}


async def test_failed_asset_is_never_charged(books: Books) -> None:
    await books.service.top_up(books.account_id, 1000)
    asset_id = await books.processing()
    assert await books.service.fail(asset_id, "media_unreadable", "truncated", from_states=("processing",))
    assert await books.service.settle(asset_id, MINUTE) is None
    assert await books.service.top_up(books.account_id, 1) == {"account_id": books.account_id, "balance": 1001}
    row = await books.service.get_asset(asset_id)
    assert (row.state, row.error_code) == ("failed", "media_unreadable")
    assert await books.charges() == {}


async def test_asset_failed_while_uploading_is_never_charged(books: Books) -> None:
    await books.service.top_up(books.account_id, 1000)
    asset = await books.service.open_asset(books.account_id, books.project_id, 100, None)
    assert await books.service.fail(asset.id, "unsupported_media_type", "pdf", from_states=("pending_upload",))
    assert not await books.service.finish_upload(asset.id, 100)
    assert await books.service.settle(asset.id, MINUTE) is None
    assert await books.balance() == 1000
    assert await books.charges() == {}


async def test_asset_still_uploading_is_not_settled(books: Books) -> None:
    await books.service.top_up(books.account_id, 1000)
    asset = await books.service.open_asset(books.account_id, books.project_id, 100, None)
    assert await books.service.settle(asset.id, MINUTE) is None
    assert await books.state(asset.id) == "pending_upload"
    assert await books.balance() == 1000


async def test_settling_twice_charges_once(books: Books) -> None:
    await books.service.top_up(books.account_id, 1000)
    asset_id = await books.processing()
    assert await books.service.settle(asset_id, MINUTE) == "ready"
    # A restarted worker measuring a different duration must not charge again.
    assert await books.service.settle(asset_id, 3 * MINUTE) is None
    assert await books.balance() == 1000 - PRICE
    assert await books.charges() == {asset_id: PRICE}
    assert Decimal((await books.service.get_asset(asset_id)).duration) == MINUTE


async def test_settling_a_pending_payment_asset_again_changes_nothing(books: Books) -> None:
    asset_id = await books.processing()
    assert await books.service.settle(asset_id, MINUTE) == "pending_payment"
    await books.service.top_up(books.account_id, PRICE - 1)
    assert await books.service.settle(asset_id, MINUTE) is None
    assert await books.state(asset_id) == "pending_payment"
    assert await books.charges() == {}


async def test_concurrent_settles_of_one_asset_charge_once(books: Books) -> None:
    await books.service.top_up(books.account_id, 1000)
    asset_id = await books.processing()
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(books.service.settle(asset_id, 2 * MINUTE) for _ in range(10))), timeout=30
    )
    assert (outcomes.count("ready"), outcomes.count(None)) == (1, 9)
    assert await books.balance() == 1000 - 2 * PRICE
    assert await books.charges() == {asset_id: 2 * PRICE}
    await books.assert_books_balance()


async def test_concurrent_settles_of_many_assets_never_overdraw(books: Books) -> None:
    await books.service.top_up(books.account_id, 5 * PRICE)
    assets = [await books.processing() for _ in range(8)]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(books.service.settle(a, MINUTE) for a in assets for _ in range(2))), timeout=30
    )
    assert sorted(o for o in outcomes if o is not None) == ["pending_payment"] * 3 + ["ready"] * 5
    assert await books.balance() == 0
    charged = await books.charges()
    assert len(charged) == 5
    assert {a for a in assets if await books.state(a) == "ready"} == set(charged)
    await books.assert_books_balance()


async def test_concurrent_top_ups_activate_each_pending_asset_once(books: Books) -> None:
    assets = [await books.processing() for _ in range(5)]
    for asset_id in assets:
        assert await books.service.settle(asset_id, MINUTE) == "pending_payment"
    results = await asyncio.wait_for(
        asyncio.gather(*(books.service.top_up(books.account_id, 7) for _ in range(10))), timeout=30
    )
    assert all(result["balance"] >= 0 for result in results)
    # 70 credited, 5 x 10 charged.
    assert [await books.state(a) for a in assets] == ["ready"] * 5
    assert await books.charges() == dict.fromkeys(assets, PRICE)
    assert await books.balance() == 70 - 5 * PRICE
    _, rows = await books.service.balance_and_ledger(books.account_id)
    assert sorted(row.amount for row in rows if row.kind == "top_up") == [7] * 10
    await books.assert_books_balance()


async def test_concurrent_top_ups_and_settles_keep_the_books_straight(books: Books) -> None:
    rng = random.Random(4)
    assets = [await books.processing() for _ in range(6)]
    seconds = {a: Decimal(rng.randint(1, 300)) for a in assets}
    jobs = [books.service.settle(a, seconds[a]) for a in assets for _ in range(2)]
    jobs += [books.service.top_up(books.account_id, rng.randint(1, 40)) for _ in range(6)]
    rng.shuffle(jobs)
    await asyncio.wait_for(asyncio.gather(*jobs), timeout=30)
    charged = await books.charges()
    for asset_id in assets:
        state = await books.state(asset_id)
        assert state in ("ready", "pending_payment")
        expected = books.service.charge_for(seconds[asset_id])
        assert (asset_id in charged) == (state == "ready")
        if state == "ready":
            assert charged[asset_id] == expected
    await books.assert_books_balance()


async def test_top_up_of_an_unknown_account_is_not_found(books: Books) -> None:
    with pytest.raises(ApiError) as refused:
        await books.service.top_up("acct_missing", 10)
    assert refused.value.status == 404
    await books.assert_books_balance()
