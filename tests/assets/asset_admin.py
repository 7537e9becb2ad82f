"""The admin CLI (`tusd-py accounts|projects|keys|billing ...`) driven as a subprocess.

The asset API tests make their accounts, projects and keys the way an operator does, so
the CLI and the server are checked against the same database file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLI_TIMEOUT = 60.0


def run_cli(upload_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`tusd-py ARGS --upload-dir UPLOAD_DIR`; never raises for a non-zero exit."""
    # TUSD_* variables of the developer's shell must not pick another database.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_")}
    return subprocess.run(
        [sys.executable, "-m", "tusd_py.cli", *args, "--upload-dir", str(upload_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def cli_json(upload_dir: Path, *args: str) -> dict[str, Any]:
    """The JSON object a successful command prints on stdout."""
    result = run_cli(upload_dir, *args)
    assert result.returncode == 0, f"tusd-py {' '.join(args)} failed: {result.stderr}"
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


@dataclass(frozen=True)
class Tenant:
    """An account with one project and one API key, made through the CLI."""

    account_id: str
    project_id: str
    key_id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_tenant(upload_dir: Path, name: str) -> Tenant:
    account = cli_json(upload_dir, "accounts", "create", name)
    project = cli_json(upload_dir, "projects", "create", "--account", account["id"], f"{name}-project")
    key = cli_json(upload_dir, "keys", "create", "--account", account["id"])
    return Tenant(account["id"], project["id"], key["id"], key["key"])


def make_project(upload_dir: Path, account_id: str, name: str) -> str:
    return str(cli_json(upload_dir, "projects", "create", "--account", account_id, name)["id"])
