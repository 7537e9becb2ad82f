"""The asset lifecycle: accounts, keys, assets and their states, and per-minute billing.

States: pending_upload -> processing -> ready | pending_payment | failed, and
pending_payment -> ready on a top-up that covers the charge. Every transition is a
conditional UPDATE on the current state, inside one transaction with the money it moves,
so concurrent or repeated attempts (restarts, several instances) charge exactly once.

The same queries run on SQLite and PostgreSQL. SQLite serializes writers (BEGIN
IMMEDIATE, see db.py); PostgreSQL runs them at once under READ COMMITTED, so what two
transactions may both change is locked first: the asset row in settle, the account row
by the UPDATE that moves its balance, claimed jobs FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import socket
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .db import accounts, api_keys, assets, ledger, now_us, projects, read_only
from .errors import ApiError, not_found, unauthorized
from .media import MediaType, started_minutes

PENDING_UPLOAD = "pending_upload"
PROCESSING = "processing"
PENDING_PAYMENT = "pending_payment"
READY = "ready"
FAILED = "failed"
STATES = (PENDING_UPLOAD, PROCESSING, PENDING_PAYMENT, READY, FAILED)
KEY_PREFIX = "sk_"
# Balances are signed 64-bit integers in every database; no sum may leave that range.
MAX_BALANCE = 2**63 - 1
MAX_TOP_UP = 2**62


# Host, pid and a token of this process: an earlier process with our pid (a container's
# pid 1, restarted) has another token.
LEASE_OWNER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def lease_holder_died(owner: str) -> bool:
    """True for a lease held by a process of this host that no longer runs."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3:
        return False
    host, pid_text, _token = parts
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner != LEASE_OWNER
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# Every id this module makes has this shape. Anything else names nothing, and is answered
# before it reaches the database: PostgreSQL rejects some strings SQLite compares (NUL).
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class _AlreadySettled(Exception):
    pass


@dataclass(frozen=True)
class Page:
    assets: list[Row[Any]]
    next_cursor: str | None


