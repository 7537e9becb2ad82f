"""The `tusd-py` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from .app import create_app, default_outbox_path
from .config import ServeConfig
from .hooks import CommandReceiver, HookReceiver, Hooks, HookType, HttpReceiver, Outbox
from .locks import FileLocker, Locker, MemoryLocker
from .server import TusHttpToolsProtocol


def build_hooks(config: ServeConfig) -> Hooks | None:
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
    if not receivers:
        return None
    return Hooks(
        receivers,
        enabled_events=config.hooks_enabled_events or None,
        outbox=Outbox(default_outbox_path(config.upload_dir), backoff=config.hooks_http_backoff),
        # A blocking hook gets its retries within the time the client waits.
        timeout=config.hooks_http_timeout * (config.hooks_http_retry + 1) + 5,
        progress_interval=config.progress_hooks_interval,
    )


def build_app(config: ServeConfig) -> ASGIApp:
    upload_dir = Path(config.upload_dir)
    locker: Locker
    if config.workers > 1:
        locker = FileLocker(upload_dir / ".locks", timeout=config.lock_timeout)
    else:
        locker = MemoryLocker(timeout=config.lock_timeout)
    return create_app(
        upload_dir,
        locker=locker,
        base_path=config.base_path,
        max_size=config.max_size,
        behind_proxy=config.behind_proxy,
        cors_allow_origin=config.cors_allow_origin,
        expire_after=config.expire_after,
        read_timeout=config.read_timeout,
        lock_timeout=config.lock_timeout,
        hooks=build_hooks(config),
    )


def app_from_env() -> ASGIApp:
    """The app factory uvicorn's worker processes call; settings arrive as TUSD_* variables."""
    return build_app(ServeConfig.from_env())


def serve(config: ServeConfig) -> None:
    Path(config.upload_dir).mkdir(parents=True, exist_ok=True)
    # Proxy headers are our own business (--behind-proxy); uvicorn must not rewrite them.
    common = {
        "host": config.host,
        "port": config.port,
        "proxy_headers": False,
        "server_header": False,
        "http": TusHttpToolsProtocol,
    }
    if config.workers > 1:
        os.environ.update(config.to_env())
        uvicorn.run("tusd_py.cli:app_from_env", factory=True, workers=config.workers, **common)  # type: ignore[arg-type]
    else:
        uvicorn.run(build_app(config), **common)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tusd-py", description="A resumable-upload server (tus 1.0).")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the tus endpoint")
    ServeConfig.add_arguments(serve_parser)
    try:
        args = parser.parse_args(argv)
    except ValueError as error:
        parser.error(str(error))
    if args.command == "serve":
        serve(ServeConfig.from_arguments(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
