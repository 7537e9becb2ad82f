"""Helpers for the operations tests: a server whose log we read, and a scraped metrics page."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from conftest import start_server
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class LoggedServer:
    """A `tusd-py serve` whose stdout and stderr go to `log_path`."""

    process: subprocess.Popen[bytes]
    port: int
    upload_dir: Path
    log_path: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.origin + "/files/"

    def log_text(self) -> str:
        return self.log_path.read_text()


@contextmanager
def logged_server(upload_dir: Path, log_path: Path, *flags: str, port: int | None = None) -> Iterator[LoggedServer]:
    with open(log_path, "ab") as log:
        server = start_server(upload_dir, *flags, port=port, output=log)
    try:
        yield LoggedServer(server.process, server.port, upload_dir, log_path)
    finally:
        server.stop()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a metrics page, keyed by name and sorted labels."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
