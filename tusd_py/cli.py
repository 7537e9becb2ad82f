"""The `tusd-py` command: `serve`, and the account, project, key and billing commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from . import upload_client
from .app import build_handler, default_outbox_path, with_cors
from .components import build_locker, build_store
from .config import ServeConfig
from .handler import TusHandler
from .hooks import CommandReceiver, HookReceiver, Hooks, HookType, HttpReceiver, Outbox
from .malloc import keep_freed_buffers
from .operations import (
    MetricsApp,
    Operations,
    database_check,
    locker_check,
    logging_config,
    outbox_check,
    store_check,
)
from .server import TusHttpToolsProtocol
from .telemetry import Metrics

# Beyond --shutdown-timeout, time for the uploads ended then to answer their clients;
# only after it does uvicorn cancel what still runs (FileStore keeps the bytes even so).
SHUTDOWN_GRACE = 5.0


def build_receivers(config: ServeConfig) -> list[HookReceiver]:
    receivers: list[HookReceiver] = []
    if config.hooks_http:
        receivers.append(
            HttpReceiver(
                config.hooks_http,
                secret=config.hooks_secret,
                timeout=config.hooks_http_timeout,
                retries=config.hooks_http_retry,
                backoff=config.hooks_http_backoff,
                forward_headers=config.hooks_http_forward_headers,
                enabled=[HookType(e) for e in config.hooks_enabled_events] or None,
            )
        )
    if config.hooks_dir:
        receivers.append(CommandReceiver(config.hooks_dir, timeout=config.hooks_http_timeout))
    return receivers


def hooks_timeout(config: ServeConfig) -> float:
    # A blocking hook gets all its attempts and the backoff between them.
    retries = config.hooks_http_retry
    backoff = config.hooks_http_backoff * ((1 << retries) - 1)
    return config.hooks_http_timeout * (retries + 1) + backoff + 5


def build_app(config: ServeConfig) -> Operations:
    upload_dir = Path(config.upload_dir)
    locker = build_locker(config)
    receivers = build_receivers(config)
    metrics = Metrics()
    store = build_store(config)
    common: dict[str, Any] = {
        "store": store,
        "locker": locker,
        "base_path": config.base_path,
        "max_size": config.max_size,
        "behind_proxy": config.behind_proxy,
        "expire_after": config.expire_after,
        "read_timeout": config.read_timeout,
        "lock_timeout": config.lock_timeout,
        "metrics": metrics,
    }
    checks = [store_check(store), locker_check(locker)]
    app: ASGIApp
    handler: TusHandler
    if config.assets:
        from .assets import create_platform_app

        platform = create_platform_app(
            upload_dir,
            database_url=config.database,
            price_per_minute=config.price_per_minute,
            admin_token=config.admin_token,
            receivers=receivers,
            hooks_timeout=hooks_timeout(config),
            progress_interval=config.progress_hooks_interval,
            outbox_backoff=config.hooks_http_backoff,
            cors_allow_origin=config.cors_allow_origin,
            **common,
        )
        checks.append(database_check(platform.check_database))
        app, handler = platform, platform.handler
    else:
        hooks = None
        if receivers:
            hooks = Hooks(
                receivers,
                outbox=Outbox(default_outbox_path(upload_dir), backoff=config.hooks_http_backoff),
                timeout=hooks_timeout(config),
                progress_interval=config.progress_hooks_interval,
                metrics=metrics,
            )
        handler = build_handler(upload_dir, hooks=hooks, **common)
        app = with_cors(handler, config.cors_allow_origin)
    if config.web:
        from .web import WebApp

        app = WebApp(app, base_path=config.base_path, assets=config.assets)
    if handler.hooks is not None and handler.hooks.outbox is not None:
        checks.append(outbox_check(handler.hooks.outbox))
    return Operations(
        app,
        handler=handler,
        metrics=metrics,
        checks=checks,
        # With a metrics port, /metrics is served there only.
        expose_metrics=config.expose_metrics and config.metrics_port is None,
        access_log=config.access_log,
        shutdown_timeout=config.shutdown_timeout,
    )


def app_from_env() -> ASGIApp:
    """The app factory uvicorn's worker processes call; settings arrive as TUSD_* variables."""
    keep_freed_buffers()
    return build_app(ServeConfig.from_env())


