"""`tusd-py upload`: send a file to a tus endpoint, resumably, with a progress bar.

Bare tus by default; with `--api-key` and `--project` the file becomes an asset:
created with `POST /v1/assets`, uploaded to the URL that answer names, then watched
until its state settles.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config import parse_duration, parse_size

DEFAULT_CHUNK_SIZE = "8M"
EXIT_ERROR = 1
EXIT_USAGE = 2
# What a shell reports for a command ended by SIGINT.
EXIT_INTERRUPTED = 130


def _chunk_size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if size <= 0:
        raise argparse.ArgumentTypeError("must be at least 1 byte")
    return size


def _seconds(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _retries(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError("must be a whole number")
    return int(text)


def _metadata_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    # The tus metadata key grammar: ASCII, no spaces, no commas.
    if not sep or not key or not key.isascii() or any(c in key for c in " ,") or not key.isprintable():
        raise argparse.ArgumentTypeError(f"expected key=value with a key free of spaces and commas, not {text!r}")
    return key, value


def _http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the file to upload")
    parser.add_argument("--endpoint", type=_http_url, help="the tus creation URL, e.g. http://127.0.0.1:1080/files/")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("TUSD_API_KEY"),
        help="API key (sk_...): upload as an asset; default $TUSD_API_KEY, which keeps it out of the process list",
    )
    parser.add_argument("--project", help="project id the asset belongs to (with --api-key)")
    parser.add_argument(
        "--api-url", type=_http_url, help="where /v1/assets lives; default: the scheme, host and port of --endpoint"
    )
    parser.add_argument("--language", help="the asset's ISO 639-1 language (with --api-key); default auto-detect")
    parser.add_argument(
        "--chunk-size",
        type=_chunk_size,
        default=_chunk_size(DEFAULT_CHUNK_SIZE),
        help=f"bytes per PATCH, K/M/G suffixes (default {DEFAULT_CHUNK_SIZE})",
    )
    parser.add_argument(
        "--metadata",
        type=_metadata_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Upload-Metadata (repeatable); filename and filetype are set from the file",
    )
    parser.add_argument(
        "--retries", type=_retries, default=5, help="attempts after a dropped connection, 5xx or 423 (default 5)"
    )
    parser.add_argument(
        "--retry-delay", type=_seconds, default=1.0, help="wait before the first retry, doubled each time (default 1s)"
    )
    parser.add_argument("--timeout", type=_seconds, default=60.0, help="network timeout per request (default 60s)")
    parser.add_argument(
        "--wait", type=_seconds, default=120.0, help="how long to wait for the asset to leave processing (default 2m)"
    )
    parser.add_argument("--state-file", type=Path, help="where upload URLs are remembered for resuming")
    parser.add_argument("--fresh", action="store_true", help="ignore a remembered upload of this file; start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _fail(message: str, code: int = EXIT_ERROR) -> int:
    print(f"tusd-py upload: error: {message}", file=sys.stderr)
    return code


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _metadata(path: Path, extra: list[tuple[str, str]]) -> dict[str, str | None]:
    metadata: dict[str, str | None] = {"filename": path.name}
    filetype, _ = mimetypes.guess_type(path.name)
    if filetype:
        metadata["filetype"] = filetype
    metadata.update(extra)
    return metadata


def run(args: argparse.Namespace) -> int:
    import httpx

    from .client import AssetApi, ClientError, RetryPolicy, TusClient, Uploader, UploadState, default_state_path
    from .client.progress import progress_bar
    from .client.state import Entry, fingerprint

    assets = bool(args.api_key) or bool(args.project)
    if assets and not (args.api_key and args.project):
        return _fail("--api-key and --project go together (the key may also come from $TUSD_API_KEY)", EXIT_USAGE)
    if assets and args.metadata:
        return _fail("--metadata is for bare tus uploads: POST /v1/assets takes none", EXIT_USAGE)
    if args.language is not None and not assets:
        return _fail("--language is for assets (with --api-key and --project)", EXIT_USAGE)
    if args.endpoint is None and not (assets and args.api_url):
        return _fail("--endpoint is required (or, with --api-key, --api-url)", EXIT_USAGE)
    path: Path = args.file
    if not path.is_file():
        return _fail(f"{path}: not a readable file")
    api_url = args.api_url or _origin(args.endpoint)
    target = json.dumps([api_url, args.project] if assets else [args.endpoint, None])
    state = UploadState(args.state_file or default_state_path())
    policy = RetryPolicy(retries=args.retries, delay=args.retry_delay)
    uploader: Uploader | None = None
    url: str | None = None
    size = 0
    try:
        key = fingerprint(path, target)
        size = path.stat().st_size
        timeout = httpx.Timeout(args.timeout or None)
        with (
            httpx.Client(timeout=timeout, headers={"User-Agent": "tusd-py-upload"}) as http,
            progress_bar(path.name, size, enabled=not args.no_progress) as (advance, notice),
        ):
            client = TusClient(http)
            uploader = Uploader(
                client, path, chunk_size=args.chunk_size, policy=policy, on_progress=advance, notice=notice
            )
            api = AssetApi(http, api_url, args.api_key, policy=policy, notice=notice) if assets else None
            asset_id: str | None = None
            offset = 0
            entry = None if args.fresh else state.get(key)
            if entry is not None:
                status = uploader.status(entry.upload_url)
                if status is None:
                    notice(f"the remembered upload {entry.upload_url} cannot be continued; starting over")
                else:
                    url, asset_id, offset = entry.upload_url, entry.asset_id, status.offset
                    notice(f"resuming {url} at byte {offset} of {size}")
            if url is None:
                if api is not None:
                    asset_id, url = api.create(args.project, size, args.language)
                else:
                    metadata = _metadata(path, args.metadata)
                    url = policy.run(lambda: client.create(args.endpoint, size, metadata), notice)
                # Remembered before the first byte goes, so even an early Ctrl-C can resume.
                state.put(key, Entry(str(path.resolve()), size, url, asset_id))
            uploader.send(url, offset)
            asset = api.wait(asset_id, args.wait) if api is not None and asset_id is not None else None
        # Kept until the asset's state is known: a rerun after a Ctrl-C while waiting
        # finds the upload complete instead of uploading (and paying) again.
        state.remove(key)
    except KeyboardInterrupt:
        if url is None:
            print("tusd-py upload: interrupted before the upload was created", file=sys.stderr)
        else:
            done = uploader.offset if uploader is not None else 0
            print(
                f"tusd-py upload: interrupted with {done} of {size} bytes confirmed by the server at {url}; "
                "run the same command again to resume",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    except ClientError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"{path}: {error.strerror or error}")
    return _report(url, asset, args.json)


def _report(url: str, asset: dict[str, Any] | None, as_json: bool) -> int:
    result: dict[str, Any] = {"upload_url": url}
    if asset is not None:
        result.update(asset_id=asset.get("id"), state=asset.get("state"))
    if as_json:
        print(json.dumps({**result, "asset": asset} if asset is not None else result))
    else:
        for name, value in result.items():
            print(f"{name}: {value}")
    if asset is None:
        return 0
    state = asset.get("state")
    if state == "failed":
        print(
            f"tusd-py upload: error: the asset failed: {asset.get('error_code')}: {asset.get('error_message')}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if state in ("pending_upload", "processing"):
        print(f"tusd-py upload: the asset is still {state}; it goes on without this command", file=sys.stderr)
    elif state == "pending_payment":
        print("tusd-py upload: the asset waits for a top-up that covers its charge", file=sys.stderr)
    return 0
