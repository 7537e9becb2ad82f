"""Where an interrupted upload continues: upload URLs remembered per file fingerprint.

The store is a small JSON file under the user's cache directory. Upload URLs are
capabilities (HEAD and PATCH need no key), so the file is written readable by its owner
only, and API keys are never stored in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

EDGE = 64 * 1024
_VERSION = 1


def default_state_path() -> Path:
    """`$XDG_CACHE_HOME/tusd-py/uploads.json`, or `~/.cache/tusd-py/uploads.json`."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return base / "tusd-py" / "uploads.json"


def fingerprint(path: Path, target: str) -> str:
    """A key that changes whenever the file or the place it goes to changes.

    Absolute path, size, mtime and a hash of the first and last 64 KiB: cheap on a large
    file, and an edit in place that keeps size and mtime still shows at either end.
    `target` (endpoint, project) keeps one file's uploads to different servers apart.
    """
    resolved = path.resolve()
    stat = resolved.stat()
    digest = hashlib.sha256()
    with resolved.open("rb") as file:
        digest.update(file.read(EDGE))
        if stat.st_size > EDGE:
            file.seek(max(EDGE, stat.st_size - EDGE))
            digest.update(file.read(EDGE))
    parts = [str(resolved), stat.st_size, stat.st_mtime_ns, digest.hexdigest(), target]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    file: str
    size: int
    upload_url: str
    asset_id: str | None = None
    created_at: float = 0.0


class UploadState:
    """The JSON store: `{"version": 1, "uploads": {fingerprint: entry}}`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # A damaged store costs only the ability to resume; the upload itself can go on.
            return {}
        uploads = data.get("uploads") if isinstance(data, dict) else None
        return {k: v for k, v in uploads.items() if isinstance(v, dict)} if isinstance(uploads, dict) else {}

    def _save(self, uploads: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": _VERSION, "uploads": uploads}, indent=2, sort_keys=True)
        # Written whole and renamed, so an interrupted save never leaves half a file.
        fd, temporary = tempfile.mkstemp(prefix=".uploads-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(text)
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def get(self, key: str) -> Entry | None:
        raw = self._load().get(key)
        if raw is None:
            return None
        try:
            return Entry(
                file=str(raw["file"]),
                size=int(raw["size"]),
                upload_url=str(raw["upload_url"]),
                asset_id=None if raw.get("asset_id") is None else str(raw["asset_id"]),
                created_at=float(raw.get("created_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, entry: Entry) -> None:
        uploads = self._load()
        if not entry.created_at:
            entry = Entry(entry.file, entry.size, entry.upload_url, entry.asset_id, time.time())
        uploads[key] = asdict(entry)
        self._save(uploads)

    def remove(self, key: str) -> None:
        uploads = self._load()
        if uploads.pop(key, None) is not None:
            self._save(uploads)