def serve(config: ServeConfig) -> None:
    problems = config.problems()
    if problems:
        raise SystemExit("tusd-py serve: " + "; ".join(problems))
    Path(config.upload_dir).mkdir(parents=True, exist_ok=True)
    # Proxy headers are our own business (--behind-proxy); uvicorn must not rewrite them.
    common: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "proxy_headers": False,
        "server_header": False,
        "http": TusHttpToolsProtocol,
        # Ours replaces uvicorn's access log (which would log query strings), on or off.
        "access_log": False,
        "log_config": logging_config(config.log_format),
        "timeout_graceful_shutdown": config.shutdown_timeout + SHUTDOWN_GRACE,
        "ssl_certfile": config.tls_certificate,
        "ssl_keyfile": config.tls_key,
    }
    if config.workers > 1:
        os.environ.update(config.to_env())
        uvicorn.run("tusd_py.cli:app_from_env", factory=True, workers=config.workers, **common)
        return
    keep_freed_buffers()
    app = build_app(config)
    server = uvicorn.Server(uvicorn.Config(app, **common))
    if config.metrics_port is None:
        server.run()
        return
    metrics_server = uvicorn.Server(
        uvicorn.Config(
            MetricsApp(app.metrics),
            host=config.host,
            port=config.metrics_port,
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
        )
    )
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(_serve_with_metrics(server, metrics_server))


async def _serve_with_metrics(server: uvicorn.Server, metrics_server: uvicorn.Server) -> None:
    # The metrics server installs its signal handlers first, so a signal reaches the main
    # server's; when that one is done, uvicorn hands the signal on to the metrics server.
    metrics_task = asyncio.create_task(metrics_server.serve())
    await asyncio.sleep(0)
    try:
        await server.serve()
    finally:
        metrics_server.should_exit = True
        await metrics_task


# -- account, project, key and billing commands ---------------------------------------------


def _positive_int(text: str) -> int:
    from .assets.service import MAX_TOP_UP

    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_TOP_UP:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {MAX_TOP_UP}")
    return int(text)


def _add_database_arguments(parser: argparse.ArgumentParser) -> None:
    base = ServeConfig.from_env()
    parser.add_argument("--upload-dir", default=base.upload_dir, help="the data directory serve uses")
    parser.add_argument("--database", default=base.database, help="the database URL serve uses")


def _admin_commands(commands: Any) -> None:
    accounts = commands.add_parser("accounts", help="manage accounts").add_subparsers(dest="action", required=True)
    created = accounts.add_parser("create", help="create an account; prints it as JSON")
    created.add_argument("name")
    _add_database_arguments(created)

    projects = commands.add_parser("projects", help="manage projects").add_subparsers(dest="action", required=True)
    created = projects.add_parser("create", help="create a project in an account")
    created.add_argument("--account", required=True)
    created.add_argument("name")
    _add_database_arguments(created)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    created = keys.add_parser("create", help="create an API key (shown once)")
    created.add_argument("--account", required=True)
    _add_database_arguments(created)
    revoked = keys.add_parser("revoke", help="revoke an API key")
    revoked.add_argument("key_id")
    _add_database_arguments(revoked)

    billing = commands.add_parser("billing", help="balances").add_subparsers(dest="action", required=True)
    top_up = billing.add_parser("top-up", help="credit an account; activates its pending assets")
    top_up.add_argument("account_id")
    top_up.add_argument("amount", type=_positive_int)
    _add_database_arguments(top_up)


async def _run_admin(args: argparse.Namespace) -> dict[str, Any]:
    from .assets.db import create_engine, create_schema, database_url
    from .assets.service import AssetService

    Path(args.upload_dir).mkdir(parents=True, exist_ok=True)
    engine = create_engine(database_url(args.database, args.upload_dir))
    try:
        await create_schema(engine)
        service = AssetService(engine)
        actions: dict[tuple[str, str], Callable[[], Awaitable[dict[str, Any]]]] = {
            ("accounts", "create"): lambda: service.create_account(args.name),
            ("projects", "create"): lambda: service.create_project(args.account, args.name),
            ("keys", "create"): lambda: service.create_key(args.account),
            ("keys", "revoke"): lambda: service.revoke_key(args.key_id),
            ("billing", "top-up"): lambda: service.top_up(args.account_id, args.amount),
        }
        return await actions[(args.command, args.action)]()
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tusd-py", description="A resumable-upload server (tus 1.0).")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the tus endpoint (and the asset API)")
    try:
        ServeConfig.add_arguments(serve_parser)
    except ValueError as error:
        parser.error(f"in the environment: {error}")
    _admin_commands(commands)
    upload_client.add_arguments(commands.add_parser("upload", help="upload a file, resumably, with a progress bar"))
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(ServeConfig.from_arguments(args))
        return 0
    if args.command == "upload":
        return upload_client.run(args)
    from .assets.errors import ApiError

    try:
        result = asyncio.run(_run_admin(args))
    except ApiError as error:
        print(error.body(), file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