class AssetService:
    def __init__(self, engine: AsyncEngine, *, price_per_minute: int = 0, max_size: int | None = None) -> None:
        self.engine = engine
        # Reads never wait for a writer (see db.read_only).
        self.reader = read_only(engine)
        self.price_per_minute = price_per_minute
        self.max_size = max_size

    # -- accounts, projects, keys ---------------------------------------------------------

    async def create_account(self, name: str) -> dict[str, Any]:
        row = {"id": _new_id("acct_"), "name": name, "balance": 0, "created_at": now_us()}
        async with self.engine.begin() as db:
            await db.execute(insert(accounts).values(row))
        return {"id": row["id"], "name": name, "balance": 0}

    async def create_project(self, account_id: str, name: str) -> dict[str, Any]:
        row = {"id": _new_id("proj_"), "account_id": account_id, "name": name, "created_at": now_us()}
        async with self.engine.begin() as db:
            await self._account(db, account_id)
            await db.execute(insert(projects).values(row))
        return {"id": row["id"], "account_id": account_id, "name": name}

    async def create_key(self, account_id: str) -> dict[str, str]:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = _new_id("key_")
        async with self.engine.begin() as db:
            await self._account(db, account_id)
            await db.execute(
                insert(api_keys).values(id=key_id, account_id=account_id, key_hash=hash_key(key), created_at=now_us())
            )
        return {"id": key_id, "key": key}

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        if not _is_id(key_id):
            raise not_found("key")
        async with self.engine.begin() as db:
            result = await db.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now_us())
            )
            if result.rowcount == 0:
                exists = await db.scalar(select(api_keys.c.id).where(api_keys.c.id == key_id))
                if exists is None:
                    raise not_found("key")
        return {"id": key_id, "revoked": True}

    async def authenticate(self, key: str | None) -> str:
        """The account a key belongs to; 401 for a missing, malformed, unknown or revoked key."""
        if not key:
            raise unauthorized("an API key is required: Authorization: Bearer sk_...")
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            raise unauthorized("malformed API key")
        async with self.reader.connect() as db:
            row = (
                await db.execute(
                    select(api_keys.c.account_id, api_keys.c.revoked_at).where(api_keys.c.key_hash == hash_key(key))
                )
            ).first()
        if row is None or row.revoked_at is not None:
            raise unauthorized("unknown or revoked API key")
        return str(row.account_id)

    async def _account(self, db: AsyncConnection, account_id: str) -> Row[Any]:
        if not _is_id(account_id):
            raise not_found("account")
        row = (await db.execute(select(accounts).where(accounts.c.id == account_id))).first()
        if row is None:
            raise not_found("account")
        return row

    # -- assets ---------------------------------------------------------------------------

    def check_size(self, size: int) -> None:
        if self.max_size and size > self.max_size:
            raise ApiError(413, "too_large", f"size is larger than the maximum of {self.max_size} bytes")

    async def open_asset(self, account_id: str, project_id: str, size: int, language: str | None) -> Row[Any]:
        """A new asset in pending_upload (failed at once when it is empty: no bytes, no media)."""
        self.check_size(size)
        asset_id = _new_id("")
        values: dict[str, Any] = {
            "id": asset_id,
            "project_id": project_id,
            "account_id": account_id,
            "state": PENDING_UPLOAD,
            "declared_size": size,
            "language": language,
            "created_at": now_us(),
            "lease_until": 0,
            "attempts": 0,
        }
        if size == 0:
            values.update(
                state=FAILED, size=0, error_code="unsupported_media_type", error_message="an empty file is not media"
            )
        async with self.engine.begin() as db:
            # Another account's project is answered exactly like a missing one.
            if await self._project_owner(db, project_id) != account_id:
                raise not_found("project")
            await db.execute(insert(assets).values(values))
            return await self._asset(db, asset_id)

    async def _project_owner(self, db: AsyncConnection, project_id: str) -> str | None:
        if not _is_id(project_id):
            return None
        owner = await db.scalar(select(projects.c.account_id).where(projects.c.id == project_id))
        return None if owner is None else str(owner)

    async def _asset(self, db: AsyncConnection, asset_id: str, *, for_update: bool = False) -> Row[Any]:
        if not _is_id(asset_id):
            raise not_found("asset")
        query = select(assets).where(assets.c.id == asset_id, assets.c.deleted_at.is_(None))
        if for_update:
            query = query.with_for_update()
        row = (await db.execute(query)).first()
        if row is None:
            raise not_found("asset")
        return row

    async def get_asset(self, asset_id: str, account_id: str | None = None) -> Row[Any]:
        async with self.reader.connect() as db:
            row = await self._asset(db, asset_id)
        if account_id is not None and row.account_id != account_id:
            raise not_found("asset")
        return row

    async def list_assets(
        self, account_id: str, project_id: str, state: str | None, limit: int, cursor: str | None
    ) -> Page:
        query = select(assets).where(
            assets.c.project_id == project_id, assets.c.account_id == account_id, assets.c.deleted_at.is_(None)
        )
        if state is not None:
            query = query.where(assets.c.state == state)
        if cursor is not None:
            created_at, last_id = _decode_cursor(cursor)
            query = query.where(
                or_(
                    assets.c.created_at < created_at,
                    and_(assets.c.created_at == created_at, assets.c.id < last_id),
                )
            )
        query = query.order_by(assets.c.created_at.desc(), assets.c.id.desc()).limit(limit + 1)
        async with self.reader.connect() as db:
            if await self._project_owner(db, project_id) != account_id:
                raise not_found("project")
            rows = list((await db.execute(query)).all())
        next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return Page(rows[:limit], next_cursor)

    async def delete_asset(self, asset_id: str) -> None:
        async with self.engine.begin() as db:
            await db.execute(
                update(assets).where(assets.c.id == asset_id, assets.c.deleted_at.is_(None)).values(deleted_at=now_us())
            )

    # -- the upload's life ----------------------------------------------------------------

    async def set_media(self, asset_id: str, media: MediaType) -> None:
        async with self.engine.begin() as db:
            await db.execute(
                update(assets)
                .where(assets.c.id == asset_id, assets.c.state == PENDING_UPLOAD)
                .values(kind=media.kind, extension=media.extension, mime_type=media.mime_type)
            )

    async def fail(self, asset_id: str, code: str, message: str, *, from_states: tuple[str, ...]) -> bool:
        """Move to failed from one of `from_states`; nothing is ever charged for it."""
        async with self.engine.begin() as db:
            result = await db.execute(
                update(assets)
                .where(assets.c.id == asset_id, assets.c.state.in_(from_states))
                .values(state=FAILED, error_code=code, error_message=message, lease_until=0)
            )
        return bool(result.rowcount)

    async def finish_upload(self, asset_id: str, size: int) -> bool:
        """The last byte is stored: processing starts (the row is the persisted job)."""
        async with self.engine.begin() as db:
            result = await db.execute(
                update(assets)
                .where(assets.c.id == asset_id, assets.c.state == PENDING_UPLOAD)
                .values(state=PROCESSING, size=size, lease_until=0)
            )
        return bool(result.rowcount)

    async def claim_processing(self, lease_seconds: float) -> Row[Any] | None:
        """Lease the oldest asset in processing whose lease is free: none, run out, or held
        by a process of this host that has died (a SIGKILL must not stall it for a lease).

        On PostgreSQL the row is taken FOR UPDATE SKIP LOCKED, so instances claiming at once
        each get another asset and none waits for the others. SQLite has no row locks (its
        compiler drops the clause): there BEGIN IMMEDIATE makes claims take turns."""
        now = now_us()
        async with self.engine.begin() as db:
            held_here = await db.scalars(
                select(assets.c.lease_owner)
                .distinct()
                .where(
                    assets.c.state == PROCESSING,
                    assets.c.lease_until >= now,
                    assets.c.lease_owner.startswith(socket.gethostname() + ":", autoescape=True),
                )
            )
            dead = [owner for owner in held_here if lease_holder_died(owner)]
            claimed = await db.scalar(
                select(assets.c.id)
                .where(
                    assets.c.state == PROCESSING,
                    assets.c.deleted_at.is_(None),
                    or_(assets.c.lease_until < now, assets.c.lease_owner.in_(dead)),
                )
                .order_by(assets.c.created_at, assets.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if claimed is None:
                return None
            await db.execute(
                update(assets)
                .where(assets.c.id == claimed)
                .values(
                    lease_until=now + int(lease_seconds * 1e6),
                    lease_owner=LEASE_OWNER,
                    attempts=assets.c.attempts + 1,
                )
            )
            return await self._asset(db, claimed)

    def charge_for(self, duration: Decimal) -> int:
        return started_minutes(duration) * self.price_per_minute

    async def settle(self, asset_id: str, duration: Decimal) -> str | None:
        """Charge once for the measured duration: ready if the balance covers it, else
        pending_payment. Returns the new state, or None if the asset was settled already."""
        charge = self.charge_for(duration)
        try:
            async with self.engine.begin() as db:
                # Locked: a concurrent settle (another instance) waits here, then sees it settled.
                row = await self._asset(db, asset_id, for_update=True)
                if row.state != PROCESSING:
                    return None
                paid = await self._pay(db, row.account_id, asset_id, charge)
                state = READY if paid else PENDING_PAYMENT
                result = await db.execute(
                    update(assets)
                    .where(assets.c.id == asset_id, assets.c.state == PROCESSING)
                    .values(state=state, duration=str(duration), charge=charge, lease_until=0)
                )
                if result.rowcount == 0:
                    # Settled meanwhile by another worker: leaving the block undoes the payment.
                    raise _AlreadySettled
        except _AlreadySettled:
            return None
        except IntegrityError:
            # The ledger's UNIQUE charged_asset_id refused a second charge of this asset
            # (sqlite3's and asyncpg's unique violations alike): it was settled meanwhile.
            return None
        return state

    async def _pay(self, db: AsyncConnection, account_id: str, asset_id: str, charge: int) -> bool:
        """Take `charge` from the balance if it covers it, with its ledger row."""
        result = await db.execute(
            update(accounts)
            .where(accounts.c.id == account_id, accounts.c.balance >= charge)
            .values(balance=accounts.c.balance - charge)
        )
        if result.rowcount == 0:
            return False
        await db.execute(
            insert(ledger).values(
                account_id=account_id, kind="charge", amount=charge, charged_asset_id=asset_id, created_at=now_us()
            )
        )
        return True

    async def top_up(self, account_id: str, amount: int) -> dict[str, Any]:
        """Credit the account, then activate its pending assets, oldest first, while covered."""
        if not 0 < amount <= MAX_TOP_UP:
            raise ApiError(422, "validation_error", f"amount must be an integer from 1 to {MAX_TOP_UP}")
        async with self.engine.begin() as db:
            await self._account(db, account_id)
            credited = await db.execute(
                update(accounts)
                .where(accounts.c.id == account_id, accounts.c.balance <= MAX_BALANCE - amount)
                .values(balance=accounts.c.balance + amount)
            )
            if credited.rowcount == 0:
                raise ApiError(422, "balance_overflow", "the balance would exceed the largest amount it can hold")
            await db.execute(
                insert(ledger).values(account_id=account_id, kind="top_up", amount=amount, created_at=now_us())
            )
            pending = (
                await db.execute(
                    select(assets.c.id, assets.c.charge)
                    .where(
                        assets.c.account_id == account_id,
                        assets.c.state == PENDING_PAYMENT,
                        assets.c.deleted_at.is_(None),
                    )
                    .order_by(assets.c.created_at, assets.c.id)
                )
            ).all()
            for asset_id, charge in pending:
                activated = await db.execute(
                    update(assets).where(assets.c.id == asset_id, assets.c.state == PENDING_PAYMENT).values(state=READY)
                )
                if activated.rowcount == 0:
                    continue
                if not await self._pay(db, account_id, asset_id, charge or 0):
                    await db.execute(update(assets).where(assets.c.id == asset_id).values(state=PENDING_PAYMENT))
                    break
            balance = await db.scalar(select(accounts.c.balance).where(accounts.c.id == account_id))
        return {"account_id": account_id, "balance": balance}

    async def balance_and_ledger(self, account_id: str) -> tuple[int, list[Row[Any]]]:
        async with self.reader.connect() as db:
            account = await self._account(db, account_id)
            rows = list((await db.execute(select(ledger).where(ledger.c.account_id == account_id))).all())
        return int(account.balance), rows

    async def unfinished_uploads(self, limit: int = 1000) -> list[str]:
        """Assets still in pending_upload, oldest first (for reconciling after a crash)."""
        async with self.reader.connect() as db:
            rows = await db.execute(
                select(assets.c.id)
                .where(assets.c.state == PENDING_UPLOAD, assets.c.deleted_at.is_(None))
                .order_by(assets.c.created_at)
                .limit(limit)
            )
            return [str(row.id) for row in rows]

    async def count(self, state: str) -> int:
        async with self.reader.connect() as db:
            return int(await db.scalar(select(func.count()).where(assets.c.state == state)) or 0)


def _encode_cursor(row: Row[Any]) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at}:{row.id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, _, last_id = text.partition(":")
        if not re.fullmatch(r"[0-9]{1,18}", created_at) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", last_id):
            raise ValueError(text)
        return int(created_at), last_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None
