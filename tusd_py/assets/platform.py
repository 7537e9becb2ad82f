"""The platform app: the tus endpoint and the asset API side by side, sharing one store.

The asset module reaches the tus layer through its public parts only: hooks (in-process
callables), the store's create for uploads opened by `POST /v1/assets`, and the handler's
`terminate` for `DELETE /v1/assets/{id}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from ..app import build_handler, default_outbox_path, with_cors
from ..handler import TusHandler
from ..hooks import CallableReceiver, HookReceiver, Hooks, Outbox
from ..locks import Locker
from ..stores import FileStore, NewUpload, Store, UploadNotFound
from ..telemetry import Metrics
from .api import AssetApi
from .db import create_engine, create_schema
from .db import database_url as database_url_for
from .media import HEAD_BYTES
from .service import AssetService
from .tus_hooks import AssetHooks
from .worker import Processor


class PlatformApp:
    """ASGI: /v1/... goes to the asset API, everything else to the tus handler."""

    def __init__(
        self, handler: TusHandler, api: AssetApi, engine: AsyncEngine, processor: Processor, cors: str | None
    ) -> None:
        self.handler = handler
        self.api = api
        self.engine = engine
        self.processor = processor
        self._api_app = with_cors(api.app, cors)
        self._tus_app = with_cors(handler, cors)
        self._started = False
        self._starting = asyncio.Lock()

    async def startup(self) -> None:
        """Create the schema and start processing; also done on the first request, since
        a mounted app sees no lifespan events."""
        async with self._starting:
            if not self._started:
                await create_schema(self.engine)
                self.processor.start()
                self._started = True

    async def check_database(self) -> None:
        """Raises unless the asset database answers a query (for /readyz)."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def shutdown(self) -> None:
        await self.processor.stop()
        await self.handler.aclose()
        await self.engine.dispose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if not self._started:
            await self.startup()
        path: str = scope.get("path", "")
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        target: ASGIApp = self._api_app if path == "/v1" or path.startswith("/v1/") else self._tus_app
        await target(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                    self.handler.start_background()
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_platform_app(
    upload_dir: str | os.PathLike[str] = "./data",
    *,
    database_url: str | None = None,
    price_per_minute: int = 0,
    admin_token: str | None = None,
    base_path: str = "/files/",
    max_size: int | None = None,
    behind_proxy: bool = False,
    cors_allow_origin: str | None = None,
    expire_after: float | None = 24 * 3600.0,
    read_timeout: float = 60.0,
    lock_timeout: float = 20.0,
    store: Store | None = None,
    locker: Locker | None = None,
    receivers: Sequence[HookReceiver] = (),
    hooks_timeout: float = 30.0,
    progress_interval: float = 1.0,
    outbox_backoff: float = 1.0,
    metrics: Metrics | None = None,
) -> PlatformApp:
    """The tus endpoint under `base_path` with the asset lifecycle, and /v1 beside it.

    `receivers` are the user's own hook receivers (webhooks, command hooks), called after
    the asset module's hooks.
    """
    Path(upload_dir).mkdir(parents=True, exist_ok=True)
    engine = create_engine(database_url_for(database_url, upload_dir))
    service = AssetService(engine, price_per_minute=price_per_minute, max_size=max_size)
    store = store if store is not None else FileStore(Path(upload_dir))
    processor = Processor(service, store)
    metrics = metrics if metrics is not None else Metrics()
    asset_hooks = AssetHooks(service, on_processing=processor.wake)
    hooks = Hooks(
        [CallableReceiver(asset_hooks.callables()), *receivers],
        outbox=Outbox(default_outbox_path(upload_dir), backoff=outbox_backoff),
        timeout=hooks_timeout,
        progress_interval=progress_interval,
        first_bytes_length=HEAD_BYTES,
        metrics=metrics,
    )
    handler = build_handler(
        upload_dir,
        store=store,
        locker=locker,
        base_path=base_path,
        max_size=max_size,
        behind_proxy=behind_proxy,
        expire_after=expire_after,
        read_timeout=read_timeout,
        lock_timeout=lock_timeout,
        hooks=hooks,
        metrics=metrics,
    )

    async def open_upload(asset_id: str, size: int, metadata: dict[str, str | None]) -> None:
        await store.create(NewUpload(id=asset_id, size=size, metadata=metadata))
        metrics.upload_created()

    async def end_upload(asset_id: str) -> None:
        with contextlib.suppress(UploadNotFound):
            await handler.terminate(asset_id)

    api = AssetApi(
        service,
        open_upload=open_upload,
        end_upload=end_upload,
        tus_base_path=base_path,
        behind_proxy=behind_proxy,
        admin_token=admin_token,
    )
    return PlatformApp(handler, api, engine, processor, cors_allow_origin)
