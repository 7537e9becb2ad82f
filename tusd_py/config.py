"""Settings for `tusd-py serve`: each one a flag and a TUSD_* environment variable."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from .hooks import HookType

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)?")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"([0-9]+)([KMGT]i?B?)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# S3's own floor for every part but the last.
MIN_S3_PART_SIZE = 5 * 1024**2


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '24h', '7d' or '250ms', in seconds; '0' means off."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 24h)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """Bytes, with an optional K, M, G or T suffix (powers of 1024); '0' means no limit."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 1048576, 500M, 10G)")
    unit = (match.group(2) or "")[:1].lower()
    return int(match.group(1)) * _SIZE_UNITS[unit]


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _event_list(text: str) -> tuple[str, ...]:
    names = _name_list(text)
    known = {str(t) for t in HookType}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown hook events: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return names


def _log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"not a log format: {text!r} (use text or json)")
    return value


def _locker(text: str) -> str:
    value = text.strip()
    if value in ("memory", "file") or value.startswith(("redis://", "rediss://", "unix://")):
        return value
    raise ValueError(f"not a locker: {text!r} (use memory, file or a redis:// URL)")


def _part_size(text: str) -> int:
    value = parse_size(text)
    if value < MIN_S3_PART_SIZE:
        raise ValueError(f"S3 parts are at least 5 MiB, not {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError(f"not a port: {text!r}")
    return value


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse shows an ArgumentTypeError's own message; a ValueError it replaces."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return "TUSD_" + name.upper()


@dataclass(frozen=True)
class Setting:
    help: str
    parse: Callable[[str], Any] = str
    is_switch: bool = False


_SETTINGS: dict[str, Setting] = {
    "host": Setting("address to listen on"),
    "port": Setting("port to listen on", int),
    "upload_dir": Setting("directory for upload data and info files"),
    "base_path": Setting("URL path under which uploads are created and served"),
    "max_size": Setting("largest upload accepted, in bytes (K/M/G/T suffixes); 0 = no limit", parse_size),
    "workers": Setting("worker processes; above 1, locks are shared through files", int),
    "behind_proxy": Setting("trust Forwarded and X-Forwarded-* headers for Location", is_switch=True),
    "cors_allow_origin": Setting("regular expression of browser origins allowed by CORS ('*' = any); unset = no CORS"),
    "expire_after": Setting("remove unfinished uploads idle this long (e.g. 24h); 0 = never", parse_duration),
    "read_timeout": Setting("end a PATCH whose body is silent this long (e.g. 60s); 0 = never", parse_duration),
    "lock_timeout": Setting("wait this long for another request to release an upload, then 423", parse_duration),
    "locker": Setting(
        "where upload locks live: memory (one process), file (workers of one host) or a redis:// URL (many hosts);"
        " unset = memory, or file with --workers above 1",
        _locker,
    ),
    "locker_expiry": Setting("a Redis lock whose holder stops renewing it frees after this long", parse_duration),
    "s3_bucket": Setting("keep uploads in this S3 bucket instead of the upload dir (credentials: AWS_* variables)"),
    "s3_endpoint": Setting("S3 endpoint URL for S3-compatible servers (MinIO, Ceph RGW); unset = AWS"),
    "s3_region": Setting("S3 region; unset = from AWS_REGION / AWS_DEFAULT_REGION"),
    "s3_prefix": Setting("key prefix for every object the S3 store writes"),
    "s3_part_size": Setting(
        "S3 multipart part size (>= 5M), raised for huge uploads to stay under 10,000 parts", _part_size
    ),
    "s3_path_style": Setting("address buckets as endpoint/bucket instead of bucket.endpoint", is_switch=True),
    "hooks_http": Setting("URL that receives hook events as tusd-compatible JSON POSTs"),
    "hooks_dir": Setting("directory of executables named after events (pre-create, post-finish, ...)"),
    "hooks_enabled_events": Setting("comma-separated events to fire; empty = all", _event_list),
    "hooks_http_forward_headers": Setting("comma-separated request headers to forward to the hook URL", _name_list),
    "hooks_http_retry": Setting("retries of a failed webhook call", int),
    "hooks_http_backoff": Setting("wait before the first retry, doubled each time (e.g. 1s)", parse_duration),
    "hooks_http_timeout": Setting("time a hook may take to answer (e.g. 10s)", parse_duration),
    "hooks_secret": Setting("shared secret: sign webhook bodies with HMAC-SHA256 in Hook-Signature"),
    "assets": Setting(
        "serve the asset lifecycle (/v1 API, media checks, billing); --no-assets = bare tus", is_switch=True
    ),
    "database": Setting("asset database URL (default: SQLite file assets.sqlite3 in the upload dir)"),
    "price_per_minute": Setting("charge per started minute of media, in minor currency units", int),
    "admin_token": Setting("bearer token for POST /v1/accounts/{id}/top-ups; unset = top-ups by CLI only"),
    "progress_hooks_interval": Setting(
        "at most one post-receive event per upload this often (e.g. 1s)", parse_duration
    ),
    "expose_metrics": Setting("serve Prometheus metrics at GET /metrics on the main port", is_switch=True),
    "metrics_port": Setting("serve GET /metrics on this port instead of the main one (implies metrics on)", _port),
    "access_log": Setting("write one access-log line per request (--no-access-log = none)", is_switch=True),
    "log_format": Setting("log line format: text or json (JSON lines)", _log_format),
    "shutdown_timeout": Setting(
        "on SIGTERM/SIGINT, let requests in flight run this long, then end uploads (bytes kept)", parse_duration
    ),
    "tls_certificate": Setting("PEM certificate (chain) file: serve HTTPS directly; needs --tls-key"),
    "tls_key": Setting("PEM private key file of --tls-certificate"),
    "web": Setting("serve a browser upload page at / (its files under /web/)", is_switch=True),
}


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 1080
    upload_dir: str = "./data"
    base_path: str = "/files/"
    max_size: int = 0
    workers: int = 1
    behind_proxy: bool = False
    cors_allow_origin: str | None = None
    expire_after: float = 24 * 3600.0
    read_timeout: float = 60.0
    lock_timeout: float = 20.0
    locker: str | None = None
    locker_expiry: float = 10.0
    s3_bucket: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_prefix: str = ""
    s3_part_size: int = 8 * 1024**2
    s3_path_style: bool = False
    hooks_http: str | None = None
    hooks_dir: str | None = None
    hooks_enabled_events: tuple[str, ...] = ()
    hooks_http_forward_headers: tuple[str, ...] = ()
    hooks_http_retry: int = 3
    hooks_http_backoff: float = 1.0
    hooks_http_timeout: float = 10.0
    hooks_secret: str | None = None
    progress_hooks_interval: float = 1.0
    assets: bool = True
    database: str | None = None
    price_per_minute: int = 0
    admin_token: str | None = None
    expose_metrics: bool = False
    metrics_port: int | None = None
    access_log: bool = True
    log_format: str = "text"
    shutdown_timeout: float = 10.0
    tls_certificate: str | None = None
    tls_key: str | None = None
    web: bool = False

    def problems(self) -> list[str]:
        """Settings that cannot work together."""
        found = []
        if (self.tls_certificate is None) != (self.tls_key is None):
            found.append("--tls-certificate and --tls-key go together")
        if self.metrics_port is not None and self.workers > 1:
            found.append("--metrics-port needs --workers 1 (each worker keeps its own counts)")
        if self.metrics_port is not None and self.metrics_port == self.port:
            found.append("--metrics-port must differ from --port")
        if self.locker == "memory" and self.workers > 1:
            found.append("--locker memory cannot serve --workers above 1 (use file or a redis:// URL)")
        s3_only = [f for f in ("s3_endpoint", "s3_region", "s3_prefix") if getattr(self, f)]
        if self.s3_bucket is None and (s3_only or self.s3_path_style):
            found.append("--s3-endpoint, --s3-region, --s3-prefix and --s3-path-style need --s3-bucket")
        return found

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServeConfig:
        values: dict[str, Any] = {}
        for name, setting in _SETTINGS.items():
            raw = environ.get(env_name(name))
            if raw is None:
                continue
            if setting.is_switch:
                values[name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                try:
                    values[name] = setting.parse(raw)
                except ValueError as error:
                    raise ValueError(f"{env_name(name)}: {error}") from None
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Flags whose defaults come from the environment, then from this class."""
        base = cls.from_env()
        for name, setting in _SETTINGS.items():
            default = getattr(base, name)
            help_text = f"{setting.help} [{env_name(name)}; default: {default}]"
            if setting.is_switch:
                parser.add_argument(
                    _flag(name), dest=name, action=argparse.BooleanOptionalAction, default=default, help=help_text
                )
            else:
                parser.add_argument(
                    _flag(name), dest=name, type=_argument_type(setting.parse), default=default, help=help_text
                )

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> ServeConfig:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    def to_env(self) -> dict[str, str]:
        """The same settings as TUSD_* variables, for worker processes."""
        env = {}
        for name in _SETTINGS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool):
                env[env_name(name)] = "1" if value else "0"
            elif isinstance(value, float):
                # The shortest exact digits, in fixed notation (parse_duration reads no exponents).
                env[env_name(name)] = format(Decimal(repr(value)), "f")
            elif isinstance(value, tuple):
                env[env_name(name)] = ",".join(value)
            else:
                env[env_name(name)] = str(value)
        return env
